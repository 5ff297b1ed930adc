/**
 * Every endpoint of the HTTP listener, against a fake appliance: without a login 401; a
 * state-changing request without or with a wrong CSRF token 403; each invalid body or
 * parameter 400 with nothing changed; and the happy paths (with their audit entries).
 */
import assert from 'node:assert/strict';
import { RegionState } from '../../appliance/session/appliance-service.js';
import { Client, PASSWORD, startHarness, type Harness, type ReqOptions } from '../helpers/http-harness.js';
import { decodeRegionMap } from '../../appliance/api/region-map-wire.js';

interface Endpoint {
  method: string;
  path: string;
  body?: unknown;
}

const READS: Endpoint[] = [
  { method: 'GET', path: '/api/status' },
  { method: 'GET', path: '/api/regions' },
  { method: 'GET', path: '/api/sessions' },
  { method: 'GET', path: '/metrics' },
  { method: 'GET', path: '/api/tokens' },
  { method: 'GET', path: '/api/settings' },
  { method: 'GET', path: '/api/audit' },
  { method: 'GET', path: '/api/export/sessions.csv' },
  { method: 'GET', path: '/api/model' },
  { method: 'GET', path: '/api/events' },
];
const TOKEN_ID = 'aaaaaaaaaaaa';
const WRITES: Endpoint[] = [
  { method: 'POST', path: '/api/session/end', body: {} },
  { method: 'POST', path: '/api/mode', body: { mode: 'thawed' } },
  { method: 'POST', path: '/api/restore-mode', body: { restoreMode: 'eager' } },
  { method: 'POST', path: '/api/hydration', body: { rateBytesPerSecond: 1048576 } },
  { method: 'POST', path: '/api/auth/logout', body: {} },
  { method: 'POST', path: '/api/auth/password', body: { currentPassword: PASSWORD, newPassword: 'a new password' } },
  { method: 'POST', path: '/api/tokens', body: { name: 'ci' } },
  { method: 'DELETE', path: `/api/tokens/${TOKEN_ID}` },
  { method: 'POST', path: '/api/settings', body: { hydrationRateBytesPerSecond: 1048576 } },
  { method: 'POST', path: '/api/model/verify', body: {} },
  { method: 'POST', path: '/api/maintenance/windows', body: { name: 'weekly', schedule: '0 3 * * 6', durationMinutes: 60 } },
  { method: 'POST', path: '/api/maintenance/thaw-boots', body: { boots: 2 } },
];

