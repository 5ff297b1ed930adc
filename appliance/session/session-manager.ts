/**
 * Session manager: the core of the daemon and the one ApplianceService (docs/architecture.md,
 * sessions). It owns the
 * storage engine's session life: ending a session (participants such as the USB gadget let go
 * of the disk first, one atomic log header write, an eager restore before the medium comes
 * back), the frozen/thawed and instant/eager modes, the hydration rate, the session history
 * and the host-side events seen during each session.
 */
import { EventEmitter } from 'node:events';
import { statfsSync } from 'node:fs';
import type { Engine } from '../storage/engine.js';
import type { StateStore } from '../state/state-store.js';
import {
  RegionState,
  type ApplianceService,
  type ApplianceStatus,
  type ComponentHealth,
  type GadgetStatus,
  type HostConnectionState,
  type ProtectionMode,
  type RestoreMode,
  type SessionEndParticipant,
  type SessionEndReason,
  type SessionRecord,
} from './appliance-service.js';
import { RegionChangeBuffer, encodeRegionMapAsync, regionLogStates, type EncodedRegionMap } from './region-map-codec.js';
import type { ModelVerifyStatus } from '../api/model.js';
import { ModelVerification } from '../storage/model-verification.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import { VERSION } from '../version.js';

const log = childLogger('sessions');

export interface SessionManagerOptions {
  /** The daemon's parts and their health, shown in the status (default: none). */
  components?: () => ComponentHealth[];
}

/**
 * A model switch to make at the next session end (the model switcher, model-switcher.ts): the
 * session ends on the new model instead of the old one.
 */
export interface SessionEndSwitch {
  /** What the session history says (e.g. "model switched to NAME"). */
  readonly note: string;
  /** The model the switch puts in force (the status shows it as the pending activation). */
  readonly target: { readonly id: string; readonly name: string };
  /** Puts the new model in force with host I/O stopped; keeps it stopped if asked (an eager restore follows). */
  run(keepQuiesced: boolean): Promise<void>;
  /** After the session ended on the new model: bookkeeping, not undone by its failure. */
  done(): Promise<void>;
}

export class SessionManager extends EventEmitter implements ApplianceService {
  private readonly participants: SessionEndParticipant[] = [];
  private switchAtEnd: SessionEndSwitch | null = null;
  /** Work that must not overlap a session end (exclusive()). */
  private holding: Promise<unknown> | null = null;
  private ending: Promise<SessionRecord> | null = null;
  private current: SessionRecord;
  private hostConnection: HostConnectionState = 'nbd-only';
  private gadget: GadgetStatus | null = null;
  private nbdClients = 0;
  private statusTimer: NodeJS.Timeout | null = null;
  private readonly regionChanges = new RegionChangeBuffer();
  private regionTimer: NodeJS.Timeout | null = null;
  private restoreStartedFor: SessionRecord | null = null;
  private readonly startedAt = new Date();
  private readonly verification = new ModelVerification((status) => this.emit('model-verify', status));

  private readonly components: () => ComponentHealth[];

  constructor(
    readonly engine: Engine,
    private readonly store: StateStore,
    options: SessionManagerOptions = {},
  ) {
    super();
    this.components = options.components ?? (() => []);
    this.current = this.openRecord();
    engine.pd.on('regions', (changes: { region: number }[]) => this.queueRegions(changes));
    engine.hydrator.on('progress', () => this.changed());
    engine.hydrator.on('idle', () => {
      const rec = this.restoreStartedFor;
      if (rec && engine.log.pendingCount === 0) {
        rec.restoreMs = Date.now() - Date.parse(rec.endedAt ?? new Date().toISOString());
        this.restoreStartedFor = null;
        this.saveInBackground('the restore time', this.store.upsertSession(rec));
      }
      this.changed();
    });
    // The settings own the hydration rate; whoever changes it there, the hydrator follows.
    engine.hydrator.setRateLimit(store.settings().hydrationRateBytesPerSecond);
    store.on('settings', (settings: { hydrationRateBytesPerSecond: number | null }) => {
      engine.hydrator.setRateLimit(settings.hydrationRateBytesPerSecond);
      this.changed();
    });
    store.on('write-error', () => this.changed());
  }

