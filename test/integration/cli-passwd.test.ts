/**
 * `snapback passwd` on the appliance: with no daemon it writes the state file (scrypt, audited);
 * with a daemon running it goes through the control socket, so the daemon accepts the new
 * password at once; on a terminal it asks twice and echoes nothing; a bad password is refused
 * with one line, exit 2, and changes nothing.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../helpers/prng.js';
import { exited, snapback, snapbackOnTerminal, startServe } from '../helpers/cli.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { verifyPassword } from '../../appliance/http/passwords.js';
import { StateDir } from '../../appliance/storage/state-dir.js';

async function adminHash(stateDir: string): Promise<string | null> {
  const store = await StateStore.open(stateDir);
  try {
    return store.admin()?.passwordHash ?? null;
  } finally {
    await store.close();
  }
}

describe('snapback passwd', function () {
  this.timeout(180_000);
  let dir: string;
  let state: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-passwd-'));
    state = join(dir, 'state');
    mkdirSync(state);
    new StateDir(state).writeConfig({ version: 2, disk: join(dir, 'disk.img'), regionSize: 65536, createdAt: new Date().toISOString() });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('with no daemon, --password-stdin sets the password in the state file (scrypt) and audits it', async () => {
    const r = snapback(['passwd', '--state-dir', state, '--password-stdin'], {}, 'correct horse\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /administrator password set in /);
    const hash = await adminHash(state);
    assert.ok(hash?.startsWith('scrypt$'), `an scrypt hash: ${hash}`);
    assert.ok(await verifyPassword('correct horse', hash!), 'the hash is of the password given, without its newline');
    const store = await StateStore.open(state);
    try {
      assert.ok(store.listAudit().some((e) => e.actor === 'cli' && e.action === 'auth.password-change'));
    } finally {
      await store.close();
    }
  });

  it('refuses a directory that snapback init did not make (no snapback.json) and creates nothing in it', () => {
    const bare = join(dir, 'bare');
    mkdirSync(bare);
    const r = snapback(['passwd', '--state-dir', bare, '--password-stdin'], {}, 'correct horse\n');
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /not a Snapback state directory \(no snapback\.json\)/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.deepEqual(readdirSync(bare), [], 'no state file, no lock left behind');
  });

  it('on a terminal, asks twice and echoes nothing; two different entries change nothing', async () => {
    const differ = await snapbackOnTerminal(['passwd', '--state-dir', state], [
      { prompt: /password: $/, reply: 'first-secret-1' },
      { prompt: /Repeat it: $/, reply: 'other-secret-2' },
    ]);
    assert.equal(differ.code, 2, differ.screen);
    assert.match(differ.screen, /snapback: the two passwords differ; the password is unchanged/);
    assert.equal(existsSync(join(state, 'state.json')), false, 'nothing written');

    const same = await snapbackOnTerminal(['passwd', '--state-dir', state], [
      { prompt: /password: $/, reply: 'typed-secret-9' },
      { prompt: /Repeat it: $/, reply: 'typed-secret-9' },
    ]);
    assert.equal(same.code, 0, same.screen);
    assert.ok(!same.screen.includes('typed-secret'), `the password is not echoed: ${JSON.stringify(same.screen)}`);
    assert.ok(await verifyPassword('typed-secret-9', (await adminHash(state))!));
  });

  it('a too-short or missing password: one clear line, exit 2, and the state file is untouched', async () => {
    let r = snapback(['passwd', '--state-dir', state, '--password-stdin'], {}, 'short\n');
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, 'snapback: the new password: at least 8 characters; nothing was changed\n');
    assert.equal(existsSync(join(state, 'state.json')), false, 'no state file was created');

    assert.equal(snapback(['passwd', '--state-dir', state, '--password-stdin'], {}, 'the-first-password').code, 0);
    const before = readFileSync(join(state, 'state.json'));
    for (const input of ['short', '        ', 'two\nlines-password', '']) {
      r = snapback(['passwd', '--state-dir', state, '--password-stdin'], {}, input);
      assert.equal(r.code, 2, `${JSON.stringify(input)}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.ok(readFileSync(join(state, 'state.json')).equals(before), `${JSON.stringify(input)} changed nothing`);
    }
    r = snapback(['passwd', '--state-dir', state], {}, 'not-a-terminal\n');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /stdin is not a terminal: give the password with --password-stdin/);
  });

  it('with a daemon running, sets it through the control socket: the daemon takes the new password at once', async () => {
    const served = join(dir, 'served');
    const model = join(dir, 'model.img');
    writeFileSync(model, new Prng(3).bytes(4 << 20));
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
    const init = snapback(['init', '--state-dir', served, '--model', model, '--disk', join(dir, 'disk.img')]);
    assert.equal(init.code, 0, init.stderr);
    const d = await startServe(served);
    const ctl = join(served, 'control.sock');
    try {
      assert.equal(((await callDaemon(ctl, 'GET', '/api/auth/state')) as { passwordSet: boolean }).passwordSet, false);
      let r = snapback(['passwd', '--state-dir', served, '--password-stdin'], {}, 'daemon-secret-1\n');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /through the running daemon/);
      assert.equal(((await callDaemon(ctl, 'GET', '/api/auth/state')) as { passwordSet: boolean }).passwordSet, true);
      await callDaemon(ctl, 'POST', '/api/auth/login', { password: 'daemon-secret-1' });

      r = snapback(['passwd', '--state-dir', served, '--password-stdin'], {}, 'short\n');
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      await callDaemon(ctl, 'POST', '/api/auth/login', { password: 'daemon-secret-1' }); // still the same password
      await assert.rejects(callDaemon(ctl, 'POST', '/api/auth/login', { password: 'short' }), /wrong password/);
    } finally {
      d.kill('SIGTERM');
      await exited(d);
    }
    assert.ok(await verifyPassword('daemon-secret-1', (await adminHash(served))!), 'the daemon saved it in its state file');
  });
});
