/** The appliance's settings: GET and POST /api/settings (also the state file's settings). */
import { z } from 'zod';
import { protectionModeSchema, restoreModeSchema } from './common.js';
import { hydrationRateSchema } from './modes.js';

/** Which host-side transitions end a session. */
export const sessionEndPolicySchema = z
  .object({
    /**
     * 'power-cycle': the USB bus went away (`not attached`) and the host enumerated again; a host
     * that only suspends (sleeps) keeps its session.
     * 'bus-reset': also a bus reset without losing power (a warm reboot that keeps USB powered);
     * some hosts reset the bus when they wake, so this can end a session on resume.
     * 'ignore': USB transitions are recorded but never end a session.
     */
    usb: z.enum(['power-cycle', 'bus-reset', 'ignore']),
    /** The host's power LED going dark (GPIO sense, when wired) ends the session. */
    hostPowerOff: z.boolean(),
  })
  .strict();
export type SessionEndPolicy = z.infer<typeof sessionEndPolicySchema>;

export const settingsSchema = z
  .object({
    /** Mirror of the write log's header (the log is the truth); shown before the daemon is up. */
    protectionMode: protectionModeSchema,
    /** Mirror of the restore mode. */
    restoreMode: restoreModeSchema,
    /** Background restore rate limit in bytes per second; null: unlimited. */
    hydrationRateBytesPerSecond: hydrationRateSchema,
    sessionEndPolicy: sessionEndPolicySchema,
  })
  .strict();
export type Settings = z.infer<typeof settingsSchema>;

export const settingsUpdateSchema = z
  .object({
    hydrationRateBytesPerSecond: hydrationRateSchema.optional(),
    sessionEndPolicy: sessionEndPolicySchema.partial().strict().optional(),
  })
  .strict()
  .refine((b) => b.hydrationRateBytesPerSecond !== undefined || b.sessionEndPolicy !== undefined, 'nothing to change');
export type SettingsUpdate = z.infer<typeof settingsUpdateSchema>;
