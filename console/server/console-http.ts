/**
 * The console's HTTP side: the JSON API (and, later, its web UI), with the appliance's login
 * rules and building blocks: the same security headers, Host and Origin checks, logins with a
 * CSRF token, API tokens (Bearer sbk_…), first-run protection by a one-time setup code (in
 * DATA/setup-code and the log; not needed from the console machine itself), failed-password rate
 * limits, one error format {error, message}, routes declared once and described by
 * GET /api/openapi.json, and every successful state-changing request in the audit log.
 *
 * Open without a login: the login API, the login page and its assets, POST /api/enroll (an
 * appliance redeems its code) and the catalogue's files under /models/ (what appliances download).
 * The web UI's pages come from a built directory (default dist/console/web/public: login.html,
 * index.html, assets/), served like the appliance's.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import express from 'express';
import { consoleStatusSchema } from '../../appliance/api/console.js';
import { SnapbackError } from '../../appliance/errors.js';
import { childLogger } from '../../appliance/logger.js';
import { ApiRouter } from '../../appliance/http/api-router.js';
import { Logins, type LoginsOptions } from '../../appliance/http/auth.js';
import { HostCheck } from '../../appliance/http/host-check.js';
import { HttpError } from '../../appliance/http/http-util.js';
import { LoginRateLimit, type LoginRateLimitOptions } from '../../appliance/http/login-rate-limit.js';
import { buildOpenApiDocument } from '../../appliance/http/openapi.js';
import { needPrincipal } from '../../appliance/http/route-context.js';
import { auditStateChanges, csrfGate, identify, isStateChanging, loginGate, noStore, pipelineEnd } from '../../appliance/http/request-gates.js';
import { listRoutes, type RouteEntry } from '../../appliance/http/route-table.js';
import { auditRoutes } from '../../appliance/http/routes/audit-routes.js';
import { authRoutes } from '../../appliance/http/routes/auth-routes.js';
import { pageRoutes } from '../../appliance/http/routes/page-routes.js';
import { tokenRoutes } from '../../appliance/http/routes/token-routes.js';
import { securityHeaders } from '../../appliance/http/security-headers.js';
import { SetupCode } from '../../appliance/http/setup-code.js';
import { VERSION } from '../../appliance/version.js';
import { FleetEvents } from './fleet-events.js';
import type { ConsoleDeps } from './route-deps.js';
import { catalogueRoutes, UPLOAD_PATH } from './routes/catalogue-routes.js';
import { enrollRoutes } from './routes/enroll-routes.js';
import { fleetRoutes } from './routes/fleet-routes.js';
import { groupRoutes } from './routes/group-routes.js';

const log = childLogger('console-http');
/** A connection that sends and receives nothing for this long is closed (a stalled upload, a dribbling client). */
const IDLE_TIMEOUT_MS = 120_000;

export interface ConsoleHttpOptions {
  deps: ConsoleDeps;
  listen: { host: string; port: number };
  /** More names the console answers to in the Host header. */
  hostNames?: readonly string[];
  logins?: LoginsOptions;
  rateLimit?: LoginRateLimitOptions;
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** The built web UI (login.html, index.html, assets/); default dist/console/web/public. */
  publicDir?: string;
}

/** Built assets the login page needs (as the appliance's); every other page and asset needs a login. */

export class ConsoleHttp {
  private readonly opts: ConsoleHttpOptions;
  private readonly logins: Logins;
  private readonly rateLimit: LoginRateLimit;
  readonly setupCode: SetupCode;
  private readonly events: FleetEvents;
  private api: ApiRouter | null = null;
  private app: express.Express | null = null;
  private server: Server | null = null;
  private bound: { host: string; port: number; url: string } | null = null;

  constructor(opts: ConsoleHttpOptions) {
    this.opts = opts;
    this.logins = new Logins(opts.logins);
    this.rateLimit = new LoginRateLimit(opts.rateLimit);
    this.setupCode = new SetupCode(join(dirname(opts.deps.store.path), 'setup-code'));
    this.events = new FleetEvents(opts.deps.store);
    this.logins.onEnd = (id) => this.events.dropLogin(id);
  }

  address(): { host: string; port: number; url: string } {
    if (!this.bound) throw new SnapbackError('CLOSED', 'the console is not listening');
    return { ...this.bound };
  }

  openApiDocument(): object {
    if (!this.api) throw new SnapbackError('CLOSED', 'the console is not started');
    return buildOpenApiDocument(this.api.routes(), VERSION, {
      title: 'Snapback console API',
      description:
        'The console of a fleet of Snapback appliances: the fleet, actions and their commands, groups, the model catalogue, enrollment, ' +
        'API tokens and the audit log. Scripts use an API token (snapback console token create). ' +
        'Every error is {"error": CODE, "message": "…"}. Every successful state-changing request is written to the audit log.',
    });
  }

  /** Every route express serves (the OpenAPI check compares them with the document). */
  expressRoutes(): RouteEntry[] {
    if (!this.app) throw new SnapbackError('CLOSED', 'the console is not started');
    return listRoutes(this.app);
  }

