/** GPIO: GET /api/gpio (pins, button, LEDs, host power) and POST /api/gpio/power. */
import { z } from 'zod';

export const POWER_ACTIONS = ['on', 'off', 'force-off', 'reset', 'restore-now'] as const;
export const powerActionSchema = z.enum(POWER_ACTIONS);
export type PowerAction = z.infer<typeof powerActionSchema>;

export const gpioRoleSchema = z.enum(['button', 'status-led', 'power-switch', 'reset-switch', 'power-led']);
export type GpioRole = z.infer<typeof gpioRoleSchema>;

export const gpioPinStatusSchema = z.object({
  role: gpioRoleSchema,
  bcm: z.number(),
  /** The kernel's sysfs number (base + BCM), when the backend is sysfs. */
  sysfs: z.number().nullable(),
  direction: z.enum(['in', 'out']),
  activeLow: z.boolean(),
  /** Physical level right now; null when the line is not in use (see error). */
  level: z.union([z.literal(0), z.literal(1)]).nullable(),
  /** Level after polarity: pressed / lit / button held. */
  active: z.boolean().nullable(),
  /** Why the line could not be used. */
  error: z.string().nullable(),
});
export type GpioPinStatus = z.infer<typeof gpioPinStatusSchema>;

export const ledPatternNameSchema = z.enum(['off', 'steady', 'slow-blink', 'double-blink', 'fast-blink', 'warning']);
export const hostPowerStateSchema = z.enum(['unknown', 'on', 'dark', 'off']);
export const powerPhaseSchema = z.enum([
  'pressing-power',
  'pressing-reset',
  'holding-power',
  'waiting-for-off',
  'forcing-off',
  'waiting-for-forced-off',
  'ending-session',
  'powering-on',
  'waiting-for-on',
]);
export const powerResultSchema = z.enum(['ok', 'skipped', 'failed', 'aborted']);

export const powerControllerStatusSchema = z.object({
  wired: z.object({ power: z.boolean(), reset: z.boolean(), led: z.boolean() }),
  /** busy: an action runs; error: the last action failed and nothing has fixed it since. */
  state: z.enum(['idle', 'busy', 'error']),
  running: z.object({ action: powerActionSchema, actor: z.string(), phase: powerPhaseSchema.nullable() }).nullable(),
  /** The outstanding failure (state 'error'). */
  error: z.object({ action: powerActionSchema, message: z.string(), at: z.string() }).nullable(),
  last: z.object({ action: powerActionSchema, actor: z.string(), result: powerResultSchema, at: z.string() }).nullable(),
});

export const gpioStatusSchema = z.object({
  enabled: z.boolean(),
  available: z.boolean(),
  /** Why GPIO is off (when available is false). */
  reason: z.string().nullable(),
  backend: z
    .object({
      kind: z.string().describe("'onoff-sysfs', 'simulated', …"),
      /** The chip that holds the BCM lines, when the backend knows it. */
      chip: z.object({ label: z.string(), base: z.number(), ngpio: z.number() }).nullable(),
    })
    .nullable(),
  pins: z.array(gpioPinStatusSchema),
  button: z.object({
    wired: z.boolean(),
    pressed: z.boolean().nullable(),
    /** A session end asked for by a short press, armed until the host next powers off. */
    armedEnd: z.object({ by: z.string(), since: z.string() }).nullable(),
    warning: z.boolean(),
  }),
  led: z.object({ wired: z.boolean(), pattern: ledPatternNameSchema, lit: z.boolean().nullable() }),
  host: z.object({ senseWired: z.boolean(), power: hostPowerStateSchema, blinking: z.boolean(), lit: z.boolean().nullable() }),
  power: powerControllerStatusSchema,
  session: z.object({ ending: z.boolean(), error: z.object({ message: z.string(), at: z.string() }).nullable() }),
});
export type GpioStatus = z.infer<typeof gpioStatusSchema>;

export const powerRequestSchema = z.object({ action: powerActionSchema }).strict();
export const powerAcceptedSchema = z.object({ accepted: z.literal(true), action: powerActionSchema, status: gpioStatusSchema });
