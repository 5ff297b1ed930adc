/**
 * Maintenance windows: schedules that thaw the disk for a while, power the host on, let it
 * update, shut it down, then capture the result as a new model (and activate it) or discard it.
 * Also "thawed for the next N boots". GET/POST/DELETE /api/maintenance…, the settings' part that
 * holds them, and the fleet command set-maintenance.
 */
import { z } from 'zod';

/** A MAC address, six hex pairs separated by ':' or '-'. */
export const macAddressSchema = z.string().regex(/^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$/, 'a MAC address is six hex pairs such as 00:11:22:33:44:55');

/** Wake-on-LAN instead of the GPIO power press to power the host on. */
export const wakeOnLanSchema = z
  .object({
    mac: macAddressSchema,
    /** Where the magic packet goes (a broadcast address, or the host's); default 255.255.255.255. */
    address: z.string().min(1).max(253).default('255.255.255.255'),
    /** UDP port; default 9 (discard). */
    port: z.number().int().min(1).max(65535).default(9),
  })
  .strict();
export type WakeOnLan = z.infer<typeof wakeOnLanSchema>;

/** What a window does with the host's changes once the host is off. */
export const maintenanceAfterSchema = z.enum(['capture', 'discard']);

export const maintenanceWindowFields = {
  /** 5-field cron (minute hour day-of-month month day-of-week) in `timeZone`. */
  schedule: z.string().min(1).max(200),
  /** An IANA time zone, e.g. Europe/Berlin; default UTC. */
  timeZone: z.string().min(1).max(100).default('UTC'),
  /** How long the host runs (updates) before it is asked to shut down. */
  durationMinutes: z.number().int().min(1).max(24 * 60),
  /** After an ACPI power-button press, how long the host may take to shut down before it is forced off. */
  graceSeconds: z.number().int().min(10).max(3600).default(300),
  /** capture: the disk becomes a new model version, activated; discard: frozen again, the next session end restores. */
  after: maintenanceAfterSchema.default('discard'),
  /** The captured model's name; {date} (YYYY-MM-DD), {time} (HHMM) and {window} are replaced. */
  modelName: z.string().min(1).max(100).default('{window}-{date}-{time}'),
  /** Power on with a Wake-on-LAN packet instead of the GPIO power press; null: GPIO. */
  wakeOnLan: wakeOnLanSchema.nullable().default(null),
};

/** A window as it is added (the id and defaults are filled in). */
export const maintenanceWindowInputSchema = z
  .object({
    /** A short name: letters, digits, '-', '_'; unique. */
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$/, 'a window name is 1-40 letters, digits, "-" or "_"'),
    ...maintenanceWindowFields,
  })
  .strict();
export type MaintenanceWindowInput = z.input<typeof maintenanceWindowInputSchema>;
export type MaintenanceWindow = z.infer<typeof maintenanceWindowInputSchema>;

/** The settings' part that holds the maintenance windows and the thawed-boots counter. */
export const maintenanceSettingsSchema = z
  .object({
    windows: z.array(maintenanceWindowInputSchema).max(20),
    /** Session ends left before the disk is frozen again; 0: none (the mode is as set). */
    thawBoots: z.number().int().min(0).max(1000),
  })
  .strict();
export type MaintenanceSettings = z.infer<typeof maintenanceSettingsSchema>;
export const DEFAULT_MAINTENANCE_SETTINGS: MaintenanceSettings = { windows: [], thawBoots: 0 };

export const maintenanceStepSchema = z.enum([
  'checking',
  'thawing',
  'powering-on',
  'running',
  'shutting-down',
  'forcing-off',
  'capturing',
  'discarding',
]);
export type MaintenanceStep = z.infer<typeof maintenanceStepSchema>;

export const maintenanceResultSchema = z.enum(['captured', 'discarded', 'skipped', 'failed', 'interrupted']);

/** A window that ran (or was skipped): the last few are kept. */
export const maintenanceRunSchema = z.object({
  window: z.string(),
  startedAt: z.string(),
  endedAt: z.string().nullable(),
  step: maintenanceStepSchema.nullable(),
  result: maintenanceResultSchema.nullable(),
  /** Why it was skipped or failed, or what it captured. */
  message: z.string().nullable(),
});
export type MaintenanceRun = z.infer<typeof maintenanceRunSchema>;

export const maintenanceStatusSchema = z.object({
  windows: z.array(
    z.object({
      window: maintenanceWindowInputSchema,
      /** The next start (ISO time); null when the schedule never fires again. */
      nextRun: z.string().nullable(),
    }),
  ),
  thawBoots: z.number(),
  running: maintenanceRunSchema.nullable(),
  recent: z.array(maintenanceRunSchema),
});
export type MaintenanceStatus = z.infer<typeof maintenanceStatusSchema>;

export const maintenanceRemoveParamsSchema = z.object({ name: z.string().min(1) }).strict();
export const thawBootsBodySchema = z.object({ boots: z.number().int().min(0).max(1000) }).strict();

/** The fleet command set-maintenance: the whole list of windows (replacing it) and/or the counter. */
export const setMaintenanceArgsSchema = z
  .object({
    windows: z.array(maintenanceWindowInputSchema).max(20).optional(),
    thawBoots: z.number().int().min(0).max(1000).optional(),
  })
  .strict()
  .refine((a) => a.windows !== undefined || a.thawBoots !== undefined, 'nothing to set (windows and/or thawBoots)');
export type SetMaintenanceArgs = z.infer<typeof setMaintenanceArgsSchema>;
