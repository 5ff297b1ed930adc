/**
 * Live updates for the web UI over server-sent events (GET /api/events).
 *
 * One subscription to the service and the store fans out to every open stream:
 * - `status`        the full ApplianceStatus, at most every STATUS_INTERVAL_MS;
 * - `regions`       {runs: [[start, length, state], …]} per tick (apply in order), or
 *                   {replaced: true} when the whole map changed (a session ended) or too many
 *                   runs changed at once: the client then refetches GET /api/regions;
 * - `session-ended` the SessionRecord;
 * - `audit`         a new audit-log entry;
 * - `settings`      the new settings;
 * - `model-verify`  verification progress.
 * Streams are bounded: a client that does not read is dropped rather than buffered without end.
 * A stream lasts only as long as what authorised it: ending a login (logout, expiry, password
 * change) or revoking an API token closes its streams.
 */
import type { Response } from 'express';
import type { AuditEntry } from '../api/audit.js';
import type { ModelVerifyStatus } from '../api/model.js';
import type { SessionRecord } from '../api/sessions.js';
import type { Settings } from '../api/settings.js';
import type { ApplianceService } from '../session/appliance-service.js';
import type { RegionRun } from '../session/region-map-codec.js';
import type { StateStore } from '../state/state-store.js';

const TICK_MS = 250;
const HEARTBEAT_MS = 15_000;
const MAX_CLIENTS = 32;
const MAX_BUFFERED = 1 << 20;
const MAX_REGION_RUNS = 10_000;

/** Who opened a stream: a login's id, an API token's id, or the CLI (neither). */
export interface StreamOwner {
  loginId?: string;
  tokenId?: string;
}

interface Client {
  res: Response;
  owner: StreamOwner;
}

export class LiveEvents {
  private readonly service: ApplianceService;
  private readonly store: StateStore;
  private readonly clients = new Set<Client>();
  private statusDirty = false;
  private regionRuns: RegionRun[] = [];
  private regionsReplaced = false;
  private tick: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(service: ApplianceService, store: StateStore) {
    this.service = service;
    this.store = store;
  }

  start(): void {
    if (this.tick) return;
    const on = <A extends unknown[]>(em: NodeJS.EventEmitter, ev: string, fn: (...a: A) => void): void => {
      const h = fn as (...a: unknown[]) => void;
      em.on(ev, h);
      this.unsubscribe.push(() => em.off(ev, h));
    };
    on(this.service, 'status', () => {
      this.statusDirty = true;
    });
    on(this.service, 'regions', (runs: RegionRun[]) => {
      if (this.regionsReplaced) return;
      for (const r of runs) this.regionRuns.push(r);
      if (this.regionRuns.length > MAX_REGION_RUNS) this.replaceRegions();
    });
    on(this.service, 'regions-replaced', () => this.replaceRegions());
    on(this.service, 'session-ended', (r: SessionRecord) => {
      this.statusDirty = true;
      this.broadcast('session-ended', r);
    });
    on(this.service, 'model-verify', (s: ModelVerifyStatus) => this.broadcast('model-verify', s));
    on(this.store, 'audit', (e: AuditEntry) => this.broadcast('audit', e));
    on(this.store, 'settings', (s: Settings) => this.broadcast('settings', s));
    this.tick = setInterval(() => this.flush(), TICK_MS);
    this.tick.unref();
    this.heartbeat = setInterval(() => this.send(': ping\n\n'), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  stop(): void {
    for (const u of this.unsubscribe.splice(0)) u();
    if (this.tick) clearInterval(this.tick);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.tick = this.heartbeat = null;
    for (const c of [...this.clients]) this.drop(c);
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** Takes over `res` as an event stream. False when there are too many streams already. */
  attach(res: Response, owner: StreamOwner): boolean {
    if (this.clients.size >= MAX_CLIENTS) return false;
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    res.socket?.setNoDelay(true);
    const c: Client = { res, owner };
    this.clients.add(c);
    res.on('close', () => this.clients.delete(c));
    this.write(c, 'retry: 3000\n\n');
    this.write(c, frame('status', this.service.status()));
    return true;
  }

  /** Closes the streams of a login that ended (logout, expiry, password change). */
  dropLogin(loginId: string): void {
    for (const c of [...this.clients]) if (c.owner.loginId === loginId) this.drop(c);
  }

  /** Closes the streams of an API token that was revoked. */
  dropToken(tokenId: string): void {
    for (const c of [...this.clients]) if (c.owner.tokenId === tokenId) this.drop(c);
  }

  broadcast(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    this.send(frame(event, data));
  }

  private flush(): void {
    if (this.clients.size === 0) {
      this.statusDirty = false;
      this.regionRuns = [];
      this.regionsReplaced = false;
      return;
    }
    if (this.regionsReplaced) {
      this.regionsReplaced = false;
      this.send(frame('regions', { replaced: true }));
    } else if (this.regionRuns.length) {
      const runs = this.regionRuns;
      this.regionRuns = [];
      this.send(frame('regions', { runs }));
    }
    if (this.statusDirty) {
      this.statusDirty = false;
      this.send(frame('status', this.service.status()));
    }
  }

  private replaceRegions(): void {
    this.regionsReplaced = true;
    this.regionRuns = [];
  }

  private send(text: string): void {
    for (const c of [...this.clients]) this.write(c, text);
  }

  private write(c: Client, text: string): void {
    if (c.res.writableLength > MAX_BUFFERED) {
      this.drop(c);
      return;
    }
    c.res.write(text);
  }

  private drop(c: Client): void {
    this.clients.delete(c);
    c.res.end();
  }
}

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
