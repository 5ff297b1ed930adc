/**
 * The console's command line: `snapback console serve` runs the console against a broker (one
 * without logins here: --mqtt mqtt://HOST:PORT alone works), `snapback console token create`
 * prints an API token as its last line that the running console accepts, and
 * `snapback console enroll-code create` prints a one-time code.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, snapback } from '../helpers/cli.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { ProtocolAppliance } from '../helpers/protocol-appliance.js';
import { waitFor } from '../helpers/wait.js';

describe('snapback console (the command line)', function () {
  this.timeout(120_000);
  let dir: string;
  let broker: Mosquitto;
  let child: ChildProcess | null = null;
  let appliance: ProtocolAppliance | null = null;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapback-console-cli-'));
    broker = await Mosquitto.start();
  });
  after(async () => {
    await appliance?.close();
    child?.kill('SIGTERM');
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('console serve runs the console; token create prints a token (last line) that GET /api/appliances accepts', async () => {
    const data = join(dir, 'data');
    const tok = snapback(['console', 'token', 'create', '--data-dir', data, '--name', 'acceptance']);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim().split('\n').at(-1)!;
    assert.match(token, /^sbk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);

    child = spawn(process.execPath, [CLI, 'console', 'serve', '--data-dir', data, '--http-listen', '127.0.0.1:0', '--mqtt', broker.url], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'test' } });
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    const url = await waitFor('the console to listen', () => /console API on (http:\/\/\S+)/.exec(stdout)?.[1]);

    appliance = await ProtocolAppliance.connect({ url: broker.url, name: 'lab-01' });
    const list = await waitFor('lab-01 in the fleet', async () => {
      const res = await fetch(`${url}api/appliances`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { name: string; online: boolean; mode: string; session: number; model: string }[];
      return body.length === 1 && body[0]!.online ? body : null;
    });
    assert.deepEqual(
      list.map((a) => [a.name, a.online, a.mode, a.session, a.model]),
      [['lab-01', true, 'frozen', 1, 'win11-lab']],
    );
    const noToken = await fetch(`${url}api/appliances`);
    assert.equal(noToken.status, 401);

    const code = snapback(['console', 'enroll-code', 'create', '--data-dir', data, '--name', 'lab-02']);
    assert.equal(code.code, 0, code.stderr);
    assert.match(code.stdout.trim().split('\n').at(-1)!, /^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    // This console keeps no broker files: redeeming says so instead of handing out an account the broker does not know.
    const redeem = await fetch(`${url}api/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: code.stdout.trim().split('\n').at(-1), name: 'lab-02' }) });
    assert.equal(redeem.status, 501);
    assert.match(((await redeem.json()) as { message: string }).message, /--broker-password-file/);
  });

  it('a bad flag is a clear one-line error', () => {
    const r = snapback(['console', 'serve', '--data-dir', join(dir, 'x'), '--mqtt', 'http://nope']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /mqtt:\/\/, mqtts:\/\//);
    const half = snapback(['console', 'serve', '--data-dir', join(dir, 'x'), '--mqtt', broker.url, '--broker-password-file', join(dir, 'p')]);
    assert.equal(half.code, 2);
    assert.match(half.stderr, /--broker-password-file and --broker-acl-file go together/);
  });
});
