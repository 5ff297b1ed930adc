/**
 * The daemon's HTTP side (the web UI, and the listener of the control API): one express app
 * served on two listeners.
 *
 * - TCP (`listen`, default 127.0.0.1:8080): the web UI and the JSON API. Everything but the
 *   login page needs a login (cookie session, CSRF token in X-CSRF-Token on every state-changing
 *   request) or an API token (Authorization: Bearer sbk_…). It binds beyond loopback only once
 *   an administrator password is set: start() refuses otherwise.
 * - The unix control socket (`controlSocket`, mode 0600): the CLI on the appliance. Whoever can
 *   open it is the socket's owner, so its requests are trusted as actor 'cli' (no login, no CSRF).
 *
 * Every successful state-changing request is written to the audit log (who, what, when).
 */
import { existsSync, lstatSync } from 'node:fs';
import { chmod, unlink } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express, { type Response } from 'express';
import type { Component } from '../daemon/component.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ApplianceService } from '../session/appliance-service.js';
import type { StateStore } from '../state/state-store.js';
import { LoginRateLimiter, LoginSessions, authenticate, type Principal } from './auth.js';
import { HttpError, errorHandler, isLoopbackHost, redact, sendError } from './http-util.js';
import { LiveEvents } from './live-events.js';
import { safeEqual } from './passwords.js';
import { principalOf, type RouteDeps } from './route-context.js';
import { auditRoutes } from './routes/audit-routes.js';
import { authRoutes } from './routes/auth-routes.js';
import { eventRoutes } from './routes/event-routes.js';
import { metricsRoutes } from './routes/metrics-routes.js';
import { modeRoutes } from './routes/mode-routes.js';
import { modelRoutes } from './routes/model-routes.js';
import { pageRoutes } from './routes/page-routes.js';
import { regionRoutes } from './routes/region-routes.js';
import { sessionRoutes } from './routes/session-routes.js';
import { settingsRoutes } from './routes/settings-routes.js';
import { statusRoutes } from './routes/status-routes.js';
import { tokenRoutes } from './routes/token-routes.js';

const log = childLogger('http');

export interface HttpComponentOptions {
  service: ApplianceService;
  store: StateStore;
  /** TCP listener for the web UI and API. Port 0 picks a free port (see address()). */
  listen: { host: string; port: number };
  /** Path of the CLI's unix control socket (DIR/control.sock); created with mode 0600. */
  controlSocket: string;
  /** More routers, mounted after authentication (every request on them is logged in). */
  extraRouters?: express.Router[];
  /** Built web UI assets; default dist/web-ui/public next to this module's build. */
  publicDir?: string;
  /** Serve HTTPS instead of HTTP (cookies then get Secure). */
  tls?: { key: string | Buffer; cert: string | Buffer };
}

export interface HttpAddress {
  host: string;
  port: number;
  url: string;
  controlSocket: string;
}

/** Built assets the login page needs; everything else under /assets needs a login. */
const PUBLIC_ASSETS = new Set(['/assets/app.css', '/assets/icon.svg', '/assets/js/login.js', '/assets/js/api.js', '/assets/js/dom.js']);
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Public endpoints (no login): the login page's API. */
const PUBLIC_API = new Set(['GET /api/auth/state', 'POST /api/auth/setup', 'POST /api/auth/login']);

export class HttpComponent implements Component {
  readonly name = 'http';
  readonly #opts: HttpComponentOptions;
  readonly #sessions = new LoginSessions();
  readonly #limiter = new LoginRateLimiter();
  readonly #live: LiveEvents;
  readonly #controlSockets = new WeakSet<Socket>();
  #tcp: Server | null = null;
  #control: Server | null = null;
  #address: HttpAddress | null = null;
  #starting: Promise<void> | null = null;
  #stopping: Promise<void> | null = null;

  constructor(opts: HttpComponentOptions) {
    this.#opts = opts;
    this.#live = new LiveEvents(opts.service, opts.store);
    this.#sessions.onEnd = (id) => this.#live.dropSession(id);
  }

  /** The listeners' addresses; only after start(). */
  address(): HttpAddress {
    if (!this.#address) throw new SnapbackError('CLOSED', 'the HTTP component is not started');
    return { ...this.#address };
  }

  start(): Promise<void> {
    this.#starting ??= this.#start().catch((err: unknown) => {
      this.#starting = null;
      throw err;
    });
    return this.#starting;
  }

