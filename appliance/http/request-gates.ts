/**
 * The request pipeline the appliance's web server and the console's share, so that both keep one
 * set of login rules: who is asking (login cookie or API token), JSON-only state changes, the
 * login gate, CSRF, uncached API replies, the audit of state changes, and the error replies at
 * the end. Each server adds its own parts around these (host checks, the control socket, its
 * routes).
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { AuditEntry } from '../api/audit.js';
import { childLogger } from '../logger.js';
import type { AuditInput } from '../state/state-store.js';
import { type Logins, authenticate } from './auth.js';
import { HttpError, errorHandler, redact, sendError } from './http-util.js';
import { safeEqual } from './passwords.js';
import { principalOf } from './route-context.js';

const log = childLogger('http');

/** What the login page needs before a login: its page, style, icon and scripts. */
export const PUBLIC_ASSETS = new Set(['/assets/app.css', '/assets/icon.svg', '/assets/js/login.js', '/assets/js/api.js', '/assets/js/dom.js']);

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
export const isStateChanging = (method: string): boolean => STATE_CHANGING.has(method);

/** Who is asking: a login (cookie) or an API token; a bad token is refused. `realm`: the WWW-Authenticate realm. */
export function identify(logins: Logins, store: Parameters<typeof authenticate>[2], realm: string): RequestHandler {
  return (req, res, next) => {
    const { principal, badToken } = authenticate(req, logins, store);
    if (badToken) throw new HttpError(401, 'UNAUTHENTICATED', 'invalid or revoked API token', { 'WWW-Authenticate': `Bearer realm="${realm}", error="invalid_token"` });
    res.locals.principal = principal;
    next();
  };
}

/**
 * Only the public routes, the login page and its assets are open without a login; a browser
 * asking for a page is sent to the login page, everyone else gets 401.
 */
export function loginGate(isPublic: (req: Request) => boolean, realm: string): RequestHandler {
  return (req, res, next) => {
    if (principalOf(res)) return next();
    if (isPublic(req)) return next();
    const isApi = req.path.startsWith('/api/') || req.path === '/metrics';
    if (!isApi && (req.method === 'GET' || req.method === 'HEAD')) {
      if (req.path === '/login' || PUBLIC_ASSETS.has(req.path)) return next();
      if (req.path === '/favicon.ico') return res.status(204).end();
      if (req.accepts(['html', 'json']) === 'html') return res.redirect(303, '/login');
    }
    throw new HttpError(401, 'UNAUTHENTICATED', 'log in or send an API token', { 'WWW-Authenticate': `Bearer realm="${realm}"` });
  };
}

/**
 * CSRF: a browser login must prove, on every state-changing request, that the page making it was
 * ours (the token is only readable by our own scripts).
 */
export function csrfGate(): RequestHandler {
  return (req, res, next) => {
    const p = principalOf(res);
    if (!isStateChanging(req.method) || p?.kind !== 'login') return next();
    const sent = req.headers['x-csrf-token'];
    if (typeof sent !== 'string' || !safeEqual(sent, p.login.csrfToken)) throw new HttpError(403, 'CSRF', 'missing or wrong X-CSRF-Token header; reload the page');
    next();
  };
}

/** API replies are never cached. */
export function noStore(_req: Request, res: Response, next: NextFunction): void {
  res.setHeader('Cache-Control', 'no-store');
  next();
}

/**
 * Audits every successful state-changing request its handler did not audit itself, under the
 * name its route declares (res.locals.auditAction), with the request body redacted.
 */
export function auditStateChanges(store: { audit(entry: AuditInput): Promise<AuditEntry> }): RequestHandler {
  return (req, res, next) => {
    if (!isStateChanging(req.method)) return next();
    const key = `${req.method} ${req.path}`;
    res.on('finish', () => {
      if (res.statusCode >= 300 || res.locals.audited) return;
      const p = principalOf(res);
      const action = (res.locals.auditAction as string | undefined) ?? `http ${key}`;
      const details: Record<string, unknown> = { status: res.statusCode };
      if (req.body !== undefined && !(typeof req.body === 'object' && Object.keys(req.body as object).length === 0)) details.request = redact(req.body);
      store.audit({ actor: p?.actor ?? 'anonymous', action, details }).catch((err: unknown) => log.error({ err }, 'audit write failed'));
    });
    next();
  };
}

/** The end of the pipeline: 404 for what no route served, then the error convention (a JSON error with its code). */
export function pipelineEnd(): [RequestHandler, ReturnType<typeof errorHandler>] {
  return [
    (req, res) => sendError(res, 404, 'NOT_FOUND', `no such endpoint: ${req.method} ${req.path}`),
    errorHandler((err, req) => {
      if (err instanceof HttpError) return;
      log.error({ err, method: req.method, path: req.path }, 'request failed');
    }),
  ];
}