  /**
   * Writes to the state file that record what already happened (history, the time a restore
   * took): when one fails (the state filesystem is full) the change itself stands, the record
   * stays in memory and goes out with the next write that succeeds, and the status shows the
   * write error until then.
   */
  private async save(what: string, write: Promise<void>): Promise<void> {
    try {
      await write;
    } catch (err) {
      log.error({ err }, `cannot save ${what} in the state file; it is kept in memory and saved with the next write`);
      this.changed();
    }
  }

  private saveInBackground(what: string, write: Promise<void>): void {
    void this.save(what, write);
  }

  private openRecord(): SessionRecord {
    const info = this.engine.log.info;
    const existing = this.store.listSessions().find((s) => s.number === info.sessionNumber && s.endedAt === null);
    return (
      existing ?? {
        number: info.sessionNumber,
        startedAt: new Date(info.sessionStartedAt || Date.now()).toISOString(),
        endedAt: null,
        endReason: null,
        mode: info.mode,
        regionsWritten: 0,
        bytesWritten: 0,
        sessionEndMs: null,
        restoreMs: null,
        events: [],
      }
    );
  }

  /** Starting the daemon ends the previous host session, then restores in the background. */
  async start(options: { endSessionOnStart?: boolean } = {}): Promise<void> {
    await this.save('the session history', this.store.upsertSession(this.current));
    if (options.endSessionOnStart ?? true) await this.endSession('daemon-start');
    this.engine.hydrator.start();
  }

  async stop(): Promise<void> {
    if (this.statusTimer) clearTimeout(this.statusTimer);
    if (this.regionTimer) clearTimeout(this.regionTimer);
    this.statusTimer = null;
    this.regionTimer = null;
    await this.engine.hydrator.stop();
    this.current.regionsWritten = this.engine.log.writtenCount;
    this.current.bytesWritten = this.engine.pd.stats.bytesWrittenThisSession;
    await this.save('the session history', this.store.upsertSession(this.current));
  }

  // ---- ApplianceService -----------------------------------------------------------------

  status(): ApplianceStatus {
    const e = this.engine;
    const info = e.log.info;
    const h = e.hydrator.progress();
    let free: number | null = null;
    try {
      const st = statfsSync(e.state.path);
      free = st.bavail * st.bsize;
    } catch {
      free = null;
    }
    return {
      mode: info.mode,
      restoreMode: info.restoreMode,
      session: { number: info.sessionNumber, startedAt: new Date(info.sessionStartedAt).toISOString() },
      regions: {
        total: e.log.regionCount,
        regionSize: e.log.regionSize,
        writtenThisSession: e.log.writtenCount,
        pending: e.log.pendingCount,
        clean: e.log.regionCount - e.log.dirtyCount,
      },
      bytesChangedThisSession: e.pd.stats.bytesWrittenThisSession,
      hydration: {
        running: h.running,
        totalAtStart: h.totalAtStart,
        done: h.done,
        pendingRegions: h.pending,
        bytesPerSecond: h.bytesPerSecond,
        etaSeconds: h.etaSeconds,
        rateLimitBytesPerSecond: e.hydrator.rateLimit,
        lastError: h.error,
      },
      host: { connection: this.gadget ? this.hostConnection : this.nbdClients > 0 ? 'nbd-only' : this.hostConnection === 'nbd-only' ? 'absent' : this.hostConnection, nbdClients: this.nbdClients, gadget: this.gadget },
      // the library's name (a rename changes it; the manifest keeps the name it was made with)
      model: {
        id: e.model.id,
        name: e.modelEntry.record.name,
        size: e.model.size,
        regionSize: e.model.manifest.regionSize,
        pendingActivation: this.switchAtEnd ? { id: this.switchAtEnd.target.id, name: this.switchAtEnd.target.name } : null,
      },
      disk: { path: e.config.disk, size: e.pd.size, ioErrors: e.pd.stats.ioErrors },
      stateDir: { path: e.state.path, freeBytes: free, writeError: this.store.writeError },
      daemon: { startedAt: this.startedAt.toISOString(), pid: process.pid, version: VERSION },
      components: this.components(),
    };
  }

