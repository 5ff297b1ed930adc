/**
 * What the outer components of the daemon (NBD server, HTTP API, web UI, GPIO, gadget) may ask
 * of the core. The core is the session manager (appliance/session/session-manager.ts); outer
 * components depend only on this interface, so each can be tested against a small fake.
 */
import type { EventEmitter } from 'node:events';
import type { EncodedRegionMap } from './region-map-codec.js';

export type ProtectionMode = 'frozen' | 'thawed';
export type RestoreMode = 'instant' | 'eager';

/** Why a session ended; recorded in the session history. */
export type SessionEndReason =
  | 'daemon-start' // the daemon started (the Pi booted, usually with the host)
  | 'api' // web UI, HTTP API or CLI
  | 'button' // the GPIO reset button
  | 'host-power-off' // the host's power LED went dark (GPIO sense)
  | 'usb-reconnect' // a USB power-cycle / re-enumeration seen on the UDC state
  | 'gadget-watchdog'; // the gadget stalled and was rebuilt

export type HostConnectionState = 'absent' | 'attached' | 'configured' | 'suspended' | 'nbd-only';

export interface GadgetStatus {
  enabled: boolean;
  udc: string | null;
  udcState: string | null;
  bound: boolean;
  nbdDevice: string | null;
  medium: 'inserted' | 'ejected';
  lastError: string | null;
}

export interface HydrationStatus {
  running: boolean;
  /** Regions pending when the current restore began (0 when none ran). */
  totalAtStart: number;
  /** Regions restored since the current restore began. */
  done: number;
  pendingRegions: number;
  bytesPerSecond: number;
  etaSeconds: number | null;
  /** Rate limit in bytes per second; null for unlimited. */
  rateLimitBytesPerSecond: number | null;
  /** Why the background restore last stopped short (e.g. no space left); null when it did not. */
  lastError: string | null;
}

/**
 * One part of the daemon (storage, state, sessions, nbd, http, gadget, gpio) as the status shows
 * it. Essential parts serve the host's disk: the daemon does not run without them. An optional
 * part that fails is 'failed' with its problem, and everything else runs on; a part that runs
 * with a problem (a gadget on its default settings) is 'running' with the problem.
 */
export interface ComponentHealth {
  name: string;
  essential: boolean;
  state: 'running' | 'off' | 'failed';
  problem: string | null;
}

export interface ApplianceStatus {
  mode: ProtectionMode;
  restoreMode: RestoreMode;
  session: { number: number; startedAt: string };
  regions: { total: number; regionSize: number; writtenThisSession: number; pending: number; clean: number };
  bytesChangedThisSession: number;
  hydration: HydrationStatus;
  host: { connection: HostConnectionState; nbdClients: number; gadget: GadgetStatus | null };
  model: { id: string; name: string; size: number; regionSize: number };
  disk: { path: string; size: number; ioErrors: number };
  /** writeError: the last write of the state file (settings, history, audit) failed; null once one succeeds. */
  stateDir: { path: string; freeBytes: number | null; writeError: string | null };
  daemon: { startedAt: string; pid: number; version: string };
  /** The daemon's parts and their health, in start order. */
  components: ComponentHealth[];
}

export interface SessionRecord {
  number: number;
  startedAt: string;
  endedAt: string | null;
  endReason: SessionEndReason | null;
  mode: ProtectionMode;
  regionsWritten: number;
  bytesWritten: number;
  /** Milliseconds from the end request until the host could read again. */
  sessionEndMs: number | null;
  /** Milliseconds the background restore took after this session ended (null: not finished). */
  restoreMs: number | null;
  /** Host-side transitions seen during the session (USB state, power LED, …). */
  events: { at: string; what: string }[];
}

/**
 * Something that must let go of the disk while a session ends (the USB gadget ejects its medium
 * and drops the kernel nbd device, so no page cache of the old session survives) and take it
 * back afterwards.
 */
export interface SessionEndParticipant {
  readonly name: string;
  quiesce(): Promise<void>;
  resume(): Promise<void>;
}

/** Region states in the region map (two bits each on the wire). */
export const RegionState = { clean: 0, written: 1, pending: 2 } as const;

export interface ApplianceService extends EventEmitter {
  status(): ApplianceStatus;
  /** Ends the host session; resolves when the host may read again (eager: after the restore). */
  endSession(reason: SessionEndReason, note?: string): Promise<SessionRecord>;
  setMode(mode: ProtectionMode): Promise<void>;
  setRestoreMode(mode: RestoreMode): Promise<void>;
  /** Saves the background restore's rate limit in the settings and applies it; null: unlimited. */
  setHydrationRate(bytesPerSecond: number | null): Promise<void>;
  /** The region map, compact (region-map-codec.ts): runs or two bits per region, values from RegionState. */
  regionMap(): Promise<EncodedRegionMap>;
  sessions(): SessionRecord[];
  /** Records a host-side transition (USB state, power LED) in the current session's history. */
  recordHostEvent(what: string): void;
  addSessionEndParticipant(p: SessionEndParticipant): void;
  setHostConnection(state: HostConnectionState, gadget?: GadgetStatus | null): void;
}
// Events emitted by an ApplianceService:
//   'status'        () — something in status() changed (throttled by the emitter)
//   'regions'       (runs: RegionRun[]) — these regions now have these states ([start, length, state])
//   'regions-replaced' () — the whole map changed (a session ended): fetch regionMap() again
//   'session-ended' (record: SessionRecord)
