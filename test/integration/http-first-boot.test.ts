/**
 * The first boot: the web UI listens on the configured (network) address before any password
 * exists, and the first password can then be set from another machine only with the one-time
 * setup code that the daemon wrote to DIR/setup-code (0600) and to its log. Clients on the
 * appliance (loopback) and the CLI need no code. The code is gone once a password is set.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import { HttpComponent } from '../../appliance/http/http-component.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { FakeAppliance } from '../helpers/fake-appliance.js';
import { Client, PASSWORD, controlRequest, startHarness, type Harness } from '../helpers/http-harness.js';
import { ownNetworkAddress } from '../helpers/network.js';

describe('http: first boot (setup code)', () => {
  let hx: Harness;
  let lan: Client;
  let local: Client;
  let codeFile: string;
  beforeEach(async () => {
    hx = await startHarness({ host: '0.0.0.0' });
    const port = Number(new URL(hx.url).port);
    lan = new Client(`http://${ownNetworkAddress()}:${port}`);
    local = new Client(`http://127.0.0.1:${port}`);
    codeFile = join(hx.dir, 'setup-code');
  });
  afterEach(async () => {
    await hx.close();
  });

  async function theCode(): Promise<string> {
    return (await readFile(codeFile, 'utf8')).trim();
  }

  it('listens on a network address before a password exists, and writes the setup code to DIR/setup-code with mode 0600', async () => {
    assert.equal(hx.http.address().host, '0.0.0.0');
    const st = await lan.req('GET', '/api/auth/state');
    assert.equal(st.status, 200);
    assert.equal(st.json.passwordSet, false);
    assert.equal(st.json.setupCodeRequired, true);
    assert.equal((await stat(codeFile)).mode & 0o777, 0o600);
    assert.match(await theCode(), /^[A-Z2-9]{4}(-[A-Z2-9]{4}){3}$/);
  });

  it('a network client cannot set the first password without the code, nor with a wrong one', async () => {
    const none = await lan.setup(PASSWORD);
    assert.equal(none.status, 403);
    assert.equal(none.json.error, 'SETUP_CODE_REQUIRED');
    assert.match(none.json.message, /setup-code/);
    const wrong = await lan.req('POST', '/api/auth/setup', { body: { password: PASSWORD, setupCode: 'AAAA-BBBB-CCCC-DDDD' } });
    assert.equal(wrong.status, 403);
    assert.equal(wrong.json.error, 'BAD_SETUP_CODE');
    assert.equal(hx.store.hasAdminPassword(), false);
    assert.equal(hx.store.listAudit().length, 0);
  });

  it('a network client with the code sets the password and is logged in; the code file is deleted and the code is spent', async () => {
    const code = await theCode();
    const r = await lan.req('POST', '/api/auth/setup', { body: { password: PASSWORD, setupCode: code.toLowerCase() } });
    assert.equal(r.status, 201, r.text);
    lan.csrf = r.json.csrfToken;
    assert.equal(hx.store.hasAdminPassword(), true);
    await assert.rejects(stat(codeFile), 'the setup code file is deleted');
    assert.equal((await lan.req('GET', '/api/status')).status, 200, 'logged in');
    const st = await new Client(lan.base).req('GET', '/api/auth/state');
    assert.equal(st.json.setupCodeRequired, false);
    const again = await new Client(lan.base).req('POST', '/api/auth/setup', { body: { password: 'another password', setupCode: code } });
    assert.equal(again.status, 409);
  });

  it('a client on the appliance itself (loopback) needs no code', async () => {
    const st = await local.req('GET', '/api/auth/state');
    assert.equal(st.json.setupCodeRequired, false);
    assert.equal((await local.setup(PASSWORD)).status, 201);
    await assert.rejects(stat(codeFile), 'the setup code file is deleted');
  });

  it('the CLI (control socket) needs no code, and setting the password there deletes the code file', async () => {
    const r = await controlRequest(hx.controlSocket, 'POST', '/api/auth/setup', { password: PASSWORD });
    assert.equal(r.status, 201, r.text);
    await assert.rejects(stat(codeFile));
  });

  it('guessing the code is rate-limited like a password', async () => {
    for (let i = 0; i < 5; i++) {
      assert.equal((await lan.req('POST', '/api/auth/setup', { body: { password: PASSWORD, setupCode: `WRONG-${i}` } })).status, 403);
    }
    const r = await lan.req('POST', '/api/auth/setup', { body: { password: PASSWORD, setupCode: await theCode() } });
    assert.equal(r.status, 429);
    assert.equal(hx.store.hasAdminPassword(), false);
  });
});

describe('http: first boot, daemon side', () => {
  it('a start with a password already set makes no setup code and removes a stale file', async () => {
    const hx = await startHarness();
    try {
      await hx.http.stop();
      await hx.store.setAdminPasswordHash('scrypt$15$8$1$c2FsdHNhbHQ=$aGFzaGhhc2hoYXNoaGFzaA==');
      await hx.http.start();
      await assert.rejects(stat(join(hx.dir, 'setup-code')));
    } finally {
      await hx.close();
    }
  });

  it('logs the setup code at warn level (the journal), the same code as in the file', async () => {
    const script = `
      import { HttpComponent } from ${JSON.stringify(new URL('../../appliance/http/http-component.js', import.meta.url).href)};
      import { StateStore } from ${JSON.stringify(new URL('../../appliance/state/state-store.js', import.meta.url).href)};
      import { FakeAppliance } from ${JSON.stringify(new URL('../helpers/fake-appliance.js', import.meta.url).href)};
      import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
      import { join } from 'node:path';
      import { tmpdir } from 'node:os';
      const dir = mkdtempSync(join(tmpdir(), 'snapback-setup-log-'));
      const store = await StateStore.open(dir);
      const service = new FakeAppliance();
      const http = new HttpComponent({ service, store, listen: { host: '127.0.0.1', port: 0 }, controlSocket: join(dir, 'control.sock') });
      await http.start();
      const code = readFileSync(join(dir, 'setup-code'), 'utf8').trim();
      await http.stop();
      service.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
      process.stderr.write('CODE ' + code + '\\n');
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, LOG_LEVEL: 'warn', NODE_ENV: 'production' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const rc = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(rc, 0, err);
    const code = /^CODE (\S+)$/m.exec(err)?.[1];
    assert.ok(code, err);
    const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: number; msg: string; setupCode?: string });
    const line = lines.find((l) => l.setupCode !== undefined);
    assert.ok(line, out);
    assert.equal(line.level, 40, 'warn');
    assert.equal(line.setupCode, code);
    assert.ok(line.msg.includes(code));
  });
});

describe('http: the control socket outlives a failed TCP listener', () => {
  it('a TCP listen failure rejects start(), but the CLI still reaches the daemon until stop()', async () => {
    const d = await mkdtemp(join(tmpdir(), 'snapback-tcp-fail-'));
    const store = await StateStore.open(d);
    const sock = join(d, 'control.sock');
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
    const http = new HttpComponent({ service: new FakeAppliance(), store, listen: { host: '192.0.2.1', port: 0 }, controlSocket: sock });
    try {
      await assert.rejects(http.start(), (e: unknown) => isSnapbackError(e, 'BAD_ARGUMENT') && /no such local address/.test((e as Error).message));
      const r = await controlRequest(sock, 'GET', '/api/auth/state');
      assert.equal(r.status, 200);
      await http.stop();
      await assert.rejects(stat(sock), 'the control socket is removed on stop');
    } finally {
      await http.stop();
      await store.close();
      await rm(d, { recursive: true, force: true });
    }
  });
});
