/**
 * The appliance's link to a fleet console: GET and POST /api/management (the Settings page).
 * The link itself speaks the fleet protocol (fleet.ts); this is how it is configured and seen.
 */
import { z } from 'zod';
import { applianceNameSchema } from './fleet.js';

/** A broker (mqtt://, mqtts://) or a console to enroll with (https://; http:// for tests on loopback). */
export const managementUrlSchema = z
  .string()
  .url('a URL: mqtt://HOST:PORT, mqtts://HOST:PORT or the console https://HOST[:PORT]')
  .refine((u) => /^(mqtts?|https?):\/\//i.test(u), 'the management URL must start with mqtt://, mqtts:// (a broker) or https:// (a console to enroll with)');

/**
 * off: no management URL; enrolling: redeeming the enrollment code at the console; connecting:
 * the first connection to the broker; connected; reconnecting: the connection was lost or
 * refused and is retried with backoff; failed: it cannot work without a change (the
 * enrollment code was refused, no code given).
 */
export const managementConnectionStateSchema = z.enum(['off', 'enrolling', 'connecting', 'connected', 'reconnecting', 'failed']);
export type ManagementConnectionState = z.infer<typeof managementConnectionStateSchema>;

export const managementStatusSchema = z.object({
  /** What was configured (a broker or a console); null: not managed. */
  url: z.string().nullable(),
  /** The name this appliance has in the fleet (its broker account and topic level). */
  applianceName: z.string(),
  /** The broker in use (after an enrollment, the one the console named). */
  broker: z.string().nullable(),
  /** The broker account; null: anonymous. */
  username: z.string().nullable(),
  /** When the enrollment code was redeemed at the console; null: not enrolled. */
  enrolledAt: z.string().nullable(),
  connection: z.object({
    state: managementConnectionStateSchema,
    /** Why it is not connected (the last error); null when connected or off. */
    problem: z.string().nullable(),
    since: z.string(),
    lastConnectedAt: z.string().nullable(),
  }),
});
export type ManagementStatus = z.infer<typeof managementStatusSchema>;

/** POST /api/management: null url switches management off. */
export const managementUpdateSchema = z
  .object({
    url: managementUrlSchema.nullable(),
    /** Default: the host name. */
    applianceName: applianceNameSchema.nullable().optional(),
    /** With a console URL: the one-time code the console issued for this appliance. */
    enrollmentCode: z.string().min(1).max(200).optional(),
    /** With a broker URL: its login, when the broker wants one. */
    username: z.string().min(1).max(200).optional(),
    password: z.string().min(1).max(1000).optional(),
  })
  .strict();
export type ManagementUpdate = z.infer<typeof managementUpdateSchema>;
