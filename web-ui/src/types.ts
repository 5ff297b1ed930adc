/**
 * The JSON shapes the browser sees. They mirror appliance/session/appliance-service.ts and the
 * web UI endpoints (appliance/http/ui-routes.ts); the front end compiles on its own (DOM lib),
 * so they are repeated here rather than imported.
 */
export type ProtectionMode = 'frozen' | 'thawed';
export type RestoreMode = 'instant' | 'eager';
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
  totalAtStart: number;
  done: number;
  pendingRegions: number;
  bytesPerSecond: number;
  etaSeconds: number | null;
  rateLimitBytesPerSecond: number | null;
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
  stateDir: { path: string; freeBytes: number | null };
  daemon: { startedAt: string; pid: number; version: string };
}

export interface SessionRecord {
  number: number;
  startedAt: string;
  endedAt: string | null;
  endReason: string | null;
  mode: ProtectionMode;
  regionsWritten: number;
  bytesWritten: number;
  sessionEndMs: number | null;
  restoreMs: number | null;
  events: { at: string; what: string }[];
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  details?: Record<string, unknown>;
}

export interface Settings {
  hydrationRateBytesPerSecond: number | null;
}

export interface ApiTokenInfo {
  id: string;
  name: string;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
}

export interface ModelVerifyStatus {
  state: 'idle' | 'running' | 'passed' | 'failed';
  startedAt: string | null;
  finishedAt: string | null;
  regionsTotal: number;
  regionsDone: number;
  bytesPerSecond: number;
  badRegions: number[];
  error: string | null;
}

export interface AuthState {
  passwordSet: boolean;
  authenticated: boolean;
  via: 'session' | 'token' | 'cli' | null;
  actor: string | null;
  csrfToken: string | null;
  minPasswordLength: number;
}

/** Region states in the compact map (RegionState in the daemon). */
export const REGION_CLEAN = 0;
export const REGION_WRITTEN = 1;
export const REGION_PENDING = 2;