  endSession(reason: SessionEndReason, note?: string): Promise<SessionRecord> {
    if (this.ending) return this.ending;
    this.ending = (async () => {
      while (this.holding) await this.holding.catch(() => undefined);
      return this.doEndSession(reason, note);
    })().finally(() => {
      this.ending = null;
    });
    return this.ending;
  }

  /**
   * Runs `fn` with no session end under way: waits for one in progress, and a session end asked
   * for meanwhile waits for `fn` (a capture stops host I/O itself, and must not have a session
   * end let it through).
   */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    for (;;) {
      const busy = this.ending ?? this.holding;
      if (!busy) break;
      await busy.catch(() => undefined);
    }
    const run = fn();
    this.holding = run;
    try {
      return await run;
    } finally {
      this.holding = null;
    }
  }

  /** The model in force changed outside a session end (a captured disk made the baseline): status and region map follow. */
  modelChanged(): void {
    this.changed();
    this.queueRegions(null);
  }

  private async doEndSession(reason: SessionEndReason, note?: string): Promise<SessionRecord> {
    const e = this.engine;
    const t0 = Date.now();
    const mode = e.log.info.mode;
    const eager = e.log.info.restoreMode === 'eager';
    log.info({ reason, note, mode, restore: e.log.info.restoreMode }, 'ending the host session');
    const ended = this.current;
    const quiesced: SessionEndParticipant[] = [];
    const sw = this.switchAtEnd;
    let switched = false;
    try {
      // participants (the USB gadget) let go of the disk first: no old page cache survives
      for (const p of this.participants) {
        await p.quiesce();
        quiesced.push(p);
      }
      ended.regionsWritten = e.log.writtenCount;
      ended.bytesWritten = e.pd.stats.bytesWrittenThisSession;
      if (sw) {
        // a switch ends the session on the new model: the session's writes lapse in any mode
        const modelBefore = e.log.info.modelId;
        try {
          await sw.run(eager);
        } catch (err) {
          e.pd.resume(); // the host must not wait for a restore that will not come
          throw err;
        } finally {
          switched = e.log.info.modelId !== modelBefore;
          if (switched && this.switchAtEnd === sw) this.switchAtEnd = null;
        }
      } else await e.pd.endSession({ keepWrites: mode === 'thawed', keepQuiesced: eager && mode === 'frozen' });
      if (eager && (mode === 'frozen' || switched)) {
        try {
          await e.hydrator.runToCompletion(() => this.changed());
        } finally {
          e.pd.resume();
        }
      }
    } finally {
      for (const p of quiesced.reverse()) {
        await p.resume().catch((err: unknown) => log.error({ err, participant: p.name }, 'resume after session end failed'));
      }
    }
    // the host may read again from here: what follows is bookkeeping
    const now = Date.now();
    ended.endedAt = new Date(now).toISOString();
    ended.endReason = reason;
    ended.sessionEndMs = now - t0;
    if (note) ended.events.push({ at: ended.endedAt, what: `end: ${note}` });
    if (sw && switched) {
      ended.events.push({ at: ended.endedAt, what: sw.note });
      await sw.done().catch((err: unknown) => log.error({ err }, 'the bookkeeping after a model switch failed; the switch itself is made'));
    }
    if ((mode === 'thawed' && !switched) || e.log.pendingCount === 0) ended.restoreMs = eager ? now - t0 : 0;
    else this.restoreStartedFor = ended;
    this.current = this.openRecord();
    e.hydrator.kick();
    // The session has ended (the log header says so): failing to record it does not undo it.
    await this.save('the ended session', this.store.upsertSession(ended));
    await this.save('the new session', this.store.upsertSession(this.current));
    this.emit('session-ended', ended);
    this.changed();
    this.queueRegions(null);
    return ended;
  }

  /**
   * Makes the next session end switch models (null: withdraws it); returns the one it replaces.
   * The session end in progress, if any, keeps what it started with.
   */
  setSessionEndSwitch(sw: SessionEndSwitch | null): SessionEndSwitch | null {
    const before = this.switchAtEnd;
    this.switchAtEnd = sw;
    this.changed();
    return before;
  }

  get sessionEndSwitch(): SessionEndSwitch | null {
    return this.switchAtEnd;
  }

  /** The write log's header owns the modes: once it is written, the change has happened. */
  async setMode(mode: ProtectionMode): Promise<void> {
    const info = this.engine.log.info;
    await this.engine.log.setModes(mode, info.restoreMode);
    this.current.events.push({ at: new Date().toISOString(), what: `mode ${mode}` });
    this.current.mode = mode;
    this.changed();
    await this.save('the mode change in the session history', this.store.upsertSession(this.current));
  }

  async setRestoreMode(restoreMode: RestoreMode): Promise<void> {
    await this.engine.log.setModes(this.engine.log.info.mode, restoreMode);
    this.changed();
  }

  /** Saves the rate in the settings, which apply it to the hydrator (see the constructor). */
  async setHydrationRate(bytesPerSecond: number | null): Promise<void> {
    await this.store.updateSettings({ hydrationRateBytesPerSecond: bytesPerSecond });
  }

  /** The region map, encoded compactly straight from the log's bitmaps (no byte per region), in slices. */
  regionMap(): Promise<EncodedRegionMap> {
    return encodeRegionMapAsync(regionLogStates(this.engine.log));
  }

  sessions(): SessionRecord[] {
    const list = this.store.listSessions();
    return list.map((s) => (s.number === this.current.number ? { ...this.current, regionsWritten: this.engine.log.writtenCount, bytesWritten: this.engine.pd.stats.bytesWrittenThisSession } : s));
  }

  recordHostEvent(what: string): void {
    this.current.events.push({ at: new Date().toISOString(), what });
    if (this.current.events.length > 500) this.current.events.splice(0, this.current.events.length - 500);
    this.saveInBackground('a host event', this.store.upsertSession(this.current));
    this.changed();
  }

  addSessionEndParticipant(p: SessionEndParticipant): void {
    this.participants.push(p);
  }

  setHostConnection(state: HostConnectionState, gadget?: GadgetStatus | null): void {
    this.hostConnection = state;
    if (gadget !== undefined) this.gadget = gadget;
    this.changed();
  }

  /** The NBD server reports its client count here. */
  setNbdClients(n: number): void {
    this.nbdClients = n;
    this.changed();
  }

  // ---- model verification ("verify now") -------------------------------------------------

  /** Starts hashing every region of the model against its manifest in the background. */
  startModelVerify(): ModelVerifyStatus {
    return this.verification.start(this.engine.model);
  }

  modelVerifyStatus(): ModelVerifyStatus {
    return this.verification.status();
  }

  // ---- change notification (throttled) --------------------------------------------------

  private changed(): void {
    if (this.statusTimer) return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = null;
      this.emit('status');
    }, 200);
    this.statusTimer.unref();
  }

  /**
   * Batches region changes into runs of their current state, at most one 'regions' event per
   * 150 ms. null = the whole map changed (a session ended): one 'regions-replaced' event, never
   * a per-region list (16 M regions on a 1 TiB disk).
   */
  private queueRegions(changes: { region: number }[] | null): void {
    if (changes === null) {
      this.regionChanges.replaceAll();
      if (this.regionTimer) clearTimeout(this.regionTimer);
      this.regionTimer = null;
      this.flushRegions();
      return;
    }
    for (const c of changes) this.regionChanges.add(c.region);
    this.changed();
    if (this.regionTimer) return;
    this.regionTimer = setTimeout(() => {
      this.regionTimer = null;
      this.flushRegions();
    }, 150);
    this.regionTimer.unref();
  }

  private flushRegions(): void {
    if (this.regionChanges.empty) return;
    const l = this.engine.log;
    // the latest state of each region wins: emit what the log says now
    const runs = this.regionChanges.take((r) => (l.isWritten(r) ? RegionState.written : l.isDirty(r) ? RegionState.pending : RegionState.clean));
    if (runs === 'replaced') this.emit('regions-replaced');
    else if (runs.length) this.emit('regions', runs);
  }
}
