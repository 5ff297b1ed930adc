/**
 * Logging in and the administrator password: /api/auth/state, setup, login, logout, password.
 * Audit actions: auth.password-set, auth.login, auth.login-failed, auth.logout,
 * auth.password-change, auth.password-change-failed (each written by its handler).
 */
import type { Request, Response } from 'express';
import {
  ADMIN_USER,
  MIN_PASSWORD_LENGTH,
  authStateSchema,
  csrfReplySchema,
  loginBodySchema,
  passwordChangeBodySchema,
  setupBodySchema,
  type AuthState,
} from '../../api/auth.js';
import { emptyBodySchema } from '../../api/common.js';
import type { ApiRouter } from '../api-router.js';
import { loginCookie, type Principal } from '../auth.js';
import { HttpError, isLoopbackHost } from '../http-util.js';
import { hashPassword, verifyPassword } from '../passwords.js';
import { audit, clientOf, needPrincipal, principalOf, type AccountDeps } from '../route-context.js';

/** The CLI, or a client on the appliance itself (loopback: a local browser or an SSH tunnel). */
function onTheAppliance(req: Request, p: Principal | null): boolean {
  return p?.kind === 'cli' || isLoopbackHost(req.socket.remoteAddress ?? '');
}

export function authRoutes(api: ApiRouter, deps: AccountDeps): void {
  const { store, logins, rateLimit, setupCode } = deps;

  const setLoginCookie = (req: Request, res: Response, value: string, maxAgeSeconds?: number): void => {
    res.setHeader('Set-Cookie', loginCookie(value, { secure: req.secure, maxAgeSeconds: maxAgeSeconds ?? Math.floor(logins.absoluteMs / 1000) }));
  };

  api.add({
    method: 'get',
    path: '/api/auth/state',
    tag: 'auth',
    public: true,
    summary: 'Is a password set, does setting it need the setup code, am I logged in, my CSRF token',
    replies: { 200: { description: 'The state', schema: authStateSchema } },
    handler: ({ req, res }): AuthState => {
      const p = principalOf(res);
      const passwordSet = store.hasAdminPassword();
      return {
        passwordSet,
        setupCodeRequired: !passwordSet && !onTheAppliance(req, p),
        authenticated: p !== null,
        via: p?.kind ?? null,
        actor: p?.actor ?? null,
        csrfToken: p?.kind === 'login' ? p.login.csrfToken : null,
        minPasswordLength: MIN_PASSWORD_LENGTH,
      };
    },
  });

  api.add({
    method: 'post',
    path: '/api/auth/setup',
    tag: 'auth',
    public: true,
    summary: 'First start only: set the administrator password (from another machine with the setup code) and log in',
    audit: 'handler',
    use: rateLimit.middleware,
    body: setupBodySchema,
    replies: { 201: { description: 'Set; logged in', schema: csrfReplySchema } },
    handler: async ({ req, res, body }) => {
      const p = principalOf(res);
      if (store.hasAdminPassword()) throw new HttpError(409, 'ALREADY_SET', 'the administrator password is already set; log in instead');
      if (!onTheAppliance(req, p)) {
        if (body.setupCode === undefined || body.setupCode.trim() === '') {
          throw new HttpError(
            403,
            'SETUP_CODE_REQUIRED',
            `setting the first password from another machine needs the setup code: it is in ${setupCode.path} on the appliance and in the daemon's log (journalctl -u snapback)`,
          );
        }
        if (!setupCode.matches(body.setupCode)) throw new HttpError(403, 'BAD_SETUP_CODE', 'wrong setup code');
      }
      const hash = await hashPassword(body.password);
      if (store.hasAdminPassword()) throw new HttpError(409, 'ALREADY_SET', 'the administrator password is already set; log in instead');
      await store.setAdminPasswordHash(hash);
      await setupCode.consume();
      const login = logins.create(ADMIN_USER);
      setLoginCookie(req, res, login.id);
      await audit(store, res, p?.kind === 'cli' ? 'cli' : ADMIN_USER, 'auth.password-set', { client: clientOf(req) });
      res.status(201);
      return { csrfToken: login.csrfToken };
    },
  });

  api.add({
    method: 'post',
    path: '/api/auth/login',
    tag: 'auth',
    public: true,
    summary: 'Log in with the password: sets the login cookie and returns the CSRF token',
    audit: 'handler',
    use: rateLimit.middleware,
    body: loginBodySchema,
    replies: { 200: { description: 'Logged in', schema: csrfReplySchema } },
    handler: async ({ req, res, body }) => {
      const client = clientOf(req);
      const admin = store.admin();
      if (!admin) throw new HttpError(409, 'SETUP_REQUIRED', 'no password is set yet; set one first');
      if (!(await verifyPassword(body.password, admin.passwordHash))) {
        await audit(store, res, 'anonymous', 'auth.login-failed', { client });
        throw new HttpError(401, 'BAD_CREDENTIALS', 'wrong password');
      }
      await rateLimit.succeeded(req);
      const old = principalOf(res);
      if (old?.kind === 'login') logins.end(old.login.id);
      const login = logins.create(ADMIN_USER);
      setLoginCookie(req, res, login.id);
      await audit(store, res, ADMIN_USER, 'auth.login', { client });
      return { csrfToken: login.csrfToken };
    },
  });

  api.add({
    method: 'post',
    path: '/api/auth/logout',
    tag: 'auth',
    summary: 'Log out (a browser login only); its live-update streams close',
    audit: 'handler',
    body: emptyBodySchema,
    replies: { 204: { description: 'Logged out' } },
    handler: async ({ req, res }) => {
      const p = needPrincipal(res);
      if (p.kind !== 'login') throw new HttpError(400, 'BAD_ARGUMENT', 'only a browser login can log out');
      logins.end(p.login.id);
      setLoginCookie(req, res, '', 0);
      await audit(store, res, p.actor, 'auth.logout', { client: clientOf(req) });
      res.status(204).end();
    },
  });

  api.add({
    method: 'post',
    path: '/api/auth/password',
    tag: 'auth',
    summary: 'Change the administrator password (a login gives the current one; the CLI need not); other logins end',
    audit: 'handler',
    use: rateLimit.middleware,
    body: passwordChangeBodySchema,
    replies: { 204: { description: 'Changed' } },
    handler: async ({ req, res, body }) => {
      const p = needPrincipal(res);
      if (p.kind === 'token') throw new HttpError(403, 'FORBIDDEN', 'API tokens cannot change the password');
      if (p.kind === 'login') {
        if (body.currentPassword === undefined) throw new HttpError(400, 'BAD_ARGUMENT', 'body.currentPassword: required');
        const admin = store.admin();
        if (!admin || !(await verifyPassword(body.currentPassword, admin.passwordHash))) {
          await audit(store, res, p.actor, 'auth.password-change-failed', { client: clientOf(req) });
          throw new HttpError(403, 'BAD_CREDENTIALS', 'the current password is wrong');
        }
        await rateLimit.succeeded(req);
      }
      await store.setAdminPasswordHash(await hashPassword(body.newPassword));
      await setupCode.consume();
      // Everyone else logged in with the old password is logged out.
      logins.endAll(p.kind === 'login' ? p.login.id : undefined);
      await audit(store, res, p.actor, 'auth.password-change');
      res.status(204).end();
    },
  });
}
