/**
 * The fleet protocol: what an appliance and the console say to each other over MQTT, and the
 * enrollment exchange over HTTPS. Topic layout (docs/fleet.md describes it for broker admins):
 *
 *   snapback/NAME/availability  retained  "online" | "offline" (the last will says "offline")
 *   snapback/NAME/info          retained  ApplianceInfo: what the appliance is
 *   snapback/NAME/state         retained  ApplianceState: what it is doing (throttled)
 *   snapback/NAME/command       the console's requests (QoS 1, MQTT 5 response topic and
 *                               correlation data); only the console's account may publish here
 *   snapback/NAME/response      the appliance's answers, with the request's correlation data
 *
 * An appliance's broker account is its name; its ACL lets it publish only under its own
 * snapback/NAME/ (availability, info, state, response) and read only its own command topic.
 */
import { z } from 'zod';
import { protectionModeSchema, restoreModeSchema } from './common.js';
import { modelDownloadSchema } from './models.js';

export const TOPIC_ROOT = 'snapback';

/** An appliance name: also its broker user name and a topic level, so no '/', '+', '#'. */
export const applianceNameSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'an appliance name is 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');

export type FleetTopic = 'availability' | 'info' | 'state' | 'command' | 'response';

export function fleetTopic(name: string, topic: FleetTopic): string {
  return `${TOPIC_ROOT}/${name}/${topic}`;
}

export const availabilitySchema = z.enum(['online', 'offline']);
export type Availability = z.infer<typeof availabilitySchema>;

export const applianceInfoSchema = z.object({
  name: z.string(),
  version: z.string(),
  diskSize: z.number(),
  /** When this daemon started (ISO time). */
  startedAt: z.string(),
});
export type ApplianceInfo = z.infer<typeof applianceInfoSchema>;

export const applianceStateSchema = z.object({
  mode: protectionModeSchema,
  restoreMode: restoreModeSchema,
  session: z.object({ number: z.number(), startedAt: z.string() }),
  model: z.object({ id: z.string(), name: z.string() }),
  /** The active model's download while it is still arriving; null when it is complete. */
  download: modelDownloadSchema.nullable(),
  regions: z.object({ total: z.number(), pending: z.number(), writtenThisSession: z.number() }),
  /** Problems worth an administrator's attention (a failed component, a stalled download). */
  errors: z.array(z.string()),
  updatedAt: z.string(),
});
export type ApplianceState = z.infer<typeof applianceStateSchema>;

/** What the console may ask of an appliance. */
export const fleetCommandSchema = z.object({
  /** Unique per command: the appliance runs a command id at most once. */
  id: z.string().min(1).max(100),
  action: z.enum(['end-session', 'freeze', 'thaw', 'restore-mode', 'assign-model', 'set-maintenance']),
  /**
   * restore-mode: {mode: 'instant' | 'eager'}; assign-model: {url, name, lazy?, now?};
   * set-maintenance: {windows?: MaintenanceWindowInput[] (replaces the list), thawBoots?: number}.
   */
  args: z.record(z.unknown()).optional(),
});
export type FleetCommand = z.infer<typeof fleetCommandSchema>;

export const fleetResponseSchema = z.object({
  id: z.string(),
  ok: z.boolean(),
  result: z.unknown().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
});
export type FleetResponse = z.infer<typeof fleetResponseSchema>;

/** POST /api/enroll on the console: an appliance redeems its one-time code. */
export const enrollRequestSchema = z.object({ code: z.string().min(1), name: applianceNameSchema });
export type EnrollRequest = z.infer<typeof enrollRequestSchema>;

export const enrollReplySchema = z.object({
  /** mqtt:// or mqtts:// */
  mqttUrl: z.string(),
  username: z.string(),
  password: z.string(),
  /** PEM of the CA that signed the broker's certificate, when it is not a public one. */
  caCertificate: z.string().nullable(),
});
export type EnrollReply = z.infer<typeof enrollReplySchema>;