  async start(): Promise<void> {
    if (this.server) return;
    const { store } = this.opts.deps;
    await this.setupCode.prepare(store.hasAdminPassword());
    this.app = this.buildApp();
    this.events.start();
    const server = this.opts.tls ? createHttpsServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, this.app) : createHttpServer(this.app);
    // Node ends a request not received whole within 5 minutes; a model upload of many GiB takes
    // longer. Instead: headers within a minute, and an idle limit per connection (below).
    server.requestTimeout = 0;
    server.headersTimeout = 60_000;
    server.on('connection', (socket: Socket) => socket.setTimeout(IDLE_TIMEOUT_MS, () => socket.destroy()));
    const { host, port } = this.opts.listen;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new SnapbackError('BUSY', `cannot listen on ${host}:${port}: the address is in use`, undefined, { cause: err })
            : new SnapbackError('BAD_ARGUMENT', `cannot listen on ${host}:${port}: ${err.message}`, undefined, { cause: err }),
        ),
      );
      server.listen({ host, port }, () => resolve());
    });
    this.server = server;
    const a = server.address() as AddressInfo;
    const h = a.address.includes(':') ? `[${a.address}]` : a.address;
    this.bound = { host: a.address, port: a.port, url: `${this.opts.tls ? 'https' : 'http'}://${h}:${a.port}/` };
    log.info({ url: this.bound.url }, 'console API listening');
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    this.bound = null;
    this.events.stop();
    this.logins.endAll();
    if (s) {
      await new Promise<void>((resolve) => {
        s.close(() => resolve());
        s.closeAllConnections();
      });
    }
  }

  private buildApp(): express.Express {
    const { deps } = this.opts;
    const { store } = deps;
    const api = new ApiRouter();
    const accountDeps = { store, logins: this.logins, rateLimit: this.rateLimit, setupCode: this.setupCode, live: this.events };
    authRoutes(api, accountDeps);
    tokenRoutes(api, accountDeps);
    auditRoutes(api, accountDeps);
    fleetRoutes(api, deps);
    groupRoutes(api, deps);
    catalogueRoutes(api, deps);
    enrollRoutes(api, deps, this.rateLimit);
    api.add({
      method: 'get',
      path: '/api/status',
      tag: 'meta',
      summary: "The console: its version, whether it is connected to the broker, how many appliances are online",
      replies: { 200: { description: 'The status', schema: consoleStatusSchema } },
      handler: () => {
        const all = store.listAppliances();
        return { version: VERSION, broker: { connected: deps.link.connected }, appliances: { total: all.length, online: all.filter((a) => a.online).length } };
      },
    });
    api.add({
      method: 'get',
      path: '/api/events',
      tag: 'meta',
      summary: 'Server-sent events: appliances (changed records, gathered per 250 ms), commands (made or changed), audit (new entries)',
      replies: { 200: { description: 'An event stream', contentType: 'text/event-stream' } },
      handler: ({ res }) => {
        const p = needPrincipal(res);
        const owner = p.kind === 'login' ? { loginId: p.login.id } : p.kind === 'token' ? { tokenId: p.tokenId } : {};
        if (!this.events.attach(res, owner)) throw new HttpError(503, 'BUSY', 'too many live-update streams are open');
      },
    });
    api.addOpenApiRoute(() => this.openApiDocument());
    this.api = api;
    const publicRoutes = api.routes().filter((r) => r.public);
    const isPublic = (method: string, path: string): boolean =>
      publicRoutes.some((r) => (r.method.toUpperCase() === method || (r.method === 'get' && method === 'HEAD')) && pathMatches(r.path, path));

    const hostCheck = new HostCheck({ listenHost: this.opts.listen.host, extraNames: this.opts.hostNames ?? [] });
    const app = express();
    app.disable('x-powered-by');
    app.set('etag', 'strong');
    app.use(securityHeaders());
    app.use(hostCheck.middleware(isStateChanging));

    app.use(identify(this.logins, store, 'snapback-console'));

    // State-changing requests carry JSON or nothing (a cross-site form cannot send JSON); the
    // catalogue's upload carries the raw image.
    app.use((req, _res, next) => {
      if (!isStateChanging(req.method) || (req.method === 'POST' && req.path === UPLOAD_PATH)) return next();
      const len = Number(req.headers['content-length'] ?? 0);
      const hasBody = len > 0 || req.headers['transfer-encoding'] !== undefined;
      if (hasBody && !req.is('application/json')) throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json');
      next();
    });
    app.use(express.json({ limit: '1mb', strict: true }));
    app.use(loginGate((req) => isPublic(req.method, req.path), 'snapback-console'));
    app.use(csrfGate());
    app.use('/api', noStore);
    app.use(auditStateChanges(store));
    app.use(api.router);
    app.use(pageRoutes(this.opts.publicDir ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'web', 'public')));
    app.use(...pipelineEnd());
    return app;
  }
}

/** Whether an express route path ('/models/:model/image') matches a request path. */
function pathMatches(route: string, path: string): boolean {
  const r = route.split('/');
  const p = path.split('/');
  return r.length === p.length && r.every((seg, i) => (seg.startsWith(':') ? p[i] !== '' : seg === p[i]));
}
