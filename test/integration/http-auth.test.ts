/**
 * The HTTP listener's security: first-run password, login, logout, cookies, CSRF, rate
 * limiting, API tokens, the trusted control socket, security headers, the names (Host) and
 * origins it answers to, and its listeners.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { HttpComponent } from '../../appliance/http/http-component.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { FakeAppliance } from '../helpers/fake-appliance.js';
import { Client, PASSWORD, controlRequest, nodeRequest, startHarness, type Harness } from '../helpers/http-harness.js';

describe('http: authentication and security', () => {
  let hx: Harness;
  let c: Client;
  beforeEach(async () => {
    hx = await startHarness();
    c = new Client(hx.url);
  });
  afterEach(async () => {
    await hx.close();
  });

  describe('first start', () => {
    it('reports that no password is set, and refuses login until one is', async () => {
      const st = await c.req('GET', '/api/auth/state');
      assert.equal(st.status, 200);
      assert.equal(st.json.passwordSet, false);
      assert.equal(st.json.authenticated, false);
      const r = await c.login('anything-at-all');
      assert.equal(r.status, 409);
      assert.equal(r.json.error, 'SETUP_REQUIRED');
    });

    it('sets the password once, logs in, and audits it; a second setup is refused', async () => {
      const r = await c.setup(PASSWORD);
      assert.equal(r.status, 201);
      assert.ok(c.cookie, 'a login cookie');
      assert.ok(c.csrf);
      assert.match(hx.store.admin()?.passwordHash ?? '', /^scrypt\$15\$8\$1\$/);
      assert.ok(!(hx.store.admin()?.passwordHash ?? '').includes(PASSWORD));
      const again = await new Client(hx.url).setup('another password');
      assert.equal(again.status, 409);
      assert.equal(again.json.error, 'ALREADY_SET');
      const st = await c.req('GET', '/api/auth/state');
      assert.equal(st.json.authenticated, true);
      assert.equal(st.json.csrfToken, c.csrf);
      assert.deepEqual(
        hx.store.listAudit().map((e) => [e.actor, e.action]),
        [['admin', 'auth.password-set']],
      );
    });

    for (const [what, body] of [
      ['no body', undefined],
      ['a short password', { password: 'short' }],
      ['only spaces', { password: '          ' }],
      ['a number', { password: 12345678 }],
      ['an unknown field', { password: PASSWORD, admin: true }],
    ] as const) {
      it(`refuses setup with ${what} (400) and sets nothing`, async () => {
        const r = await c.req('POST', '/api/auth/setup', body === undefined ? {} : { body });
        assert.equal(r.status, 400, r.text);
        assert.equal(r.json.error, 'BAD_ARGUMENT');
        assert.ok(r.json.message.length > 0);
        assert.equal(hx.store.hasAdminPassword(), false);
      });
    }

    it('refuses setup through a non-loopback Host name (DNS rebinding)', async () => {
      const port = Number(new URL(hx.url).port);
      const r = await nodeRequest({ host: '127.0.0.1', port }, 'POST', '/api/auth/setup', { password: PASSWORD }, { Host: 'evil.example:8080' });
      assert.equal(r.status, 403);
      assert.equal(hx.store.hasAdminPassword(), false);
      const ok = await nodeRequest({ host: '127.0.0.1', port }, 'POST', '/api/auth/setup', { password: PASSWORD }, { Host: `localhost:${port}` });
      assert.equal(ok.status, 201, 'a loopback name is fine');
    });

    it('refuses a form-encoded (cross-site form) setup with 415', async () => {
      const r = await c.req('POST', '/api/auth/setup', { raw: `password=${encodeURIComponent(PASSWORD)}`, contentType: 'application/x-www-form-urlencoded' });
      assert.equal(r.status, 415);
      assert.equal(hx.store.hasAdminPassword(), false);
    });
  });

  describe('login', () => {
    beforeEach(async () => {
      assert.equal((await new Client(hx.url).setup(PASSWORD)).status, 201);
    });

    it('logs in with the right password; the cookie is HttpOnly, SameSite=Strict, not Secure on plain HTTP', async () => {
      const r = await c.req('POST', '/api/auth/login', { body: { password: PASSWORD } });
      assert.equal(r.status, 200);
      const sc = r.headers.get('set-cookie') ?? '';
      assert.match(sc, /^snapback_session=[A-Za-z0-9_-]{40,};/);
      assert.match(sc, /HttpOnly/);
      assert.match(sc, /SameSite=Strict/);
      assert.doesNotMatch(sc, /Secure/);
      assert.match(r.json.csrfToken, /^[A-Za-z0-9_-]{40,}$/);
    });

    it('refuses a wrong password with 401 and audits the failure', async () => {
      const r = await c.login('not the password');
      assert.equal(r.status, 401);
      assert.equal(r.json.error, 'BAD_CREDENTIALS');
      assert.equal(c.cookie, null);
      assert.equal(hx.store.listAudit()[0]?.action, 'auth.login-failed');
    });

    it('rate-limits failed logins: after 5 failures even the right password gets 429', async () => {
      for (let i = 0; i < 5; i++) assert.equal((await c.login(`wrong ${i}`)).status, 401);
      const r = await c.login(PASSWORD);
      assert.equal(r.status, 429);
      assert.equal(r.json.error, 'RATE_LIMITED');
      assert.ok(Number(r.headers.get('retry-after')) > 0);
      assert.equal(c.cookie, null);
    });

    it('a success clears the failures of that client', async () => {
      for (let i = 0; i < 4; i++) assert.equal((await c.login(`wrong ${i}`)).status, 401);
      assert.equal((await c.login(PASSWORD)).status, 200);
      for (let i = 0; i < 4; i++) assert.equal((await new Client(hx.url).login(`wrong ${i}`)).status, 401);
      assert.equal((await new Client(hx.url).login(PASSWORD)).status, 200);
    });

    it('refuses a bad login body with 400', async () => {
      for (const body of [{}, { password: '' }, { password: PASSWORD, username: 'root' }, { pass: PASSWORD }]) {
        const r = await c.req('POST', '/api/auth/login', { body });
        assert.equal(r.status, 400, JSON.stringify(body));
      }
      const bad = await c.req('POST', '/api/auth/login', { raw: '{"password": ' });
      assert.equal(bad.status, 400);
      assert.match(bad.json.message, /malformed JSON/);
    });

    it('logs out: the cookie stops working, and the logout is audited', async () => {
      await c.login(PASSWORD);
      assert.equal((await c.req('GET', '/api/settings')).status, 200);
      const saved = c.cookie;
      const r = await c.req('POST', '/api/auth/logout');
      assert.equal(r.status, 204);
      c.cookie = saved; // a stolen copy of the old cookie is useless too
      assert.equal((await c.req('GET', '/api/settings')).status, 401);
      assert.ok(hx.store.listAudit().some((e) => e.action === 'auth.logout' && e.actor === 'admin'));
    });

    it('logout needs the CSRF token', async () => {
      await c.login(PASSWORD);
      assert.equal((await c.req('POST', '/api/auth/logout', { csrf: false })).status, 403);
      assert.equal((await c.req('GET', '/api/settings')).status, 200);
    });
  });

  describe('successful logins and the failed-login limit', () => {
    it('successful logins never count toward the failed-login limit (40 good logins in a row all succeed)', async () => {
      assert.equal((await new Client(hx.url).setup(PASSWORD)).status, 201);
      for (let i = 0; i < 40; i++) {
        const r = await new Client(hx.url).login(PASSWORD);
        assert.equal(r.status, 200, `login ${i + 1}: ${r.text}`);
      }
      // Failures still count.
      for (let i = 0; i < 5; i++) assert.equal((await c.login(`wrong ${i}`)).status, 401);
      assert.equal((await c.login(PASSWORD)).status, 429);
    });

    it('failures from many clients hit the global limit; their successes do not', async () => {
      await hx.close();
      hx = await startHarness({ http: { rateLimit: { perClient: 100, global: 3 } } });
      c = new Client(hx.url);
      assert.equal((await c.setup(PASSWORD)).status, 201);
      for (let i = 0; i < 6; i++) assert.equal((await new Client(hx.url).login(PASSWORD)).status, 200);
      for (let i = 0; i < 3; i++) assert.equal((await new Client(hx.url).login(`wrong ${i}`)).status, 401);
      assert.equal((await new Client(hx.url).login(PASSWORD)).status, 429);
    });
  });

  describe('names and origins (DNS rebinding, cross-site requests)', () => {
    let port: number;
    beforeEach(async () => {
      port = Number(new URL(hx.url).port);
      assert.equal((await c.setup(PASSWORD)).status, 201);
    });
    const at = (host: string, method = 'GET', path = '/api/auth/state', body?: unknown, headers: Record<string, string> = {}) =>
      nodeRequest({ host: '127.0.0.1', port }, method, path, body, { Host: host, ...headers });

    it('refuses every request whose Host is not a name of the appliance: pages, API, login', async () => {
      for (const [method, path, body] of [
        ['GET', '/api/auth/state', undefined],
        ['GET', '/login', undefined],
        ['POST', '/api/auth/login', { password: PASSWORD }],
      ] as const) {
        const r = await at(`rebind.evil.example:${port}`, method, path, body);
        assert.equal(r.status, 403, `${method} ${path}`);
        assert.equal(r.json?.error, 'BAD_HOST');
      }
      assert.equal(hx.store.listAudit().filter((e) => e.action === 'auth.login').length, 0);
    });

    it('answers to loopback names, IP literals, its host name (also .local) and configured names', async () => {
      await hx.close();
      hx = await startHarness({ http: { hostNames: ['snapback.lab.example'] } });
      port = Number(new URL(hx.url).port);
      for (const host of ['localhost', '127.0.0.1', '[::1]', '192.0.2.77', hostname(), `${hostname()}.local`, 'SNAPBACK.lab.example']) {
        const r = await at(`${host}:${port}`);
        assert.equal(r.status, 200, host);
      }
    });

    it('refuses a state-changing request from another origin, even with a valid login and CSRF token', async () => {
      const cookie = c.cookie ?? '';
      const csrf = c.csrf ?? '';
      const before = hx.service.mode;
      for (const origin of ['http://evil.example', `http://localhost:${port + 1}`, 'null']) {
        const r = await at(`127.0.0.1:${port}`, 'POST', '/api/mode', { mode: 'thawed' }, { Origin: origin, Cookie: cookie, 'X-CSRF-Token': csrf });
        assert.equal(r.status, 403, origin);
        assert.equal(r.json?.error, 'BAD_ORIGIN');
      }
      const login = await at(`127.0.0.1:${port}`, 'POST', '/api/auth/login', { password: PASSWORD }, { Origin: 'http://evil.example' });
      assert.equal(login.status, 403);
      const fetchMeta = await at(`127.0.0.1:${port}`, 'POST', '/api/mode', { mode: 'thawed' }, { 'Sec-Fetch-Site': 'cross-site', Cookie: cookie, 'X-CSRF-Token': csrf });
      assert.equal(fetchMeta.status, 403);
      assert.equal(hx.service.mode, before);
    });

    it('accepts a state-changing request from its own origin, and one without Origin (a script)', async () => {
      const cookie = c.cookie ?? '';
      const csrf = c.csrf ?? '';
      const same = await at(`127.0.0.1:${port}`, 'POST', '/api/mode', { mode: 'thawed' }, { Origin: `http://127.0.0.1:${port}`, Cookie: cookie, 'X-CSRF-Token': csrf });
      assert.equal(same.status, 200, same.text);
      const none = await at(`127.0.0.1:${port}`, 'POST', '/api/mode', { mode: 'frozen' }, { Cookie: cookie, 'X-CSRF-Token': csrf });
      assert.equal(none.status, 200, none.text);
    });
  });

  describe('pages and headers', () => {
    it('without a login only the login page and its assets are served', async () => {
      const root = await c.req('GET', '/', { headers: { Accept: 'text/html' } });
      assert.equal(root.status, 303);
      assert.equal(root.headers.get('location'), '/login');
      const login = await c.req('GET', '/login', { headers: { Accept: 'text/html' } });
      assert.equal(login.status, 200);
      assert.match(login.text, /login\.js/);
      assert.equal((await c.req('GET', '/assets/js/login.js')).status, 200);
      assert.equal((await c.req('GET', '/assets/app.css')).status, 200);
      assert.equal((await c.req('GET', '/assets/js/app.js')).status, 401);
      assert.equal((await c.req('GET', '/assets/js/pages/dashboard.js')).status, 401);
      assert.equal((await c.req('GET', '/index.html')).status, 401);
      assert.equal((await c.req('GET', '/api/status')).status, 401);
      assert.equal((await c.req('GET', '/metrics')).status, 401);
    });

    it('after login the app and its scripts are served', async () => {
      await c.setup(PASSWORD);
      const root = await c.req('GET', '/', { headers: { Accept: 'text/html' } });
      assert.equal(root.status, 200);
      assert.match(root.text, /app\.js/);
      assert.equal((await c.req('GET', '/assets/js/app.js')).status, 200);
      assert.equal((await c.req('GET', '/login', { headers: { Accept: 'text/html' } })).status, 303);
    });

    it('sends the security headers on pages and API replies', async () => {
      for (const path of ['/login', '/api/auth/state', '/api/status']) {
        const r = await c.req('GET', path);
        const csp = r.headers.get('content-security-policy') ?? '';
        assert.match(csp, /default-src 'none'/);
        assert.match(csp, /script-src 'self'(;|$)/);
        assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
        assert.match(csp, /frame-ancestors 'none'/);
        assert.equal(r.headers.get('x-frame-options'), 'DENY');
        assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
        assert.equal(r.headers.get('referrer-policy'), 'no-referrer');
        assert.equal(r.headers.get('x-powered-by'), null);
      }
      assert.equal((await c.req('GET', '/api/auth/state')).headers.get('cache-control'), 'no-store');
    });

    it('the built pages carry no inline script or style', async () => {
      for (const path of ['/login']) {
        const r = await c.req('GET', path);
        assert.doesNotMatch(r.text, /<script(?![^>]*\bsrc=)[^>]*>/);
        assert.doesNotMatch(r.text, /\sstyle=|<style|\son[a-z]+=/i);
      }
    });
  });

  describe('API tokens', () => {
    beforeEach(async () => {
      await c.setup(PASSWORD);
    });

    it('creates a token shown once, stored hashed; it works as Bearer until revoked', async () => {
      const r = await c.req('POST', '/api/tokens', { body: { name: 'monitoring' } });
      assert.equal(r.status, 201);
      const token: string = r.json.token;
      assert.match(token, /^sbk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
      const stored = hx.store.listTokens();
      assert.equal(stored.length, 1);
      assert.ok(!JSON.stringify(stored).includes(token.slice(17)), 'the secret is not stored');
      const list = await c.req('GET', '/api/tokens');
      assert.equal(list.json.tokens.length, 1);
      assert.equal(list.json.tokens[0].token, undefined);

      const anon = new Client(hx.url);
      const st = await anon.req('GET', '/api/status', { bearer: token });
      assert.equal(st.status, 200);
      // A token needs no CSRF token (a browser never sends it on its own).
      const m = await anon.req('POST', '/api/mode', { bearer: token, body: { mode: 'thawed' } });
      assert.equal(m.status, 200, m.text);
      assert.ok(hx.store.listAudit().some((e) => e.actor === 'token:monitoring' && e.action === 'mode.set'));
      assert.notEqual(hx.store.findToken(r.json.id)?.lastUsedAt, null);
      // Tokens cannot manage tokens or the password.
      assert.equal((await anon.req('GET', '/api/tokens', { bearer: token })).status, 403);
      assert.equal((await anon.req('POST', '/api/tokens', { bearer: token, body: { name: 'x' } })).status, 403);
      assert.equal((await anon.req('POST', '/api/auth/password', { bearer: token, body: { newPassword: 'whatever-new-1' } })).status, 403);

      const del = await c.req('DELETE', `/api/tokens/${r.json.id}`);
      assert.equal(del.status, 204);
      assert.equal((await anon.req('GET', '/api/status', { bearer: token })).status, 401);
      assert.deepEqual(
        hx.store.listAudit().filter((e) => e.action.startsWith('token.')).map((e) => e.action),
        ['token.revoke', 'token.create'],
      );
    });

    it('refuses malformed and unknown tokens with 401', async () => {
      const anon = new Client(hx.url);
      for (const t of ['nope', 'sbk_000000000000_' + 'A'.repeat(43), 'Basic abc']) {
        const r = await anon.req('GET', '/api/status', { headers: { Authorization: t.startsWith('Basic') ? t : `Bearer ${t}` } });
        assert.equal(r.status, 401, t);
      }
    });
  });

  describe('password change', () => {
    beforeEach(async () => {
      await c.setup(PASSWORD);
    });

    it('needs the current password; logs out the other logins, keeps this one', async () => {
      const other = new Client(hx.url);
      assert.equal((await other.login(PASSWORD)).status, 200);
      const wrong = await c.req('POST', '/api/auth/password', { body: { currentPassword: 'nope nope', newPassword: 'a brand new one' } });
      assert.equal(wrong.status, 403);
      const before = hx.store.admin()?.passwordHash;
      const r = await c.req('POST', '/api/auth/password', { body: { currentPassword: PASSWORD, newPassword: 'a brand new one' } });
      assert.equal(r.status, 204, r.text);
      assert.notEqual(hx.store.admin()?.passwordHash, before);
      assert.equal((await c.req('GET', '/api/settings')).status, 200);
      assert.equal((await other.req('GET', '/api/settings')).status, 401);
      assert.equal((await new Client(hx.url).login(PASSWORD)).status, 401);
      assert.equal((await new Client(hx.url).login('a brand new one')).status, 200);
      assert.ok(hx.store.listAudit().some((e) => e.action === 'auth.password-change'));
    });

    it('refuses bad bodies with 400 and changes nothing', async () => {
      const before = hx.store.admin()?.passwordHash;
      for (const body of [{}, { currentPassword: PASSWORD }, { currentPassword: PASSWORD, newPassword: 'short' }, { newPassword: 'long enough pw' }, { currentPassword: PASSWORD, newPassword: 'long enough pw', x: 1 }]) {
        const r = await c.req('POST', '/api/auth/password', { body });
        assert.equal(r.status, 400, JSON.stringify(body));
      }
      assert.equal(hx.store.admin()?.passwordHash, before);
    });
  });

  describe('control socket (the CLI)', () => {
    it('is created with mode 0600', async () => {
      const st = await stat(hx.controlSocket);
      assert.ok(st.isSocket());
      assert.equal(st.mode & 0o777, 0o600);
    });

    it('trusts requests as actor cli: no login, no CSRF', async () => {
      const st = await controlRequest(hx.controlSocket, 'GET', '/api/status');
      assert.equal(st.status, 200);
      assert.equal(st.json.session.number, 1);
      const m = await controlRequest(hx.controlSocket, 'POST', '/api/mode', { mode: 'thawed' });
      assert.equal(m.status, 200, m.text);
      assert.equal(hx.service.mode, 'thawed');
      const e = hx.store.listAudit()[0];
      assert.equal(e?.actor, 'cli');
      assert.equal(e?.action, 'mode.set');
    });

    it('can set the first password (headless setup) and change it without the old one', async () => {
      const r = await controlRequest(hx.controlSocket, 'POST', '/api/auth/password', { newPassword: PASSWORD });
      assert.equal(r.status, 204, r.text);
      assert.equal((await c.login(PASSWORD)).status, 200);
      const r2 = await controlRequest(hx.controlSocket, 'POST', '/api/auth/password', { newPassword: 'reset by root 1' });
      assert.equal(r2.status, 204);
      assert.equal((await c.req('GET', '/api/settings')).status, 401, 'sessions end on a password reset');
      assert.deepEqual(
        hx.store.listAudit().filter((e) => e.actor === 'cli').map((e) => e.action),
        ['auth.password-change', 'auth.password-change'],
      );
    });

    it('still validates bodies', async () => {
      const r = await controlRequest(hx.controlSocket, 'POST', '/api/settings', { hydrationRateBytesPerSecond: 'fast' });
      assert.equal(r.status, 400);
      assert.equal(hx.service.calls.length, 0);
    });
  });
});

describe('http: listening', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapback-listen-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("an address that is not this machine's is refused with a clear message", async () => {
    const store = await StateStore.open(dir);
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine: nothing listens beyond loopback.
    const http = new HttpComponent({ service: new FakeAppliance(), store, listen: { host: '192.0.2.1', port: 0 }, controlSocket: join(dir, 'control.sock') });
    await assert.rejects(http.start(), (e: unknown) => {
      assert.ok(isSnapbackError(e, 'BAD_ARGUMENT'));
      assert.doesNotMatch((e as Error).message, /password/);
      assert.match((e as Error).message, /no such local address/);
      return true;
    });
    await http.stop();
    await assert.rejects(stat(join(dir, 'control.sock')), 'the control socket is removed on stop');
    await store.close();
  });

  it('start and stop are safe twice; the control socket is removed on stop and a stale one replaced', async () => {
    const store = await StateStore.open(dir);
    const sock = join(dir, 'control.sock');
    const a = new HttpComponent({ service: new FakeAppliance(), store, listen: { host: '127.0.0.1', port: 0 }, controlSocket: sock });
    await a.start();
    await a.start();
    // A second daemon on the same socket is refused while the first runs.
    const b = new HttpComponent({ service: new FakeAppliance(), store, listen: { host: '127.0.0.1', port: 0 }, controlSocket: sock });
    await assert.rejects(b.start(), (e: unknown) => isSnapbackError(e, 'STATE_LOCKED'));
    await a.stop();
    await a.stop();
    await assert.rejects(stat(sock));
    await b.start();
    assert.equal((await controlRequest(sock, 'GET', '/api/auth/state')).status, 200);
    await b.stop();
    await store.close();
  });

  it('reports an address in use as BUSY', async () => {
    const store = await StateStore.open(dir);
    const a = new HttpComponent({ service: new FakeAppliance(), store, listen: { host: '127.0.0.1', port: 0 }, controlSocket: join(dir, 'a.sock') });
    await a.start();
    const b = new HttpComponent({ service: new FakeAppliance(), store, listen: { host: '127.0.0.1', port: a.address().port }, controlSocket: join(dir, 'b.sock') });
    await assert.rejects(b.start(), (e: unknown) => isSnapbackError(e, 'BUSY'));
    await a.stop();
    await store.close();
  });
});