  stop(): Promise<void> {
    if (!this.#starting) return Promise.resolve();
    this.#stopping ??= (async () => {
      await this.#starting?.catch(() => undefined);
      await this.#stop();
      this.#starting = null;
      this.#stopping = null;
    })();
    return this.#stopping;
  }

  async #start(): Promise<void> {
    const { host, port } = this.#opts.listen;
    if (!isLoopbackHost(host) && !this.#opts.store.hasAdminPassword()) {
      throw new SnapbackError(
        'BAD_ARGUMENT',
        `refusing to listen on ${host}:${port} before an administrator password is set: anyone on the network could set it. ` +
          `Start with --http-listen 127.0.0.1:${port}, set the password in the web UI (for example through an SSH tunnel) ` +
          'or with the CLI on the appliance, then restart with this address.',
        { host, port },
      );
    }
    const app = this.#buildApp();
    this.#live.start();
    try {
      this.#control = await this.#listenControl(app);
      const server = this.#opts.tls
        ? createHttpsServer({ key: this.#opts.tls.key, cert: this.#opts.tls.cert }, app)
        : createHttpServer(app);
      this.#tcp = server;
      await listen(server, { host, port }, `${host}:${port}`);
      const a = server.address() as AddressInfo;
      const h = a.address.includes(':') ? `[${a.address}]` : a.address;
      this.#address = {
        host: a.address,
        port: a.port,
        url: `${this.#opts.tls ? 'https' : 'http'}://${h}:${a.port}/`,
        controlSocket: this.#opts.controlSocket,
      };
      log.info({ url: this.#address.url, controlSocket: this.#opts.controlSocket }, 'web UI and API listening');
    } catch (err) {
      await this.#stop();
      throw err;
    }
  }

  async #stop(): Promise<void> {
    this.#live.stop();
    this.#sessions.endAll();
    const servers = [this.#tcp, this.#control].filter((s): s is Server => s !== null);
    this.#tcp = this.#control = null;
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    if (this.#address || existsSync(this.#opts.controlSocket)) {
      if (isSocket(this.#opts.controlSocket)) await unlink(this.#opts.controlSocket).catch(() => undefined);
    }
    this.#address = null;
  }

  async #listenControl(app: express.Express): Promise<Server> {
    const path = this.#opts.controlSocket;
    if (existsSync(path)) {
      if (!isSocket(path)) throw new SnapbackError('BAD_ARGUMENT', `${path} exists and is not a socket; not replacing it`, { path });
      if (await socketAnswers(path)) {
        throw new SnapbackError('STATE_LOCKED', `another daemon is listening on the control socket ${path}`, { path });
      }
      await unlink(path);
    }
    const server = createHttpServer(app);
    server.on('connection', (s: Socket) => this.#controlSockets.add(s));
    // The socket must never exist with wider permissions, even for a moment: bind under a
    // restrictive umask (bind is synchronous in listen()), then chmod to be sure.
    const old = process.umask(0o177);
    let bound: Promise<void>;
    try {
      bound = listen(server, { path }, path); // binds before returning
    } finally {
      process.umask(old);
    }
    await bound;
    await chmod(path, 0o600);
    return server;
  }

  #buildApp(): express.Express {
    const { service, store } = this.#opts;
    const publicDir = this.#opts.publicDir ?? defaultPublicDir();
    const app = express();
    app.disable('x-powered-by');
    app.set('etag', 'strong');

    app.use((req, res, next) => {
      securityHeaders(res, req.secure);
      next();
    });

    // Who is asking.
    app.use((req, res, next) => {
      if (this.#controlSockets.has(req.socket)) {
        res.locals.principal = { kind: 'cli', actor: 'cli' } satisfies Principal;
        return next();
      }
      const { principal, badToken } = authenticate(req, this.#sessions, store);
      if (badToken) {
        res.setHeader('WWW-Authenticate', 'Bearer realm="snapback", error="invalid_token"');
        return sendError(res, 401, 'UNAUTHENTICATED', 'invalid or revoked API token');
      }
      res.locals.principal = principal;
      next();
    });

    // State-changing requests carry JSON or nothing (a cross-site form cannot send JSON).
    app.use((req, res, next) => {
      if (!STATE_CHANGING.has(req.method)) return next();
      const len = Number(req.headers['content-length'] ?? 0);
      const hasBody = len > 0 || req.headers['transfer-encoding'] !== undefined;
      if (hasBody && !req.is('application/json')) {
        return sendError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
      }
      next();
    });
    app.use(express.json({ limit: '64kb', strict: true }));

    // Login gate: only the login page, its assets and the auth endpoints are public.
    app.use((req, res, next) => {
      if (principalOf(res)) return next();
      const isApi = req.path.startsWith('/api/') || req.path === '/metrics';
      if (isApi && PUBLIC_API.has(`${req.method} ${req.path}`)) return next();
      if (!isApi && (req.method === 'GET' || req.method === 'HEAD')) {
        if (req.path === '/login' || PUBLIC_ASSETS.has(req.path)) return next();
        if (req.path === '/favicon.ico') return res.status(204).end();
        if (req.accepts(['html', 'json']) === 'html') return res.redirect(303, '/login');
      }
      res.setHeader('WWW-Authenticate', 'Bearer realm="snapback"');
      sendError(res, 401, 'UNAUTHENTICATED', 'log in or send an API token');
    });

    // CSRF: a browser session must prove, on every state-changing request, that the page
    // making it was ours (the token is only readable by our own scripts).
    app.use((req, res, next) => {
      const p = principalOf(res);
      if (!STATE_CHANGING.has(req.method) || p?.kind !== 'session') return next();
      const sent = req.headers['x-csrf-token'];
      if (typeof sent !== 'string' || !safeEqual(sent, p.session.csrfToken)) {
        return sendError(res, 403, 'CSRF', 'missing or wrong X-CSRF-Token header; reload the page');
      }
      next();
    });

    // API replies are never cached.
    app.use('/api', (_req, res, next) => {
      res.setHeader('Cache-Control', 'no-store');
      next();
    });

    // Audit every successful state-changing request not audited by its handler (under the name
    // its route gives with auditAs()).
    app.use((req, res, next) => {
      if (!STATE_CHANGING.has(req.method)) return next();
      const key = `${req.method} ${req.path}`;
      res.on('finish', () => {
        if (res.statusCode >= 300 || res.locals.audited) return;
        const p = principalOf(res);
        const action = (res.locals.auditAction as string | undefined) ?? `http ${key}`;
        const details: Record<string, unknown> = { status: res.statusCode };
        if (req.body !== undefined && !(typeof req.body === 'object' && Object.keys(req.body as object).length === 0)) {
          details.request = redact(req.body);
        }
        store.audit({ actor: p?.actor ?? 'anonymous', action, details }).catch((err: unknown) => log.error({ err }, 'audit write failed'));
      });
      next();
    });

    const deps: RouteDeps = { service, store, sessions: this.#sessions, limiter: this.#limiter, live: this.#live };
    for (const routes of [authRoutes, tokenRoutes, settingsRoutes, auditRoutes, sessionRoutes, modelRoutes, eventRoutes, statusRoutes, modeRoutes, regionRoutes, metricsRoutes]) {
      app.use(routes(deps));
    }
    for (const r of this.#opts.extraRouters ?? []) app.use(r);
    app.use(pageRoutes(publicDir));

    app.use((req, res) => sendError(res, 404, 'NOT_FOUND', `no such endpoint: ${req.method} ${req.path}`));
    app.use(
      errorHandler((err, req) => {
        if (err instanceof HttpError) return;
        log.error({ err, method: req.method, path: req.path }, 'request failed');
      }),
    );
    return app;
  }
}

function securityHeaders(res: Response, tls: boolean): void {
  res.setHeader(
    'Content-Security-Policy',
    [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      "connect-src 'self'",
      "font-src 'self'",
      "manifest-src 'self'",
      "base-uri 'none'",
      "form-action 'self'",
      "frame-ancestors 'none'",
    ].join('; '),
  );
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Referrer-Policy', 'no-referrer');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  res.setHeader('Permissions-Policy', 'camera=(), microphone=(), geolocation=(), usb=(), payment=()');
  if (tls) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
}

function listen(server: Server, where: { host: string; port: number } | { path: string }, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      if (err.code === 'EADDRINUSE') reject(new SnapbackError('BUSY', `cannot listen on ${what}: the address is in use`, { what }, { cause: err }));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
        reject(new SnapbackError('BAD_ARGUMENT', `cannot listen on ${what}: no such local address`, { what }, { cause: err }));
      } else reject(new SnapbackError('IO_ERROR', `cannot listen on ${what}: ${err.message}`, { what }, { cause: err }));
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(where);
  });
}

function isSocket(path: string): boolean {
  try {
    return lstatSync(path).isSocket();
  } catch {
    return false;
  }
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

function defaultPublicDir(): string {
  // dist/appliance/http/http-component.js → dist/web-ui/public
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'web-ui', 'public');
}
