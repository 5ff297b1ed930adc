/**
 * Starts the HTTP component on a temporary state directory with a FakeAppliance (or a given
 * service), on 127.0.0.1 with a random port, and gives tests a cookie-keeping client for TCP
 * and a client for the unix control socket.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ApiRouter } from '../../appliance/http/api-router.js';
import { HttpComponent, type HttpComponentOptions } from '../../appliance/http/http-component.js';
import { managementRoutes } from '../../appliance/http/routes/management-routes.js';
import { ManagementComponent } from '../../appliance/management/management-component.js';
import { MaintenanceComponent } from '../../appliance/maintenance/maintenance-component.js';
import { maintenanceRoutes } from '../../appliance/http/routes/maintenance-routes.js';
import { partitionRoutes } from '../../appliance/http/routes/partition-routes.js';
import { persistentRoutes } from '../../appliance/http/routes/persistent-routes.js';
import type { PartitionTable } from '../../appliance/api/partitions.js';
import { PersistentAreas, areasFileOf } from '../../appliance/storage/persistent-areas.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { systemClock } from '../../appliance/clock.js';
import { SnapbackError } from '../../appliance/errors.js';
import type { ApplianceService } from '../../appliance/session/appliance-service.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { FakeAppliance, type FakeOptions } from './fake-appliance.js';

export interface Harness<S extends ApplianceService = FakeAppliance> {
  dir: string;
  store: StateStore;
  service: S;
  http: HttpComponent;
  url: string;
  controlSocket: string;
  close(): Promise<void>;
}

export async function startHarness(
  opts: {
    fake?: FakeOptions;
    dir?: string;
    host?: string;
    http?: Partial<Omit<HttpComponentOptions, 'service' | 'store'>>;
    /** More routes that need the harness's state store (the model library's). */
    routes?: ((api: ApiRouter, store: StateStore) => void)[];
    /** The model's partition table (GET /api/partitions); default: a disk without one. */
    partitions?: () => Promise<PartitionTable>;
  } = {},
): Promise<Harness> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'snapback-http-')));
  const store = await StateStore.open(dir);
  const service = new FakeAppliance(opts.fake);
  // As the session manager does: the hydration rate follows the saved settings.
  store.on('settings', (s: { hydrationRateBytesPerSecond: number | null }) => void service.setHydrationRate(s.hydrationRateBytesPerSecond));
  const controlSocket = join(dir, 'control.sock');
  // As the daemon has it: the fleet link (off until configured), and its settings routes.
  const management = new ManagementComponent({ service, stateDir: dir, audit: (e) => store.audit(e) });
  await management.start();
  // and the maintenance windows (no host power here: a window that comes due is skipped)
  const maintenance = new MaintenanceComponent({
    service,
    settings: () => store.settings().maintenance,
    saveSettings: async (m) => void (await store.updateSettings({ maintenance: m })),
    audit: (e) => store.audit(e),
    power: () => null,
    captureAndActivate: () => Promise.reject(new SnapbackError('NOT_SUPPORTED', 'no model library in this harness')),
    stateDir: dir,
    clock: systemClock,
  });
  await maintenance.start();
  // and, as the daemon has them, the persistent areas (real, in the harness's directory) and the
  // model's partition table, which the dashboard and the Settings page ask for
  const shape = service.status();
  const areas = await PersistentAreas.load(areasFileOf(new StateDir(dir)), { regionSize: shape.regions.regionSize, diskSize: shape.model.size });
  const noTable = async (): Promise<PartitionTable> => ({ scheme: 'none', sectorSize: 512, diskId: '', diskSize: shape.model.size, partitions: [], warnings: [] });
  const http = new HttpComponent({
    service,
    store,
    listen: { host: opts.host ?? '127.0.0.1', port: 0 },
    controlSocket,
    ...opts.http,
    extraRoutes: [
      ...(opts.http?.extraRoutes ?? []),
      (api) => managementRoutes(api, management, store),
      (api) => maintenanceRoutes(api, maintenance),
      (api) => persistentRoutes(api, { areas: () => areas, store }),
      (api) => partitionRoutes(api, { partitions: opts.partitions ?? noTable }),
      ...(opts.routes ?? []).map((add) => (api: ApiRouter) => add(api, store)),
    ],
  });
  await http.start();
  const url = http.address().url.replace(/\/$/, '');
  return {
    dir,
    store,
    service,
    http,
    url,
    controlSocket,
    async close() {
      await management.stop();
      await maintenance.stop();
      await http.stop();
      service.close();
      await store.close();
      if (!opts.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export interface ReqOptions {
  body?: unknown;
  /** A raw body string (sent as is, with `contentType`). */
  raw?: string;
  contentType?: string;
  /** true (default): send the session's CSRF token; false: none; a string: that token. */
  csrf?: boolean | string;
  bearer?: string;
  headers?: Record<string, string>;
  /** Don't send the cookie. */
  anonymous?: boolean;
}

/** A browser-like client: keeps the login cookie and the CSRF token. */
export class Client {
  cookie: string | null = null;
  csrf: string | null = null;
  constructor(readonly base: string) {}

  async req(method: string, path: string, o: ReqOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { Accept: 'application/json', ...(o.headers ?? {}) };
    let body: string | undefined;
    if (o.raw !== undefined) {
      body = o.raw;
      headers['Content-Type'] = o.contentType ?? 'application/json';
    } else if (o.body !== undefined) {
      body = JSON.stringify(o.body);
      headers['Content-Type'] = o.contentType ?? 'application/json';
    }
    if (this.cookie && !o.anonymous) headers.Cookie = this.cookie;
    const csrf = o.csrf ?? true;
    if (typeof csrf === 'string') headers['X-CSRF-Token'] = csrf;
    else if (csrf && this.csrf) headers['X-CSRF-Token'] = this.csrf;
    if (o.bearer) headers.Authorization = `Bearer ${o.bearer}`;
    const res = await fetch(this.base + path, { method, headers, body, redirect: 'manual' });
    const setCookie = res.headers.get('set-cookie');
    if (setCookie) {
      const v = /^snapback_session=([^;]*)/.exec(setCookie)?.[1] ?? '';
      this.cookie = v ? `snapback_session=${v}` : null;
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    return { status: res.status, headers: res.headers, text, json };
  }

  async setup(password: string): Promise<Reply> {
    const r = await this.req('POST', '/api/auth/setup', { body: { password } });
    if (r.status === 201) this.csrf = r.json.csrfToken;
    return r;
  }

  async login(password: string): Promise<Reply> {
    const r = await this.req('POST', '/api/auth/login', { body: { password } });
    if (r.status === 200) this.csrf = r.json.csrfToken;
    return r;
  }
}

/** One request over the unix control socket (the CLI's way in). */
export function controlRequest(socketPath: string, method: string, path: string, body?: unknown): Promise<Reply> {
  return nodeRequest({ socketPath }, method, path, body);
}

/** A node:http response read whole: its status, headers, text and (when the text is JSON) its body. */
export function replyOf(res: IncomingMessage): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('error', reject);
    res.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown = null;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        json = null;
      }
      const headers = new Headers();
      for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
      resolve({ status: res.statusCode ?? 0, headers, text, json });
    });
  });
}

/** One request with node:http (which, unlike fetch, lets a test set any header, Host included). */
export function nodeRequest(
  where: { socketPath: string } | { host: string; port: number },
  method: string,
  path: string,
  body?: unknown,
  extraHeaders: Record<string, string> = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = httpRequest(
      {
        ...where,
        agent: false, // a fresh connection per request: no race with the server closing an idle one
        method,
        path,
        headers: {
          Accept: 'application/json',
          ...(data !== undefined ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) } : {}),
          ...extraHeaders,
        },
      },
      (res) => void replyOf(res).then(resolve, reject),
    );
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

export const PASSWORD = 'correct horse battery';
