/**
 * Logging in and the administrator password.
 *   GET  /api/auth/state      public: is a password set, am I logged in, my CSRF token
 *   POST /api/auth/setup      public, first start only: {password} sets it and logs in   audit: auth.password-set
 *   POST /api/auth/login      public: {password} → login cookie + CSRF token             audit: auth.login, auth.login-failed
 *   POST /api/auth/logout                                                                audit: auth.logout
 *   POST /api/auth/password   {currentPassword, newPassword} (CLI: {newPassword})        audit: auth.password-change, auth.password-change-failed
 */
import express, { type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { ADMIN_USER } from '../../state/state-store.js';
import { sessionCookie } from '../auth.js';
import { HttpError, asyncHandler, hostOfHeader, isLoopbackHost, validate } from '../http-util.js';
import { hashPassword, verifyPassword } from '../passwords.js';
import { audit, clientOf, needPrincipal, principalOf, type RouteDeps } from '../route-context.js';

export const MIN_PASSWORD_LENGTH = 8;

const newPassword = z
  .string({ required_error: 'required' })
  .min(MIN_PASSWORD_LENGTH, `at least ${MIN_PASSWORD_LENGTH} characters`)
  .max(256, 'at most 256 characters')
  .refine((s) => s.trim().length > 0, 'must not be only spaces');

const setupBody = z.object({ password: newPassword }).strict();
const loginBody = z
  .object({ username: z.literal(ADMIN_USER).optional(), password: z.string({ required_error: 'required' }).min(1).max(1024) })
  .strict();
const passwordBody = z.object({ currentPassword: z.string().min(1).max(1024).optional(), newPassword }).strict();
const emptyBody = z.object({}).strict();
const noQuery = z.object({}).strict();

export function authRoutes(deps: RouteDeps): Router {
  const { store, sessions, limiter } = deps;
  const r = express.Router();

  const setSessionCookie = (req: Request, res: Response, value: string, maxAgeSeconds?: number): void => {
    res.setHeader('Set-Cookie', sessionCookie(value, { secure: req.secure, maxAgeSeconds: maxAgeSeconds ?? Math.floor(sessions.absoluteMs / 1000) }));
  };

  r.get('/api/auth/state', (req, res) => {
    validate(noQuery, req.query, 'query');
    const p = principalOf(res);
    res.json({
      passwordSet: store.hasAdminPassword(),
      authenticated: p !== null,
      via: p?.kind ?? null,
      actor: p?.actor ?? null,
      csrfToken: p?.kind === 'session' ? p.session.csrfToken : null,
      minPasswordLength: MIN_PASSWORD_LENGTH,
    });
  });

  r.post(
    '/api/auth/setup',
    asyncHandler(async (req, res) => {
      const body = validate(setupBody, req.body, 'body');
      const p = principalOf(res);
      if (store.hasAdminPassword()) throw new HttpError(409, 'ALREADY_SET', 'the administrator password is already set; log in instead');
      // Before a password exists the listener is loopback-only; refusing other Host names keeps a
      // DNS-rebinding page in the administrator's browser from claiming the appliance first.
      if (p?.kind !== 'cli' && !isLoopbackHost(hostOfHeader(req.headers.host))) {
        throw new HttpError(403, 'FORBIDDEN', 'the first password can only be set through a loopback address (localhost)');
      }
      const hash = await hashPassword(body.password);
      if (store.hasAdminPassword()) throw new HttpError(409, 'ALREADY_SET', 'the administrator password is already set; log in instead');
      await store.setAdminPasswordHash(hash);
      const s = sessions.create(ADMIN_USER);
      setSessionCookie(req, res, s.id);
      await audit(store, res, p?.kind === 'cli' ? 'cli' : ADMIN_USER, 'auth.password-set', { client: clientOf(req) });
      res.status(201).json({ csrfToken: s.csrfToken });
    }),
  );

  r.post(
    '/api/auth/login',
    asyncHandler(async (req, res) => {
      const body = validate(loginBody, req.body, 'body');
      const client = clientOf(req);
      const wait = limiter.retryAfter(client);
      if (wait > 0) {
        throw new HttpError(429, 'RATE_LIMITED', `too many failed logins; try again in ${wait} s`, { 'Retry-After': String(wait) });
      }
      const admin = store.admin();
      if (!admin) throw new HttpError(409, 'SETUP_REQUIRED', 'no password is set yet; set one first');
      // Count the attempt as a failure before checking it, so parallel guesses cannot all slip
      // through before the first one is counted; a success clears it.
      limiter.fail(client);
      const ok = await verifyPassword(body.password, admin.passwordHash);
      if (!ok) {
        await audit(store, res, 'anonymous', 'auth.login-failed', { client });
        throw new HttpError(401, 'BAD_CREDENTIALS', 'wrong password');
      }
      limiter.succeed(client);
      const old = principalOf(res);
      if (old?.kind === 'session') sessions.end(old.session.id);
      const s = sessions.create(ADMIN_USER);
      setSessionCookie(req, res, s.id);
      await audit(store, res, ADMIN_USER, 'auth.login', { client });
      res.json({ csrfToken: s.csrfToken });
    }),
  );

  r.post(
    '/api/auth/logout',
    asyncHandler(async (req, res) => {
      validate(emptyBody, req.body ?? {}, 'body');
      const p = needPrincipal(res);
      if (p.kind !== 'session') throw new HttpError(400, 'BAD_ARGUMENT', 'only a browser session can log out');
      sessions.end(p.session.id);
      setSessionCookie(req, res, '', 0);
      await audit(store, res, p.actor, 'auth.logout', { client: clientOf(req) });
      res.status(204).end();
    }),
  );

  r.post(
    '/api/auth/password',
    asyncHandler(async (req, res) => {
      const body = validate(passwordBody, req.body, 'body');
      const p = needPrincipal(res);
      if (p.kind === 'token') throw new HttpError(403, 'FORBIDDEN', 'API tokens cannot change the password');
      if (p.kind === 'session') {
        if (body.currentPassword === undefined) throw new HttpError(400, 'BAD_ARGUMENT', 'body.currentPassword: required');
        const client = clientOf(req);
        const wait = limiter.retryAfter(client);
        if (wait > 0) throw new HttpError(429, 'RATE_LIMITED', `too many failed attempts; try again in ${wait} s`, { 'Retry-After': String(wait) });
        const admin = store.admin();
        limiter.fail(client);
        if (!admin || !(await verifyPassword(body.currentPassword, admin.passwordHash))) {
          await audit(store, res, p.actor, 'auth.password-change-failed', { client });
          throw new HttpError(403, 'BAD_CREDENTIALS', 'the current password is wrong');
        }
        limiter.succeed(client);
      }
      await store.setAdminPasswordHash(await hashPassword(body.newPassword));
      // Everyone else logged in with the old password is logged out.
      sessions.endAll(p.kind === 'session' ? p.session.id : undefined);
      await audit(store, res, p.actor, 'auth.password-change');
      res.status(204).end();
    }),
  );

  return r;
}
