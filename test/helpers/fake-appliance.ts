/**
 * A small in-process ApplianceService for the HTTP and web UI tests: a region map, sessions,
 * modes and a background "restore" that the test drives (or lets run on a timer), plus the
 * optional model verification. No disk, no NBD: just the contract the HTTP side depends on.
 */
import { EventEmitter } from 'node:events';
import {
  RegionState,
  type ApplianceService,
  type ApplianceStatus,
  type GadgetStatus,
  type HostConnectionState,
  type ProtectionMode,
  type RestoreMode,
  type SessionEndParticipant,
  type SessionEndReason,
  type SessionRecord,
} from '../../appliance/session/appliance-service.js';
import type { ModelVerifyStatus } from '../../appliance/api/model.js';
import type { ModelVerifyCapable } from '../../appliance/http/routes/model-routes.js';
import { bytesStateSource, encodeRegionMap, runsOf, type EncodedRegionMap } from '../../appliance/session/region-map-codec.js';

export interface FakeOptions {
  regions?: number;
  regionSize?: number;
  /** Restore pending regions on a timer (e2e); off: the test calls hydrateStep(). */
  autoHydrate?: { regionsPerTick: number; tickMs: number } | null;
  /** Pretend the verification takes this many ticks of 100 ms. */
  verifyTicks?: number;
}

export class FakeAppliance extends EventEmitter implements ApplianceService, ModelVerifyCapable {
  readonly regionSize: number;
  readonly map: Uint8Array;
  mode: ProtectionMode = 'frozen';
  restoreMode: RestoreMode = 'instant';
  hydrationRate: number | null = null;
  sessionNumber = 1;
  sessionStartedAt = new Date().toISOString();
  readonly history: SessionRecord[] = [];
  readonly calls: string[] = [];
  host: HostConnectionState = 'nbd-only';
  nbdClients = 1;
  hydrating = false;
  totalAtStart = 0;
  done = 0;
  bytesThisSession = 0;
  verify: ModelVerifyStatus = { state: 'idle', startedAt: null, finishedAt: null, regionsTotal: 0, regionsDone: 0, bytesPerSecond: 0, badRegions: [], error: null };
  readonly #auto: FakeOptions['autoHydrate'];
  readonly #verifyTicks: number;
  #timer: NodeJS.Timeout | null = null;
  /** Pending regions lie at or after this index (the restore walks the disk once). */
  #hydrateFrom = 0;
  #verifyTimer: NodeJS.Timeout | null = null;
  readonly #events: { at: string; what: string }[] = [];

  constructor(opts: FakeOptions = {}) {
    super();
    this.regionSize = opts.regionSize ?? 65536;
    this.map = new Uint8Array(opts.regions ?? 4096);
    this.#auto = opts.autoHydrate ?? null;
    this.#verifyTicks = opts.verifyTicks ?? 10;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#verifyTimer) clearInterval(this.#verifyTimer);
    this.#timer = this.#verifyTimer = null;
  }

  // ---- ApplianceService ----

  status(): ApplianceStatus {
    let written = 0;
    let pending = 0;
    for (const v of this.map) {
      if (v === RegionState.written) written++;
      else if (v === RegionState.pending) pending++;
    }
    const size = this.map.length * this.regionSize;
    return {
      mode: this.mode,
      restoreMode: this.restoreMode,
      session: { number: this.sessionNumber, startedAt: this.sessionStartedAt },
      regions: { total: this.map.length, regionSize: this.regionSize, writtenThisSession: written, pending, clean: this.map.length - written - pending },
      bytesChangedThisSession: this.bytesThisSession,
      hydration: {
        running: this.hydrating,
        totalAtStart: this.totalAtStart,
        done: this.done,
        pendingRegions: pending,
        bytesPerSecond: this.hydrating ? 48 * 1024 * 1024 : 0,
        etaSeconds: this.hydrating ? Math.ceil((pending * this.regionSize) / (48 * 1024 * 1024)) : null,
        rateLimitBytesPerSecond: this.hydrationRate,
        lastError: null,
      },
      host: { connection: this.host, nbdClients: this.nbdClients, gadget: null },
      model: { id: 'sha256:' + 'ab12'.repeat(16), name: 'lab-image-2024', size, regionSize: this.regionSize, pendingActivation: null },
      disk: { path: '/var/lib/snapback/working.img', size, ioErrors: 0 },
      stateDir: { path: '/var/lib/snapback', freeBytes: 12 * 1024 ** 3, writeError: null },
      daemon: { startedAt: this.sessionStartedAt, pid: process.pid, version: '0.1.0-test' },
      components: [],
    };
  }

  async endSession(reason: SessionEndReason, note?: string): Promise<SessionRecord> {
    this.calls.push(`endSession:${reason}${note ? `:${note}` : ''}`);
    const now = new Date().toISOString();
    let written = 0;
    for (let i = 0; i < this.map.length; i++) {
      if (this.map[i] === RegionState.written) {
        written++;
        // Thawed: changes stay (D kept, S cleared): shown as clean-but-kept in this fake.
        this.map[i] = this.mode === 'frozen' ? RegionState.pending : RegionState.clean;
      }
    }
    this.#hydrateFrom = 0;
    const rec: SessionRecord = {
      number: this.sessionNumber,
      startedAt: this.sessionStartedAt,
      endedAt: now,
      endReason: reason,
      mode: this.mode,
      regionsWritten: written,
      bytesWritten: this.bytesThisSession,
      sessionEndMs: 12,
      restoreMs: null,
      events: this.#events.splice(0),
    };
    this.history.push(rec);
    this.sessionNumber++;
    this.sessionStartedAt = now;
    this.bytesThisSession = 0;
    // like the session manager: the whole map changed, never one object per region
    if (written) this.emit('regions-replaced');
    this.#startHydration();
    this.emit('session-ended', structuredClone(rec));
    this.emit('status');
    return structuredClone(rec);
  }

