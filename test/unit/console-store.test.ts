/**
 * The console's SQLite store: the schema is created from version 1 and a newer database is
 * refused; a command is answered once and only by the appliance it was for; a group's commands
 * and their audit entry are one commit; an enrollment code is redeemed once.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { isSnapbackError } from '../../appliance/errors.js';
import { Catalogue } from '../../console/server/catalogue.js';
import { CONSOLE_SCHEMA_VERSION } from '../../console/server/migrations.js';
import { ConsoleStore } from '../../console/server/console-store.js';
import { Dispatcher } from '../../console/server/dispatcher.js';
import { FleetLink } from '../../console/server/fleet-link.js';

describe('the console store (SQLite)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapback-console-store-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('a new database gets the schema from version 1 on, and reopening keeps its data', async () => {
    const s = ConsoleStore.open(dir);
    s.setAvailability('lab-01', true);
    assert.equal(s.createGroup('room 101', ''), true);
    assert.equal(s.createGroup('room 101', ''), false);
    await s.audit({ actor: 'cli', action: 'test' });
    s.close();
    const db = new Database(join(dir, 'console.db'), { readonly: true });
    assert.equal(db.pragma('user_version', { simple: true }), CONSOLE_SCHEMA_VERSION);
    assert.ok(CONSOLE_SCHEMA_VERSION >= 1);
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((t) => t.name);
    for (const t of ['appliances', 'groups', 'assignments', 'commands', 'users', 'tokens', 'enroll_codes', 'audit', 'models', 'broker_accounts']) assert.ok(tables.includes(t), t);
    db.close();
    const again = ConsoleStore.open(dir);
    assert.deepEqual([again.appliance('lab-01')?.online, again.listGroups().map((g) => g.name), again.listAudit()[0]?.action], [true, ['room 101'], 'test']);
    again.close();
  });

  it('a database from a newer release is refused with a clear error', () => {
    ConsoleStore.open(dir).close();
    const db = new Database(join(dir, 'console.db'));
    db.pragma(`user_version = ${CONSOLE_SCHEMA_VERSION + 1}`);
    db.close();
    assert.throws(() => ConsoleStore.open(dir), (err: unknown) => isSnapbackError(err, 'STATE_CORRUPT') && /newer than this release/.test(err.message));
  });

  it('a command is answered once, and only by the appliance it was for', () => {
    const s = ConsoleStore.open(dir);
    s.addCommands([{ appliance: 'lab-01', actor: 'admin', command: { id: 'c1', action: 'freeze', args: {} } }]);
    assert.deepEqual(s.openCommands().map((c) => c.id), ['c1']);
    assert.equal(s.answerCommand('c1', 'lab-02', { ok: true }), false, 'another appliance cannot answer it');
    assert.equal(s.answerCommand('c1', 'lab-01', { ok: false, error: { code: 'BUSY', message: 'busy' } }), true);
    assert.equal(s.answerCommand('c1', 'lab-01', { ok: true }), false, 'a second answer does not count');
    const c = s.command('c1')!;
    assert.deepEqual([c.state, c.error], ['failed', { code: 'BUSY', message: 'busy' }]);
    assert.deepEqual(s.openCommands(), []);
    s.close();
  });

  it("a group action's commands and its audit entry are one commit: when the entry cannot be written, no command is recorded to be sent later", async () => {
    const s = ConsoleStore.open(dir);
    for (const name of ['lab-01', 'lab-02']) s.setAvailability(name, true);
    s.createGroup('room 101', '');
    for (const name of ['lab-01', 'lab-02']) s.setApplianceGroup(name, 'room 101');
    // (a broker link that is not connected: what is recorded waits for it, and is sent on connect)
    const dispatcher = new Dispatcher(s, new FleetLink({ url: 'mqtt://127.0.0.1:1', store: s }), new Catalogue(dir, s, () => 'http://127.0.0.1/'));
    const sent = await dispatcher.dispatch({ action: 'freeze' }, dispatcher.resolveTargets({ groups: ['room 101'] }), 'admin', { groups: ['room 101'] });
    assert.deepEqual(s.openCommands().map((c) => c.appliance).sort(), ['lab-01', 'lab-02']);
    const entry = s.listAudit({ limit: 1 })[0]!;
    assert.deepEqual([entry.action, entry.details?.count, (entry.details?.commands as { id: string }[]).map((c) => c.id).sort()], ['fleet.freeze', 2, sent.map((c) => c.id).sort()]);

    // The audit log refuses the next entry (as a full disk would): the action fails and leaves nothing to send.
    const side = new Database(join(dir, 'console.db'));
    side.exec("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'the audit log cannot be written'); END");
    await assert.rejects(dispatcher.dispatch({ action: 'thaw' }, dispatcher.resolveTargets({ groups: ['room 101'] }), 'admin'), /audit log cannot be written/);
    assert.deepEqual(s.openCommands().map((c) => c.action), ['freeze', 'freeze'], 'no thaw is queued to go out on the next connect');
    side.close();
    s.close();
  });

  it('a command unanswered for too long expires: it fails with EXPIRED and is not open any more', () => {
    const s = ConsoleStore.open(dir);
    s.addCommands([{ appliance: 'lab-01', actor: 'admin', command: { id: 'old', action: 'freeze', args: {} } }]);
    assert.equal(s.expireCommands('2000-01-01T00:00:00.000Z'), 0, 'a young command stays');
    assert.equal(s.expireCommands(new Date(Date.now() + 1000).toISOString()), 1);
    assert.deepEqual([s.command('old')?.state, s.command('old')?.error?.code], ['failed', 'EXPIRED']);
    assert.deepEqual(s.openCommands(), []);
    assert.equal(s.answerCommand('old', 'lab-01', { ok: true }), false, 'a late answer does not revive it');
    s.close();
  });

  it('an enrollment code is redeemed once', () => {
    const s = ConsoleStore.open(dir);
    s.addEnrollCode({ id: 'e1', secretHash: 'h', name: null, createdAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 3600_000).toISOString() });
    assert.equal(s.redeemEnrollCode('e1', 'lab-01', '$7$x'), true);
    assert.equal(s.redeemEnrollCode('e1', 'lab-02', '$7$y'), false);
    assert.deepEqual(s.brokerAccounts(), [{ name: 'lab-01', passwordHash: '$7$x' }]);
    s.close();
  });
});
