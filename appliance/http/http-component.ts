/**
 * The daemon's HTTP side (the web UI, and the listener of the control API): one express app
 * served on two listeners.
 *
 * - TCP (`listen`, default 127.0.0.1:8080): the web UI and the JSON API. Everything but the
 *   login page needs a login (cookie, CSRF token in X-CSRF-Token on every state-changing
 *   request) or an API token (Authorization: Bearer sbk_…). It listens on the configured address
 *   from the first boot; until a password exists, setting it from another machine needs the
 *   one-time setup code (setup-code.ts). Every request must name the appliance in its Host
 *   header, and a browser's state-changing request must come from the appliance's own pages
 *   (host-check.ts: DNS rebinding, cross-site requests).
 * - The unix control socket (`controlSocket`, mode 0600): the CLI on the appliance. Whoever can
 *   open it is the socket's owner, so its requests are trusted as actor 'cli' (no login, no CSRF).
 *   It stays up even when the TCP listener cannot start, so the CLI always works.
 *
 * Every JSON route is declared once (api-router.ts, one file per resource in routes/) and
 * described by GET /api/openapi.json. Every successful state-changing request is written to the
 * audit log (who, what, when).
 */
import { lstatSync, existsSync } from 'node:fs';
import { chmod, unlink } from 'node:fs/promises';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import type { Component } from '../component.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ApplianceService } from '../session/appliance-service.js';
import type { StateStore } from '../state/state-store.js';
import { ApiRouter, type RouteSpec } from './api-router.js';
import { Logins, type LoginsOptions, type Principal } from './auth.js';
import { HostCheck } from './host-check.js';
import { HttpError } from './http-util.js';
import { LiveEvents } from './live-events.js';
import { LoginRateLimit, type LoginRateLimitOptions } from './login-rate-limit.js';
import type { RouteDeps } from './route-context.js';
import { auditStateChanges, csrfGate, identify, isStateChanging, loginGate, noStore, pipelineEnd } from './request-gates.js';
import { listRoutes, type RouteEntry } from './route-table.js';
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
import { securityHeaders } from './security-headers.js';
import { SetupCode } from './setup-code.js';

const log = childLogger('http');

export interface HttpComponentOptions {
  service: ApplianceService;
  store: StateStore;
  /** TCP listener for the web UI and API. Port 0 picks a free port (see address()). */
  listen: { host: string; port: number };
  /** Path of the CLI's unix control socket (DIR/control.sock); created with mode 0600. */
  controlSocket: string;
  /** More API routes (GPIO), declared on the same router (documented, validated, audited alike). */
  extraRoutes?: ((api: ApiRouter) => void)[];
  /** More names the appliance answers to in the Host header (besides loopback, IP literals, its host name). */
  hostNames?: readonly string[];
  /** The one-time setup code's file; default DIR/setup-code next to the state file. */
  setupCodePath?: string;
  /** Login lifetimes (tests shorten them). */
  logins?: LoginsOptions;
  /** How often expired logins are ended (and their streams closed); default 60 s. */
  loginPruneIntervalMs?: number;
  /** Failed-password limits. */
  rateLimit?: LoginRateLimitOptions;
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
/** A JSON body (at most 64 KiB) must arrive within this; a client that dribbles one is cut off. */
const JSON_BODY_TIMEOUT_MS = 60_000;

/**
 * Node ends any request not received whole within 5 minutes; an image upload of many GiB takes
 * longer, so that limit is off and each kind of body has its own: JSON bodies the one above, an
 * upload an idle timeout of its own (its route). Headers must still arrive within a minute.
 */
function setRequestTimeouts(server: Server): void {
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
}

export class HttpComponent implements Component {
  readonly name = 'http';
  private readonly opts: HttpComponentOptions;
  private readonly logins: Logins;
  private readonly rateLimit: LoginRateLimit;
  private readonly live: LiveEvents;
  private readonly setupCode: SetupCode;
  private readonly controlSockets = new WeakSet<Socket>();
  private app: express.Express | null = null;
  private api: ApiRouter | null = null;
  private tcp: Server | null = null;
  private control: Server | null = null;
  private boundAddress: HttpAddress | null = null;
  private pruneTimer: NodeJS.Timeout | null = null;
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;

