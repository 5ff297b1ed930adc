/** GET /api/status: what the appliance is doing. */
import { z } from 'zod';
import { protectionModeSchema, restoreModeSchema } from './common.js';

export const hostConnectionStateSchema = z.enum(['absent', 'attached', 'configured', 'suspended', 'nbd-only']);
export type HostConnectionState = z.infer<typeof hostConnectionStateSchema>;

export const gadgetStatusSchema = z.object({
  enabled: z.boolean(),
  udc: z.string().nullable(),
  udcState: z.string().nullable(),
  bound: z.boolean(),
  nbdDevice: z.string().nullable(),
  medium: z.enum(['inserted', 'ejected']),
  lastError: z.string().nullable(),
});
export type GadgetStatus = z.infer<typeof gadgetStatusSchema>;

export const hydrationStatusSchema = z.object({
  running: z.boolean(),
  /** Regions pending when the current restore began (0 when none ran). */
  totalAtStart: z.number(),
  /** Regions restored since the current restore began. */
  done: z.number(),
  pendingRegions: z.number(),
  bytesPerSecond: z.number(),
  etaSeconds: z.number().nullable(),
  /** Rate limit in bytes per second; null for unlimited. */
  rateLimitBytesPerSecond: z.number().nullable(),
  /** Why the background restore last stopped short (e.g. no space left); null when it did not. */
  lastError: z.string().nullable(),
});
export type HydrationStatus = z.infer<typeof hydrationStatusSchema>;

/**
 * One part of the daemon (storage, state, sessions, nbd, http, gadget, gpio) as the status shows
 * it. Essential parts serve the host's disk: the daemon does not run without them. An optional
 * part that fails is 'failed' with its problem, and everything else runs on; a part that runs
 * with a problem (a gadget on its default settings) is 'running' with the problem.
 */
export const componentHealthSchema = z.object({
  name: z.string(),
  /** The disk cannot be served without it. */
  essential: z.boolean(),
  state: z.enum(['running', 'off', 'failed']),
  problem: z.string().nullable(),
});
export type ComponentHealth = z.infer<typeof componentHealthSchema>;

export const applianceStatusSchema = z.object({
  mode: protectionModeSchema,
  restoreMode: restoreModeSchema,
  session: z.object({ number: z.number(), startedAt: z.string() }),
  regions: z.object({ total: z.number(), regionSize: z.number(), writtenThisSession: z.number(), pending: z.number(), clean: z.number() }),
  bytesChangedThisSession: z.number(),
  hydration: hydrationStatusSchema,
  host: z.object({ connection: hostConnectionStateSchema, nbdClients: z.number(), gadget: gadgetStatusSchema.nullable() }),
  model: z.object({
    id: z.string(),
    name: z.string(),
    size: z.number(),
    regionSize: z.number(),
    /** The model an activation will put in force at the next session end; null when none is pending. */
    pendingActivation: z.object({ id: z.string(), name: z.string() }).nullable(),
  }),
  disk: z.object({ path: z.string(), size: z.number(), ioErrors: z.number() }),
  /** writeError: the last write of the state file (settings, history, audit) failed; null once one succeeds. */
  stateDir: z.object({ path: z.string(), freeBytes: z.number().nullable(), writeError: z.string().nullable() }),
  daemon: z.object({ startedAt: z.string(), pid: z.number(), version: z.string() }),
  /** The daemon's parts and their health, in start order. */
  components: z.array(componentHealthSchema),
});
export type ApplianceStatus = z.infer<typeof applianceStatusSchema>;
