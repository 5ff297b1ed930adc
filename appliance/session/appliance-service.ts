/**
 * What the outer components of the daemon (NBD server, HTTP API, web UI, GPIO, gadget) may ask
 * of the core. The core is the session manager (appliance/session/session-manager.ts); outer
 * components depend only on this interface, so each can be tested against a small fake.
 */
import type { EventEmitter } from 'node:events';
import type { EncodedRegionMap } from './region-map-codec.js';

import type { ApplianceStatus, GadgetStatus, HostConnectionState } from '../api/status.js';
import type { ProtectionMode, RestoreMode } from '../api/common.js';
import type { SessionEndReason, SessionRecord } from '../api/sessions.js';

// The wire types live in the API contract (appliance/api); re-exported for the core's users.
export type { ProtectionMode, RestoreMode } from '../api/common.js';
export type { ApplianceStatus, ComponentHealth, GadgetStatus, HostConnectionState, HydrationStatus } from '../api/status.js';
export type { SessionEndReason, SessionRecord } from '../api/sessions.js';

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

export { RegionState } from '../api/regions.js';

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
