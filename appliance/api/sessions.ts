/** Host sessions: POST /api/session/end, GET /api/sessions, GET /api/export/sessions.csv. */
import { z } from 'zod';
import { protectionModeSchema } from './common.js';
import { applianceStatusSchema } from './status.js';

/** Why a session ended; recorded in the session history. */
export const sessionEndReasonSchema = z.enum([
  'daemon-start', // the daemon started (the Pi booted, usually with the host)
  'api', // web UI, HTTP API or CLI
  'console', // the fleet console (over MQTT)
  'button', // the GPIO reset button
  'host-power-off', // the host's power LED went dark (GPIO sense)
  'usb-reconnect', // a USB power-cycle / re-enumeration seen on the UDC state
  'gadget-watchdog', // the gadget stalled and was rebuilt
  'maintenance', // a maintenance window discarded its changes
]);
export type SessionEndReason = z.infer<typeof sessionEndReasonSchema>;

export const sessionRecordSchema = z.object({
  number: z.number().int().nonnegative(),
  startedAt: z.string(),
  endedAt: z.string().nullable(),
  endReason: sessionEndReasonSchema.nullable(),
  mode: protectionModeSchema,
  regionsWritten: z.number().int().nonnegative(),
  bytesWritten: z.number().nonnegative(),
  /** Milliseconds from the end request until the host could read again. */
  sessionEndMs: z.number().nonnegative().nullable(),
  /** Milliseconds the background restore took after this session ended (null: not finished). */
  restoreMs: z.number().nonnegative().nullable(),
  /** Host-side transitions seen during the session (USB state, power LED, …). */
  events: z.array(z.object({ at: z.string(), what: z.string() })),
});
export type SessionRecord = z.infer<typeof sessionRecordSchema>;

export const sessionEndBodySchema = z.object({ wait: z.boolean().optional() }).strict();
export const sessionEndedReplySchema = z.object({ ended: sessionRecordSchema, status: applianceStatusSchema });
export const sessionListSchema = z.object({ sessions: z.array(sessionRecordSchema) });