  async setMode(mode: ProtectionMode): Promise<void> {
    this.calls.push(`setMode:${mode}`);
    this.mode = mode;
    this.emit('status');
  }

  async setRestoreMode(mode: RestoreMode): Promise<void> {
    this.calls.push(`setRestoreMode:${mode}`);
    this.restoreMode = mode;
    this.emit('status');
  }

  async setHydrationRate(bytesPerSecond: number | null): Promise<void> {
    this.calls.push(`setHydrationRate:${bytesPerSecond}`);
    this.hydrationRate = bytesPerSecond;
    this.emit('status');
  }

  async regionMap(): Promise<EncodedRegionMap> {
    return encodeRegionMap(bytesStateSource(this.map));
  }

  sessions(): SessionRecord[] {
    const current: SessionRecord = {
      number: this.sessionNumber,
      startedAt: this.sessionStartedAt,
      endedAt: null,
      endReason: null,
      mode: this.mode,
      regionsWritten: this.status().regions.writtenThisSession,
      bytesWritten: this.bytesThisSession,
      sessionEndMs: null,
      restoreMs: null,
      events: [...this.#events],
    };
    return [...structuredClone(this.history), current];
  }

  recordHostEvent(what: string): void {
    this.#events.push({ at: new Date().toISOString(), what });
  }

  addSessionEndParticipant(_p: SessionEndParticipant): void {}

  setHostConnection(state: HostConnectionState, _gadget?: GadgetStatus | null): void {
    this.host = state;
    this.emit('status');
  }

  // ---- model verification ----

  startModelVerify(): ModelVerifyStatus {
    this.calls.push('startModelVerify');
    this.verify = {
      state: 'running',
      startedAt: new Date().toISOString(),
      finishedAt: null,
      regionsTotal: this.map.length,
      regionsDone: 0,
      bytesPerSecond: 80 * 1024 * 1024,
      badRegions: [],
      error: null,
    };
    const step = Math.ceil(this.map.length / this.#verifyTicks);
    this.#verifyTimer = setInterval(() => {
      this.verify.regionsDone = Math.min(this.map.length, this.verify.regionsDone + step);
      if (this.verify.regionsDone >= this.map.length) {
        this.verify.state = 'passed';
        this.verify.finishedAt = new Date().toISOString();
        if (this.#verifyTimer) clearInterval(this.#verifyTimer);
        this.#verifyTimer = null;
      }
      this.emit('model-verify', { ...this.verify });
    }, 100);
    return { ...this.verify };
  }

  modelVerifyStatus(): ModelVerifyStatus {
    return { ...this.verify };
  }

  // ---- test controls ----

  /** The host writes these regions (marks them written this session). */
  write(regions: number[], bytesPerRegion = this.regionSize): void {
    const changed: number[] = [];
    for (const r of regions) {
      if (r < 0 || r >= this.map.length) continue;
      if (this.map[r] !== RegionState.written) {
        this.map[r] = RegionState.written;
        changed.push(r);
      }
      this.bytesThisSession += bytesPerRegion;
    }
    this.#emitRuns(changed);
    this.emit('status');
  }

  /** Restores up to n pending regions; returns how many. */
  hydrateStep(n: number): number {
    const changes: number[] = [];
    let i = this.#hydrateFrom;
    for (; i < this.map.length && changes.length < n; i++) {
      if (this.map[i] === RegionState.pending) {
        this.map[i] = RegionState.clean;
        changes.push(i);
      }
    }
    this.#hydrateFrom = i;
    this.done += changes.length;
    this.#emitRuns(changes);
    if (!this.status().regions.pending && this.hydrating) {
      this.hydrating = false;
      const last = this.history[this.history.length - 1];
      if (last && last.restoreMs === null) last.restoreMs = 1500;
    }
    this.emit('status');
    return changes.length;
  }

  /** Region changes go out as runs of their current state, as from the session manager. */
  #emitRuns(regions: number[]): void {
    if (!regions.length) return;
    const sorted = Float64Array.from(new Set(regions)).sort();
    this.emit('regions', runsOf(sorted, (r) => this.map[r] ?? RegionState.clean));
  }

  #startHydration(): void {
    const pending = this.status().regions.pending;
    if (!pending) return;
    this.hydrating = true;
    this.totalAtStart = pending;
    this.done = 0;
    const auto = this.#auto;
    if (auto && !this.#timer) {
      this.#timer = setInterval(() => {
        this.hydrateStep(auto.regionsPerTick);
        if (!this.hydrating && this.#timer) {
          clearInterval(this.#timer);
          this.#timer = null;
        }
      }, auto.tickMs);
    }
  }
}