describe('http: API endpoints', () => {
  let hx: Harness;
  let c: Client;
  /** A snapshot of everything a request could change. */
  const snapshot = (): string =>
    JSON.stringify({
      calls: hx.service.calls,
      mode: hx.service.mode,
      restoreMode: hx.service.restoreMode,
      session: hx.service.sessionNumber,
      settings: hx.store.settings(),
      admin: hx.store.admin()?.passwordHash,
      tokens: hx.store.listTokens().map((t) => t.id),
      audit: hx.store.listAudit({ limit: 1000 }).length,
      verify: hx.service.verify.state,
    });

  beforeEach(async () => {
    hx = await startHarness();
    c = new Client(hx.url);
    assert.equal((await c.setup(PASSWORD)).status, 201);
    await hx.store.addToken({ id: TOKEN_ID, name: 'existing', secretHash: '0'.repeat(64), createdAt: new Date().toISOString(), createdBy: 'admin', lastUsedAt: null });
  });
  afterEach(async () => {
    await hx.close();
  });

  describe('without a login: 401', () => {
    for (const e of [...READS, ...WRITES]) {
      it(`${e.method} ${e.path}`, async () => {
        const before = snapshot();
        const anon = new Client(hx.url);
        const r = await anon.req(e.method, e.path, e.body === undefined ? {} : { body: e.body });
        assert.equal(r.status, 401, r.text);
        assert.equal(r.json?.error, 'UNAUTHENTICATED');
        assert.equal(snapshot(), before);
      });
    }
    it('a forged login cookie is no login', async () => {
      const anon = new Client(hx.url);
      anon.cookie = 'snapback_session=' + 'A'.repeat(43);
      assert.equal((await anon.req('GET', '/api/status')).status, 401);
    });
  });

  describe('a state-changing request without the CSRF token: 403, nothing changed', () => {
    for (const e of WRITES) {
      for (const [what, csrf] of [
        ['missing', false],
        ['wrong', 'x'.repeat(43)],
        ['empty', ''],
      ] as const) {
        it(`${e.method} ${e.path} (${what})`, async () => {
          const before = snapshot();
          const o: ReqOptions = { csrf };
          if (e.body !== undefined) o.body = e.body;
          const r = await c.req(e.method, e.path, o);
          assert.equal(r.status, 403, r.text);
          assert.equal(r.json.error, 'CSRF');
          assert.equal(snapshot(), before);
          assert.equal((await c.req('GET', '/api/status')).status, 200, 'still logged in');
        });
      }
    }
    it("another session's CSRF token does not work", async () => {
      const other = new Client(hx.url);
      await other.login(PASSWORD);
      const before = snapshot();
      const r = await c.req('POST', '/api/mode', { body: { mode: 'thawed' }, csrf: other.csrf ?? '' });
      assert.equal(r.status, 403);
      assert.equal(snapshot(), before);
    });
  });

  describe('invalid bodies and parameters: 400, nothing changed', () => {
    const cases: [string, string, ReqOptions][] = [
      // the control API
      ['POST', '/api/mode', { body: {} }],
      ['POST', '/api/mode', { body: { mode: 'melted' } }],
      ['POST', '/api/mode', { body: { mode: 1 } }],
      ['POST', '/api/mode', { raw: '{"mode":' }],
      ['POST', '/api/mode', { raw: '"thawed"' }],
      ['POST', '/api/mode', { body: { mode: 'thawed', now: true } }],
      ['POST', '/api/restore-mode', { body: {} }],
      ['POST', '/api/restore-mode', { body: { restoreMode: 'lazy' } }],
      ['POST', '/api/restore-mode', { body: { mode: 'eager' } }],
      ['POST', '/api/restore-mode', { raw: '[' }],
      ['POST', '/api/session/end', { raw: '{bad json' }],
      ['POST', '/api/session/end', { body: { wait: 'yes' } }],
      ['POST', '/api/session/end', { body: { reason: 'button' } }],
      ['POST', '/api/hydration', { body: {} }],
      ['POST', '/api/hydration', { body: { rateBytesPerSecond: -1 } }],
      ['POST', '/api/hydration', { body: { rateBytesPerSecond: 'fast' } }],
      ['POST', '/api/hydration', { body: { rateBytesPerSecond: 2.5 } }],
      // settings
      ['POST', '/api/settings', { body: {} }],
      ['POST', '/api/settings', { body: { hydrationRateBytesPerSecond: -1 } }],
      ['POST', '/api/settings', { body: { hydrationRateBytesPerSecond: 1.5 } }],
      ['POST', '/api/settings', { body: { hydrationRateBytesPerSecond: 0 } }],
      ['POST', '/api/settings', { body: { hydrationRateBytesPerSecond: 2 ** 41 } }],
      ['POST', '/api/settings', { body: { hydrationRateBytesPerSecond: 'fast' } }],
      ['POST', '/api/settings', { body: { sessionEndPolicy: { usb: 'ignore' } } }],
      ['POST', '/api/settings', { body: { protectionMode: 'thawed' } }],
      ['POST', '/api/settings', { body: [1, 2] }],
      ['POST', '/api/settings', { raw: '{"hydrationRateBytesPerSecond": 1e' }],
      // tokens
      ['POST', '/api/tokens', { body: {} }],
      ['POST', '/api/tokens', { body: { name: '' } }],
      ['POST', '/api/tokens', { body: { name: '   ' } }],
      ['POST', '/api/tokens', { body: { name: 'x'.repeat(65) } }],
      ['POST', '/api/tokens', { body: { name: '<script>' } }],
      ['POST', '/api/tokens', { body: { name: 'ok', scope: 'all' } }],
      ['DELETE', '/api/tokens/not-a-token', {}],
      ['DELETE', '/api/tokens/AAAAAAAAAAAA', {}],
      // password
      ['POST', '/api/auth/password', { body: { currentPassword: PASSWORD } }],
      ['POST', '/api/auth/password', { body: { currentPassword: PASSWORD, newPassword: 'short' } }],
      ['POST', '/api/auth/password', { body: { currentPassword: PASSWORD, newPassword: 'x'.repeat(257) } }],
      // model, logout
      ['POST', '/api/model/verify', { body: { regions: [1, 2] } }],
      ['POST', '/api/auth/logout', { body: { everywhere: true } }],
      // queries
      ['GET', '/api/audit?limit=0', {}],
      ['GET', '/api/audit?limit=abc', {}],
      ['GET', '/api/audit?limit=5000', {}],
      ['GET', '/api/audit?before=-3', {}],
      ['GET', '/api/audit?sort=asc', {}],
      ['GET', '/api/settings?x=1', {}],
      ['GET', '/api/export/sessions.csv?format=xlsx', {}],
      ['GET', '/api/events?since=4', {}],
      ['GET', '/api/model?x=1', {}],
    ];
    for (const [method, path, o] of cases) {
      const label = o.raw !== undefined ? `raw ${o.raw}` : JSON.stringify(o.body ?? null);
      it(`${method} ${path} ${label}`, async () => {
        const before = snapshot();
        const r = await c.req(method, path, o);
        assert.equal(r.status, 400, r.text);
        assert.equal(typeof r.json?.message, 'string');
        assert.ok(r.json.message.length > 0);
        assert.equal(snapshot(), before);
      });
    }
    it('a body that is not JSON gets 415 and changes nothing', async () => {
      const before = snapshot();
      const r = await c.req('POST', '/api/mode', { raw: 'mode=thawed', contentType: 'application/x-www-form-urlencoded' });
      assert.equal(r.status, 415);
      const r2 = await c.req('POST', '/api/settings', { raw: '{"hydrationRateBytesPerSecond":1048576}', contentType: 'text/plain' });
      assert.equal(r2.status, 415);
      assert.equal(snapshot(), before);
    });
    it('a body over 64 KiB gets 413 and changes nothing', async () => {
      const before = snapshot();
      const r = await c.req('POST', '/api/tokens', { body: { name: 'x'.repeat(70_000) } });
      assert.equal(r.status, 413);
      assert.equal(snapshot(), before);
    });
    it('an unknown endpoint gets 404', async () => {
      const r = await c.req('GET', '/api/nope');
      assert.equal(r.status, 404);
    });
  });

  describe('happy paths', () => {
    it('GET /api/status', async () => {
      const r = await c.req('GET', '/api/status');
      assert.equal(r.status, 200);
      assert.equal(r.json.mode, 'frozen');
      assert.equal(r.json.regions.total, 4096);
      assert.equal(r.json.session.number, 1);
    });

    it('GET /api/regions: the region map, compact (runs of equal state), with its counts', async () => {
      hx.service.write([0, 5, 4095]);
      const r = await c.req('GET', '/api/regions');
      assert.equal(r.status, 200);
      assert.equal(r.json.encoding, 'runs');
      assert.equal(r.json.count, 4096);
      assert.deepEqual([r.json.written, r.json.pending], [3, 0]);
      assert.ok(Buffer.from(r.json.data, 'base64').length < 16, 'five runs take a few bytes');
      const map = decodeRegionMap({ count: r.json.count, encoding: r.json.encoding, data: new Uint8Array(Buffer.from(r.json.data, 'base64')) });
      assert.equal(map.length, 4096);
      assert.deepEqual([map[0], map[1], map[5], map[4095]], [RegionState.written, RegionState.clean, RegionState.written, RegionState.written]);
    });

    it('POST /api/session/end ends the session and audits it', async () => {
      hx.service.write([1, 2, 3]);
      const r = await c.req('POST', '/api/session/end', { body: {} });
      assert.equal(r.status, 202, r.text);
      assert.equal(hx.service.sessionNumber, 2);
      assert.equal(hx.service.calls[0], 'endSession:api');
      const e = hx.store.listAudit()[0];
      assert.equal(e?.action, 'session.end');
      assert.equal(e?.actor, 'admin');
      const s = await c.req('GET', '/api/sessions');
      const list = Array.isArray(s.json) ? s.json : s.json.sessions;
      const first = list.find((x: { number: number }) => x.number === 1);
      assert.equal(first.endReason, 'api');
      assert.equal(first.regionsWritten, 3);
    });

    it('POST /api/mode and /api/restore-mode change the modes and audit them', async () => {
      assert.equal((await c.req('POST', '/api/mode', { body: { mode: 'thawed' } })).status, 200);
      assert.equal((await c.req('POST', '/api/restore-mode', { body: { restoreMode: 'eager' } })).status, 200);
      assert.equal(hx.service.mode, 'thawed');
      assert.equal(hx.service.restoreMode, 'eager');
      await hx.store.flush();
      const actions = hx.store.listAudit().map((e) => e.action);
      assert.deepEqual(actions.slice(0, 2), ['restore-mode.set', 'mode.set']);
      assert.deepEqual(hx.store.listAudit()[1]?.details?.request, { mode: 'thawed' });
    });

    it('POST /api/session/end {wait: true} answers with the ended session', async () => {
      hx.service.write([9]);
      const r = await c.req('POST', '/api/session/end', { body: { wait: true } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.ended.number, 1);
      assert.equal(r.json.ended.regionsWritten, 1);
      assert.equal(r.json.status.session.number, 2);
      assert.deepEqual(hx.store.listAudit()[0]?.details?.request, { wait: true });
    });

    it('POST /api/hydration sets the rate and audits it', async () => {
      const r = await c.req('POST', '/api/hydration', { body: { rateBytesPerSecond: 2 << 20 } });
      assert.equal(r.status, 200, r.text);
      assert.equal(hx.service.hydrationRate, 2 << 20);
      assert.equal(hx.store.listAudit()[0]?.action, 'hydration-rate.set');
    });

    it('GET /metrics', async () => {
      const r = await c.req('GET', '/metrics', { headers: { Accept: 'text/plain' } });
      assert.equal(r.status, 200);
      assert.match(r.text, /^snapback_/m);
      // the gauges carry the service's status (one snapshot per scrape)
      const st = hx.service.status();
      assert.match(r.text, new RegExp(`^snapback_regions_total ${st.regions.total}$`, 'm'));
      assert.match(r.text, new RegExp(`^snapback_session_number ${st.session.number}$`, 'm'));
    });

    it('GET /metrics names the process and Node.js metrics with one snapback_ prefix (snapback_process_resident_memory_bytes, never snapback_process_process_…)', async () => {
      const r = await c.req('GET', '/metrics', { headers: { Accept: 'text/plain' } });
      assert.equal(r.status, 200);
      assert.match(r.text, /^snapback_process_resident_memory_bytes \d+/m);
      assert.match(r.text, /^snapback_nodejs_eventloop_lag_seconds /m);
      assert.doesNotMatch(r.text, /snapback_process_process_|snapback_process_nodejs_/);
    });

    it('GET and POST /api/settings (the saved hydration rate reaches the service)', async () => {
      const g = await c.req('GET', '/api/settings');
      assert.deepEqual(g.json, { hydrationRateBytesPerSecond: null, maintenance: { windows: [], thawBoots: 0 } });
      const r = await c.req('POST', '/api/settings', { body: { hydrationRateBytesPerSecond: 4 << 20 } });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json, { hydrationRateBytesPerSecond: 4 << 20, maintenance: { windows: [], thawBoots: 0 } });
      assert.equal(hx.service.hydrationRate, 4 << 20);
      const back = await c.req('POST', '/api/settings', { body: { hydrationRateBytesPerSecond: null } });
      assert.equal(back.json.hydrationRateBytesPerSecond, null);
      assert.equal(hx.service.hydrationRate, null);
      assert.deepEqual(
        hx.store.listAudit().filter((e) => e.action === 'settings.update').length,
        2,
      );
    });

    it('POST /api/tokens, GET /api/tokens, DELETE /api/tokens/:id (404 for an unknown one)', async () => {
      const r = await c.req('POST', '/api/tokens', { body: { name: 'grafana' } });
      assert.equal(r.status, 201);
      const list = await c.req('GET', '/api/tokens');
      assert.deepEqual(list.json.tokens.map((t: { name: string }) => t.name).sort(), ['existing', 'grafana']);
      assert.equal((await c.req('DELETE', `/api/tokens/${TOKEN_ID}`)).status, 204);
      assert.equal((await c.req('DELETE', `/api/tokens/${TOKEN_ID}`)).status, 404);
      assert.equal((await c.req('GET', '/api/tokens')).json.tokens.length, 1);
    });

    it('GET /api/audit pages backwards, newest first', async () => {
      for (let i = 0; i < 5; i++) await hx.store.audit({ actor: 'system', action: `t${i}` });
      const r = await c.req('GET', '/api/audit?limit=3');
      assert.deepEqual(
        r.json.entries.map((e: { action: string }) => e.action),
        ['t4', 't3', 't2'],
      );
      const older = await c.req('GET', `/api/audit?limit=3&before=${r.json.entries[2].id}`);
      assert.deepEqual(
        older.json.entries.map((e: { action: string }) => e.action),
        ['t1', 't0', 'auth.password-set'],
      );
    });

    it('GET /api/export/sessions.csv', async () => {
      hx.service.write([7, 8]);
      await hx.service.endSession('button');
      hx.service.recordHostEvent('usb: configured -> suspended, "odd" state');
      const r = await c.req('GET', '/api/export/sessions.csv', { headers: { Accept: 'text/csv' } });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/csv/);
      assert.match(r.headers.get('content-disposition') ?? '', /attachment; filename="snapback-sessions\.csv"/);
      const lines = r.text.trimEnd().split('\r\n');
      assert.equal(lines[0], 'number,startedAt,endedAt,endReason,mode,regionsWritten,bytesWritten,sessionEndMs,restoreMs,events');
      assert.equal(lines.length, 3);
      assert.match(lines[1] ?? '', /^1,[^,]+,[^,]+,button,frozen,2,131072,12,,$/);
      assert.match(lines[2] ?? '', /^2,[^,]+,,,frozen,0,0,,,".*""odd"" state"$/);
    });

    it('GET /api/model and POST /api/model/verify (409 while one runs)', async () => {
      const m = await c.req('GET', '/api/model');
      assert.equal(m.json.model.name, 'lab-image-2024');
      assert.equal(m.json.canVerify, true);
      assert.equal(m.json.verify.state, 'idle');
      const v = await c.req('POST', '/api/model/verify', { body: {} });
      assert.equal(v.status, 202);
      assert.equal(v.json.state, 'running');
      const again = await c.req('POST', '/api/model/verify', { body: {} });
      assert.equal(again.status, 409);
      assert.ok(hx.store.listAudit().some((e) => e.action === 'model.verify'));
    });
  });
});
