/**
 * The state store: durable JSON file with schema version and migrations, settings, users,
 * tokens, session history, audit log; a corrupt file is refused and left untouched.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import type { SessionRecord } from '../../appliance/session/appliance-service.js';
import { DEFAULT_SETTINGS, SCHEMA_VERSION, StateCorruptError, StateStore, type Settings } from '../../appliance/state/state-store.js';

function rec(n: number, extra: Partial<SessionRecord> = {}): SessionRecord {
  return {
    number: n,
    startedAt: new Date(2024, 0, 1, 8, n).toISOString(),
    endedAt: null,
    endReason: null,
    mode: 'frozen',
    regionsWritten: n * 3,
    bytesWritten: n * 3 * 65536,
    sessionEndMs: null,
    restoreMs: null,
    events: [],
    ...extra,
  };
}

describe('state store (lowdb, durable)', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapback-state-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates state.json with the schema version, defaults and mode 0600 on first open', async () => {
    const s = await StateStore.open(dir);
    const raw = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8'));
    assert.equal(raw.schemaVersion, SCHEMA_VERSION);
    assert.deepEqual(raw.settings, DEFAULT_SETTINGS);
    assert.equal((await stat(join(dir, 'state.json'))).mode & 0o777, 0o600);
    assert.equal(s.hasAdminPassword(), false);
    await s.close();
  });

  it('refuses a missing state directory with STATE_MISSING', async () => {
    await assert.rejects(StateStore.open(join(dir, 'nope')), (e: unknown) => isSnapbackError(e, 'STATE_MISSING'));
  });

  it('keeps everything across a reopen (settings, admin, tokens, sessions, audit)', async () => {
    const s = await StateStore.open(dir);
    await s.updateSettings({ hydrationRateBytesPerSecond: 8 << 20 });
    await s.setAdminPasswordHash('scrypt$15$8$1$c2FsdA==$aGFzaA==');
    await s.addToken({ id: 'aabbccddeeff', name: 'mon', secretHash: 'a'.repeat(64), createdAt: 'x', createdBy: 'admin', lastUsedAt: null });
    await s.upsertSession(rec(1));
    await s.upsertSession(rec(2));
    await s.upsertSession(rec(1, { endedAt: '2024-01-01T09:00:00.000Z', endReason: 'api' }));
    const a = await s.audit({ actor: 'admin', action: 'mode.set', details: { mode: 'thawed' } });
    assert.equal(a.id, 1);
    assert.match(a.at, /^\d{4}-\d\d-\d\dT/);
    await s.close();

    const t = await StateStore.open(dir);
    assert.equal(t.settings().hydrationRateBytesPerSecond, 8 << 20);
    assert.equal(t.admin()?.passwordHash, 'scrypt$15$8$1$c2FsdA==$aGFzaA==');
    assert.equal(t.listTokens().length, 1);
    assert.deepEqual(
      t.listSessions().map((x) => [x.number, x.endReason]),
      [
        [1, 'api'],
        [2, null],
      ],
    );
    const log = t.listAudit();
    assert.equal(log.length, 1);
    assert.deepEqual(log[0]?.details, { mode: 'thawed' });
    // Ids keep counting after a reopen.
    assert.equal((await t.audit({ actor: 'cli', action: 'session.end' })).id, 2);
    await t.close();
  });

  it('rejects invalid settings with BAD_ARGUMENT and changes nothing', async () => {
    const s = await StateStore.open(dir);
    const before = await readFile(join(dir, 'state.json'), 'utf8');
    await assert.rejects(s.updateSettings({ hydrationRateBytesPerSecond: -5 }), (e: unknown) => isSnapbackError(e, 'BAD_ARGUMENT'));
    await assert.rejects(
      s.updateSettings({ sessionEndPolicy: { usb: 'ignore' } } as unknown as Partial<Settings>),
      (e: unknown) => isSnapbackError(e, 'BAD_ARGUMENT'),
    );
    assert.deepEqual(s.settings(), DEFAULT_SETTINGS);
    assert.equal(await readFile(join(dir, 'state.json'), 'utf8'), before);
    await s.close();
  });

  it('caps the session history and the audit log, oldest first out', async () => {
    const s = await StateStore.open(dir, { sessionHistoryLimit: 5, auditLimit: 7 });
    for (let i = 1; i <= 12; i++) await s.upsertSession(rec(i));
    for (let i = 1; i <= 20; i++) await s.audit({ actor: 'system', action: `a${i}` });
    assert.deepEqual(
      s.listSessions().map((x) => x.number),
      [8, 9, 10, 11, 12],
    );
    const audit = s.listAudit({ limit: 100 });
    assert.deepEqual(
      audit.map((e) => e.action),
      ['a20', 'a19', 'a18', 'a17', 'a16', 'a15', 'a14'],
    );
    assert.deepEqual(
      s.listAudit({ beforeId: 17, limit: 2 }).map((e) => e.id),
      [16, 15],
    );
    await s.close();
  });

  it('makes every concurrent change durable (shared writes, nothing lost)', async () => {
    const s = await StateStore.open(dir);
    await Promise.all(Array.from({ length: 50 }, (_, i) => s.audit({ actor: 't', action: `c${i}` })));
    const raw = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8'));
    assert.equal(raw.audit.length, 50);
    assert.equal(raw.nextAuditId, 51);
    await s.close();
    // No temporary file is left behind.
    assert.deepEqual((await readdir(dir)).sort(), ['state.json']);
  });

  for (const [name, content] of [
    ['not JSON', '{"schemaVersion": 1, "settings": '],
    ['an empty file', ''],
    ['a JSON array', '[1,2,3]'],
    ['a wrong shape', JSON.stringify({ schemaVersion: 2, settings: { hydrationRateBytesPerSecond: 'fast' } })],
    ['a newer schema', JSON.stringify({ schemaVersion: 99 })],
  ] as const) {
    it(`refuses ${name} with a clear error and leaves the file untouched`, async () => {
      const p = join(dir, 'state.json');
      await writeFile(p, content);
      await assert.rejects(StateStore.open(dir), (e: unknown) => {
        assert.ok(e instanceof StateCorruptError, String(e));
        assert.equal(e.code, 'STATE_CORRUPT');
        assert.ok(e.message.includes(p), e.message);
        assert.match(e.message, /untouched/);
        return true;
      });
      assert.equal(await readFile(p, 'utf8'), content);
    });
  }

  it('migrates a file without schemaVersion (version 0), keeping its data and a backup', async () => {
    const p = join(dir, 'state.json');
    const v0 = { settings: { restoreMode: 'eager', hydrationRateBytesPerSecond: 1 << 20 }, audit: [{ id: 4, at: '2024-01-01T00:00:00.000Z', actor: 'admin', action: 'x' }] };
    await writeFile(p, JSON.stringify(v0));
    const s = await StateStore.open(dir);
    assert.deepEqual(s.settings(), { hydrationRateBytesPerSecond: 1 << 20, maintenance: { windows: [], thawBoots: 0 } }, 'a file from before maintenance windows has none');
    assert.equal((await s.audit({ actor: 'a', action: 'b' })).id, 5);
    await s.close();
    const raw = JSON.parse(await readFile(p, 'utf8'));
    assert.equal(raw.schemaVersion, SCHEMA_VERSION);
    assert.deepEqual(JSON.parse(await readFile(`${p}.v0.bak`, 'utf8')), v0);
  });

  it('migrates version 1 by dropping the settings nothing applied (mode mirrors, sessionEndPolicy), keeping the rest', async () => {
    const p = join(dir, 'state.json');
    const v1 = {
      schemaVersion: 1,
      settings: { protectionMode: 'thawed', restoreMode: 'eager', hydrationRateBytesPerSecond: 2048, sessionEndPolicy: { usb: 'ignore', hostPowerOff: false } },
      users: [],
      apiTokens: [],
      sessions: [],
      audit: [],
      nextAuditId: 7,
    };
    await writeFile(p, JSON.stringify(v1));
    const s = await StateStore.open(dir);
    assert.deepEqual(s.settings(), { hydrationRateBytesPerSecond: 2048, maintenance: { windows: [], thawBoots: 0 } });
    assert.equal((await s.audit({ actor: 'a', action: 'b' })).id, 7);
    await s.close();
    const raw = JSON.parse(await readFile(p, 'utf8'));
    assert.equal(raw.schemaVersion, 2);
    assert.deepEqual(JSON.parse(await readFile(`${p}.v1.bak`, 'utf8')), v1);
  });

  it('emits settings and audit events', async () => {
    const s = await StateStore.open(dir);
    const seen: string[] = [];
    s.on('settings', (x: { hydrationRateBytesPerSecond: number | null }) => seen.push(`settings:${x.hydrationRateBytesPerSecond}`));
    s.on('audit', (x: { action: string }) => seen.push(`audit:${x.action}`));
    await s.updateSettings({ hydrationRateBytesPerSecond: 4096 });
    await s.audit({ actor: 'cli', action: 'hydration-rate.set' });
    assert.deepEqual(seen, ['settings:4096', 'audit:hydration-rate.set']);
    await s.close();
  });

  it('refuses changes after close', async () => {
    const s = await StateStore.open(dir);
    await s.close();
    await s.close();
    await assert.rejects(s.audit({ actor: 'a', action: 'b' }), (e: unknown) => isSnapbackError(e, 'CLOSED'));
  });
});
