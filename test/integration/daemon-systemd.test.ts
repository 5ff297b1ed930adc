/**
 * The daemon under systemd: READY=1 once serving, WATCHDOG=1 at half of
 * WATCHDOG_USEC, STOPPING=1 on SIGTERM — received on a real unix datagram socket (the one
 * systemd would own), sent by the real systemd-notify.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Prng } from '../helpers/prng.js';
import { snapback, exited, CLI } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

describe('daemon under systemd (sd_notify)', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-sd-'));
    writeFileSync(join(dir, 'model.img'), new Prng(3).bytes(4 << 20));
    assert.equal(snapback(['model', 'manifest', join(dir, 'model.img')]).code, 0);
    assert.equal(snapback(['init', '--state-dir', join(dir, 'state'), '--model', join(dir, 'model.img'), '--disk', join(dir, 'disk.img')]).code, 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sends READY, keeps the watchdog fed, and says STOPPING on SIGTERM', async () => {
    const sock = join(dir, 'notify.sock');
    const receiver = spawn('/usr/bin/python3', ['-u', '-c', `import socket\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(${JSON.stringify(sock)})\nprint('BOUND', flush=True)\nwhile True:\n    print(s.recv(4096).decode().replace('\\n', ' '), flush=True)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let got = '';
    receiver.stdout.on('data', (b: Buffer) => (got += b.toString()));
    const expectMessage = (re: RegExp, ms: number) => waitFor(`${re} on the notify socket`, () => re.test(got), ms).catch((err: Error) => assert.fail(`${err.message}; received: ${got}`));
    try {
      await expectMessage(/BOUND/, 10_000);
      const d = spawn(process.execPath, [CLI, 'serve', '--state-dir', join(dir, 'state'), '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off'], {
        env: { ...process.env, NODE_ENV: 'test', NOTIFY_SOCKET: sock, WATCHDOG_USEC: '1000000' },
        stdio: 'ignore',
      });
      await expectMessage(/READY=1/, 20_000);
      assert.match(got, new RegExp(`MAINPID=${d.pid}`));
      await expectMessage(/WATCHDOG=1[\s\S]*WATCHDOG=1/, 10_000);
      d.kill('SIGTERM');
      assert.equal((await exited(d)).code, 0);
      await expectMessage(/STOPPING=1/, 5_000);
    } finally {
      receiver.kill('SIGKILL');
    }
  });
});