  constructor(opts: HttpComponentOptions) {
    this.opts = opts;
    this.logins = new Logins(opts.logins);
    this.rateLimit = new LoginRateLimit(opts.rateLimit);
    this.live = new LiveEvents(opts.service, opts.store);
    this.setupCode = new SetupCode(opts.setupCodePath ?? join(dirname(opts.store.path), 'setup-code'));
    this.logins.onEnd = (id) => this.live.dropLogin(id);
  }

  /** The listeners' addresses; only after a successful start(). */
  address(): HttpAddress {
    if (!this.boundAddress) throw new SnapbackError('CLOSED', 'the HTTP component is not started');
    return { ...this.boundAddress };
  }

  /** The one-time setup code's file (it exists only while no password is set). */
  get setupCodePath(): string {
    return this.setupCode.path;
  }

  /**
   * The OpenAPI document of the API (also served at GET /api/openapi.json). Its generator is
   * loaded when the document is first asked for, not at start (memory the daemon would otherwise
   * hold for nothing).
   */
  async openApiDocument(): Promise<object> {
    if (!this.api) throw new SnapbackError('CLOSED', 'the HTTP component is not started');
    const openapi = await import('./openapi.js');
    return openapi.buildOpenApiDocument(this.api.routes(), this.opts.service.status().daemon.version);
  }

  /** The declared API routes (what the OpenAPI document is made of). */
  apiRoutes(): readonly RouteSpec[] {
    if (!this.api) throw new SnapbackError('CLOSED', 'the HTTP component is not started');
    return this.api.routes();
  }

  /** Every route express serves (for the check that the OpenAPI document covers them all). */
  expressRoutes(): RouteEntry[] {
    if (!this.app) throw new SnapbackError('CLOSED', 'the HTTP component is not started');
    return listRoutes(this.app);
  }

  /**
   * Starts the control socket, then the TCP listener. When only the TCP listener fails, the
   * control socket stays up (the CLI keeps working) and start() rejects with the TCP error;
   * stop() closes what is up.
   */
  start(): Promise<void> {
    this.starting ??= this.startListeners();
    return this.starting;
  }

  stop(): Promise<void> {
    if (!this.starting) return Promise.resolve();
    this.stopping ??= (async () => {
      await this.starting?.catch(() => undefined);
      await this.stopListeners();
      this.starting = null;
      this.stopping = null;
    })();
    return this.stopping;
  }

  private async startListeners(): Promise<void> {
    const { host, port } = this.opts.listen;
    try {
      await this.setupCode.prepare(this.opts.store.hasAdminPassword());
      this.app = this.buildApp();
      this.live.start();
      this.pruneTimer = setInterval(() => this.logins.prune(), this.opts.loginPruneIntervalMs ?? 60_000);
      this.pruneTimer.unref();
      this.control = await this.listenControl(this.app);
    } catch (err) {
      await this.stopListeners();
      this.starting = null;
      throw err;
    }
    try {
      const server = this.opts.tls
        ? createHttpsServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, this.app)
        : createHttpServer(this.app);
      setRequestTimeouts(server);
      this.tcp = server;
      await listen(server, { host, port }, `${host}:${port}`);
      const a = server.address() as AddressInfo;
      const h = a.address.includes(':') ? `[${a.address}]` : a.address;
      this.boundAddress = {
        host: a.address,
        port: a.port,
        url: `${this.opts.tls ? 'https' : 'http'}://${h}:${a.port}/`,
        controlSocket: this.opts.controlSocket,
      };
      log.info({ url: this.boundAddress.url, controlSocket: this.opts.controlSocket }, 'web UI and API listening');
    } catch (err) {
      this.tcp = null;
      log.error({ err, controlSocket: this.opts.controlSocket }, 'the web UI cannot listen; the control socket stays up for the CLI');
      throw err;
    }
  }

  private async stopListeners(): Promise<void> {
    this.live.stop();
    this.logins.endAll();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = null;
    const servers = [this.tcp, this.control].filter((s): s is Server => s !== null);
    const ownedSocket = this.control !== null; // never remove another daemon's socket
    this.tcp = this.control = null;
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    if (ownedSocket && isSocket(this.opts.controlSocket)) await unlink(this.opts.controlSocket).catch(() => undefined);
    this.boundAddress = null;
  }

