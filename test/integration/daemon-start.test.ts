/**
 * The daemon's start as a lab administrator meets it: what refuses a start (and then writes
 * nothing), what never takes the host's disk away (a web listener that cannot bind, a bad
 * gpio.json: reported in the status instead), and the administrator password given on the
 * boot partition. Real daemon, real NBD client (nbdinfo), real files.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon, type ServeOptions } from '../../appliance/daemon/daemon.js';
import { preflight } from '../../appliance/daemon/preflight.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { verifyPassword } from '../../appliance/http/passwords.js';
import { StateStore } from '../../appliance/state/state-store.js';
import type { ApplianceStatus } from '../../appliance/session/appliance-service.js';
import { Prng } from '../helpers/prng.js';
import { CLI, exited, initState, nbdUri, snapback } from '../helpers/cli.js';

const SIZE = 8 << 20;

describe('daemon start: refusals write nothing, optional parts never take the disk away', function () {
  this.timeout(120_000);
  let dir: string;
  let state: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-start-'));
    state = initState(dir, new Prng(7).bytes(SIZE)).state;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function options(extra: Partial<ServeOptions> = {}): ServeOptions {
    return { stateDir: state, httpListen: { host: '127.0.0.1', port: 0 }, gadget: 'off', gpio: 'off', firstBootPasswordFile: null, sysRoot: join(dir, 'sys'), ...extra };
  }

  /** Runs one daemon to completion of its start and stops it, so that state.json exists. */
  async function startAndStop(): Promise<void> {
    const d = new Daemon(options());
    await d.start();
    await d.stop();
  }

  function snapshot(): { log: Buffer; state: Buffer } {
    return { log: readFileSync(join(state, 'write-log.bin')), state: readFileSync(join(state, 'state.json')) };
  }

  /** A real NBD client reads the export's size (asynchronously: the server runs in this process). */
  async function served(): Promise<void> {
    const child = spawn('nbdinfo', ['--size', nbdUri(state)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const { code } = await exited(child);
    assert.equal(code, 0, out);
    assert.equal(Number(out.trim()), SIZE);
  }

  function component(status: ApplianceStatus, name: string): ApplianceStatus['components'][number] {
    const c = status.components.find((x) => x.name === name);
    assert.ok(c, `status lists ${name}: ${JSON.stringify(status.components)}`);
    return c;
  }

  describe('a refused start leaves write-log.bin and state.json byte-identical', () => {
    const refusals: [string, () => Partial<ServeOptions> | Promise<Partial<ServeOptions>>, (e: unknown) => boolean][] = [
      [
        'the NBD socket path is a regular file',
        () => {
          writeFileSync(join(state, 'nbd.sock'), 'not a socket');
          return {};
        },
        (e) => isSnapbackError(e, 'BAD_ARGUMENT') && /nbd\.sock exists and is not a socket/.test((e as Error).message),
      ],
      [
        'the NBD TCP port is taken',
        async () => ({ nbdListen: { host: '127.0.0.1', port: await takenPort() } }),
        (e) => isSnapbackError(e, 'BUSY') || /EADDRINUSE|in use/.test((e as Error).message),
      ],
      [
        'state.json is from a newer Snapback',
        () => {
          const p = join(state, 'state.json');
          writeFileSync(p, JSON.stringify({ ...JSON.parse(readFileSync(p, 'utf8')), schemaVersion: 99 }));
          return {};
        },
        (e) => isSnapbackError(e, 'STATE_CORRUPT'),
      ],
      [
        '--gadget on where no USB device controller exists',
        () => ({ gadget: 'on' }),
        (e) => isSnapbackError(e, 'NOT_SUPPORTED') && /--gadget on/.test((e as Error).message),
      ],
    ];
    for (const [name, arrange, isTheRefusal] of refusals) {
      it(name, async () => {
        await startAndStop();
        const extra = await arrange();
        const before = snapshot();
        await assert.rejects(new Daemon(options(extra)).start(), (e: unknown) => {
          assert.ok(isTheRefusal(e), String(e));
          return true;
        });
        const after = snapshot();
        assert.ok(after.log.equals(before.log), 'write-log.bin unchanged (the previous session was not ended)');
        assert.ok(after.state.equals(before.state), 'state.json unchanged');
        assert.ok(!existsSync(join(state, 'daemon.pid')), 'the state directory is not left locked');
      });
    }
  });

  it('a bad gpio.json does not take the disk away: the disk is served, the status names the file and the key, GPIO is failed', async () => {
    writeFileSync(join(state, 'gpio.json'), JSON.stringify({ buton: { pin: 17 } }));
    const d = new Daemon(options({ gpio: 'auto' }));
    try {
      await d.start();
      await served();
      const gpio = component(d.sessions!.status(), 'gpio');
      assert.equal(gpio.state, 'failed');
      assert.equal(gpio.essential, false);
      assert.match(gpio.problem ?? '', /gpio\.json/);
      assert.match(gpio.problem ?? '', /buton/);
      assert.equal(component(d.sessions!.status(), 'nbd').state, 'running');
    } finally {
      await d.stop();
    }
  });

  it('a misspelt key in gpio.json ("swichPin") is rejected by name, not ignored', async () => {
    writeFileSync(join(state, 'gpio.json'), JSON.stringify({ power: { swichPin: 5 } }));
    const d = new Daemon(options({ gpio: 'auto' }));
    try {
      await d.start();
      assert.match(component(d.sessions!.status(), 'gpio').problem ?? '', /gpio\.json: power: Unrecognized key\(s\) in object: 'swichPin'/);
    } finally {
      await d.stop();
    }
  });

  it('a bad gadget.json gives the gadget its default settings, with the problem naming the file and the key', async () => {
    // A machine where the gadget can run (as far as the checks before the start can tell).
    const sys = join(dir, 'sys');
    mkdirSync(join(sys, 'class', 'udc', 'dummy_udc.0'), { recursive: true });
    mkdirSync(join(sys, 'block', 'nbd0'), { recursive: true });
    mkdirSync(join(dir, 'configfs', 'usb_gadget'), { recursive: true });
    writeFileSync(join(state, 'gadget.json'), JSON.stringify({ profile: 'picky-bios', policy: { endOnDisconect: false } }));
    const plan = await preflight({ stateDir: state, gadget: 'auto', gpio: 'off', sysRoot: sys, configfsRoot: join(dir, 'configfs') });
    assert.ok(plan.gadget, `the gadget runs: ${plan.gadgetOffReason ?? ''}`);
    assert.equal(plan.gadget.settings.profile, 'default', 'the default settings, not half of the file');
    assert.match(plan.gadget.problem ?? '', /gadget\.json: policy: Unrecognized key\(s\) in object: 'endOnDisconect'/);
    assert.match(plan.gadget.problem ?? '', /default settings/);
  });

  it('a misspelt gadget.json key is reported under --gadget auto where no gadget can run, with the same message as where one can', async () => {
    // No UDC, no configfs: `auto` serves NBD only; the file is still checked, as on the Pi.
    writeFileSync(join(state, 'gadget.json'), JSON.stringify({ policy: { endOnDisconect: false } }));
    const d = new Daemon(options({ gadget: 'auto', configfsRoot: join(dir, 'no-configfs') }));
    try {
      await d.start();
      await served();
      const gadget = component(d.sessions!.status(), 'gadget');
      assert.equal(gadget.state, 'off');
      assert.match(gadget.problem ?? '', /gadget\.json: policy: Unrecognized key\(s\) in object: 'endOnDisconect'/);
      assert.match(gadget.problem ?? '', /default settings/);
    } finally {
      await d.stop();
    }
  });

  it('a web listener that cannot bind does not take the disk away: the disk is served and the status says why', async () => {
    const port = await takenPort();
    const d = new Daemon(options({ httpListen: { host: '127.0.0.1', port } }));
    try {
      const addresses = await d.start();
      assert.equal(addresses.http, null);
      await served();
      const http = component(d.sessions!.status(), 'http');
      assert.equal(http.state, 'failed');
      assert.match(http.problem ?? '', /in use/);
      for (const name of ['storage', 'nbd', 'state', 'sessions']) assert.equal(component(d.sessions!.status(), name).state, 'running', name);
    } finally {
      await d.stop();
      releasePorts();
    }
  });

  it('the web listener on a network address before a password exists does not take the disk away', async () => {
    const d = new Daemon(options({ httpListen: { host: '0.0.0.0', port: 0 } }));
    try {
      await d.start();
      await served();
      const http = component(d.sessions!.status(), 'http');
      // Either the listener runs (it can ask for a setup code) or it is reported; never a refused start.
      assert.ok(http.state === 'running' || (http.state === 'failed' && (http.problem ?? '') !== ''), JSON.stringify(http));
    } finally {
      await d.stop();
    }
  });

  it('a first-boot password file is consumed: the password is set (scrypt), the file deleted, the password never logged', async () => {
    const file = join(dir, 'boot', 'snapback-password');
    const password = 'correct horse battery staple';
    await import('node:fs/promises').then((fs) => fs.mkdir(join(dir, 'boot')));
    writeFileSync(file, `${password}\n`);
    const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', state, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off', '--first-boot-password-file', file], {
      env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const deadline = Date.now() + 30_000;
    while (!/serving NBD/.test(out)) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`serve did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGTERM');
    assert.equal((await exited(child)).code, 0, out);
    assert.ok(!existsSync(file), 'the password file is deleted');
    assert.ok(!out.includes(password), 'the password is not in the log');
    assert.match(out, /administrator password set from the first-boot file/);
    const store = await StateStore.open(state);
    try {
      const hash = store.admin()?.passwordHash ?? '';
      assert.match(hash, /^scrypt\$/);
      assert.ok(await verifyPassword(password, hash));
      assert.ok(store.listAudit().some((e) => e.action === 'auth.password-set' && e.actor === 'system'));
    } finally {
      await store.close();
    }
  });
});

const held: Server[] = [];

/** A loopback port something else listens on. */
async function takenPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((res) => s.listen(0, '127.0.0.1', res));
  held.push(s);
  return (s.address() as { port: number }).port;
}

function releasePorts(): void {
  for (const s of held.splice(0)) s.close();
}

after(releasePorts);
