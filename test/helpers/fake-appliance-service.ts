/**
 * An ApplianceService for the GPIO and maintenance-window tests, on a FakeClock: it records the
 * session ends and host events it is asked for, its status is editable, and a session end can
 * take time on the clock or fail. (test/helpers/fake-appliance.ts is the one for the HTTP and
 * web UI tests: region map, restore and verification.)
 */
import { EventEmitter } from 'node:events';
import type { FakeClock } from './fake-clock.js';
import { bytesStateSource, encodeRegionMap, type EncodedRegionMap } from '../../appliance/session/region-map-codec.js';
import type {
  ApplianceService,
  ApplianceStatus,
  GadgetStatus,
  HostConnectionState,
  ProtectionMode,
  RestoreMode,
  SessionEndParticipant,
  SessionEndReason,
  SessionRecord,
} from '../../appliance/session/appliance-service.js';

/** A status of a quiet appliance: frozen, session 1, nothing written or pending. */
export function makeStatus(): ApplianceStatus {
  return {
    mode: 'frozen',
    restoreMode: 'instant',
    session: { number: 1, startedAt: new Date(0).toISOString() },
    regions: { total: 16, regionSize: 65536, writtenThisSession: 0, pending: 0, clean: 16 },
    bytesChangedThisSession: 0,
    hydration: {
      running: false,
      totalAtStart: 0,
      done: 0,
      pendingRegions: 0,
      bytesPerSecond: 0,
      etaSeconds: null,
      rateLimitBytesPerSecond: null,
      lastError: null,
    },
    host: { connection: 'nbd-only', nbdClients: 0, gadget: null },
    model: { id: 'model', name: 'model', size: 1 << 20, regionSize: 65536, pendingActivation: null },
    disk: { path: '/tmp/disk', size: 1 << 20, ioErrors: 0 },
    stateDir: { path: '/tmp/state', freeBytes: null, writeError: null },
    daemon: { startedAt: new Date(0).toISOString(), pid: 1, version: 'test' },
    components: [],
  };
}

/** A small ApplianceService: records session ends and host events; status is editable. */
export class FakeApplianceService extends EventEmitter implements ApplianceService {
  current: ApplianceStatus = makeStatus();
  readonly ends: { reason: SessionEndReason; note: string | undefined; at: number }[] = [];
  readonly hostEvents: { what: string; at: number }[] = [];
  readonly history: SessionRecord[] = [];
  /** How long endSession takes on the clock (an eager restore takes a while). */
  endDurationMs = 0;
  /** When set, endSession rejects with this error. */
  endError: Error | null = null;

  constructor(private readonly clock: FakeClock) {
    super();
  }

  status(): ApplianceStatus {
    return this.current;
  }

  /** Changes the status and emits 'status', as the real service does. */
  update(change: (s: ApplianceStatus) => void): void {
    change(this.current);
    this.emit('status');
  }

  async endSession(reason: SessionEndReason, note?: string): Promise<SessionRecord> {
    this.ends.push({ reason, note, at: this.clock.now() });
    if (this.endDurationMs > 0) {
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, this.endDurationMs));
    }
    if (this.endError) throw this.endError;
    const record: SessionRecord = {
      number: this.current.session.number,
      startedAt: this.current.session.startedAt,
      endedAt: new Date(this.clock.now()).toISOString(),
      endReason: reason,
      mode: this.current.mode,
      regionsWritten: 0,
      bytesWritten: 0,
      sessionEndMs: 0,
      restoreMs: null,
      events: [],
    };
    this.history.push(record);
    this.current.session = { number: record.number + 1, startedAt: record.endedAt ?? '' };
    this.emit('session-ended', record);
    this.emit('status');
    return record;
  }

  async setMode(mode: ProtectionMode): Promise<void> {
    this.update((s) => (s.mode = mode));
  }

  async setRestoreMode(mode: RestoreMode): Promise<void> {
    this.update((s) => (s.restoreMode = mode));
  }

  async setHydrationRate(bytesPerSecond: number | null): Promise<void> {
    this.current.hydration.rateLimitBytesPerSecond = bytesPerSecond;
  }

  async regionMap(): Promise<EncodedRegionMap> {
    return encodeRegionMap(bytesStateSource(new Uint8Array(this.current.regions.total)));
  }

  sessions(): SessionRecord[] {
    return this.history;
  }

  recordHostEvent(what: string): void {
    this.hostEvents.push({ what, at: this.clock.now() });
  }

  addSessionEndParticipant(_p: SessionEndParticipant): void {}

  setHostConnection(state: HostConnectionState, gadget?: GadgetStatus | null): void {
    this.current.host.connection = state;
    if (gadget !== undefined) this.current.host.gadget = gadget;
  }
}