  private async listenControl(app: express.Express): Promise<Server> {
    const path = this.opts.controlSocket;
    if (existsSync(path)) {
      if (!isSocket(path)) throw new SnapbackError('BAD_ARGUMENT', `${path} exists and is not a socket; not replacing it`, { path });
      if (await socketAnswers(path)) {
        throw new SnapbackError('STATE_LOCKED', `another daemon is listening on the control socket ${path}`, { path });
      }
      await unlink(path);
    }
    const server = createHttpServer(app);
    setRequestTimeouts(server);
    server.on('connection', (s: Socket) => this.controlSockets.add(s));
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

  private buildApp(): express.Express {
    const { service, store } = this.opts;
    const publicDir = this.opts.publicDir ?? defaultPublicDir();
    const hostCheck = new HostCheck({ listenHost: this.opts.listen.host, extraNames: this.opts.hostNames ?? [] });
    const checkHostAndOrigin = hostCheck.middleware(isStateChanging);
    const api = new ApiRouter();
    const deps: RouteDeps = { service, store, logins: this.logins, rateLimit: this.rateLimit, live: this.live, setupCode: this.setupCode };
    for (const routes of [authRoutes, tokenRoutes, settingsRoutes, auditRoutes, sessionRoutes, modelRoutes, eventRoutes, statusRoutes, modeRoutes, regionRoutes, metricsRoutes]) {
      routes(api, deps);
    }
    for (const add of this.opts.extraRoutes ?? []) add(api);
    api.addOpenApiRoute(() => this.openApiDocument());
    this.api = api;
    const publicApi = new Set(api.routes().filter((r) => r.public).map((r) => `${r.method.toUpperCase()} ${r.path}`));
    const rawBodyTypes = new Map(api.routes().flatMap((r) => (r.rawBody ? [[`${r.method.toUpperCase()} ${r.path}`, r.rawBody.contentType] as const] : [])));

    const app = express();
    app.disable('x-powered-by');
    app.set('etag', 'strong');

    app.use(securityHeaders());

    // The names the appliance answers to, and the origin of state-changing requests (TCP only:
    // the control socket is the CLI on the appliance).
    app.use((req, res, next) => {
      if (this.controlSockets.has(req.socket)) return next();
      checkHostAndOrigin(req, res, next);
    });

    // Who is asking (on the control socket: the CLI on the appliance).
    const who = identify(this.logins, store, 'snapback');
    app.use((req, res, next) => {
      if (!this.controlSockets.has(req.socket)) return who(req, res, next);
      res.locals.principal = { kind: 'cli', actor: 'cli' } satisfies Principal;
      next();
    });

    // State-changing requests carry JSON or nothing (a cross-site form cannot send JSON), except
    // an upload route's stream of its own content type (a form cannot send that either; its
    // handler reads it; its connection is not kept open after it, so an upload refused early is
    // not read to its end).
    app.use((req, res, next) => {
      if (!isStateChanging(req.method)) return next();
      const raw = rawBodyTypes.get(`${req.method} ${req.path}`);
      if (raw !== undefined) {
        res.setHeader('Connection', 'close');
        if (!req.is(raw)) throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', `send the body as ${raw}`);
        return next();
      }
      const len = Number(req.headers['content-length'] ?? 0);
      const hasBody = len > 0 || req.headers['transfer-encoding'] !== undefined;
      if (hasBody && !req.is('application/json')) throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
      if (hasBody) {
        const timer = setTimeout(() => req.destroy(), JSON_BODY_TIMEOUT_MS);
        timer.unref();
        const clear = (): void => clearTimeout(timer);
        req.once('end', clear);
        req.once('close', clear);
      }
      next();
    });
    app.use(express.json({ limit: '64kb', strict: true }));

    app.use(loginGate((req) => (req.path.startsWith('/api/') || req.path === '/metrics') && publicApi.has(`${req.method} ${req.path}`), 'snapback'));
    app.use(csrfGate());
    app.use('/api', noStore);
    app.use(auditStateChanges(store));

    app.use(api.router);
    app.use(pageRoutes(publicDir));

    app.use(...pipelineEnd());
    return app;
  }
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
