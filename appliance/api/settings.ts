/** The appliance's settings: GET and POST /api/settings (also the state file's settings). */
import { z } from 'zod';
import { hydrationRateSchema } from './modes.js';
import { DEFAULT_MAINTENANCE_SETTINGS, maintenanceSettingsSchema } from './maintenance.js';

/**
 * The settings kept in the state file. The protection and restore modes are not here (the write
 * log's header holds them, and a copy here could only disagree); which host transitions end a
 * session is set where the hardware is described: gadget.json (USB) and gpio.json (power LED).
 */
export const settingsSchema = z
  .object({
    /** Background restore rate limit in bytes per second; null: unlimited. */
    hydrationRateBytesPerSecond: hydrationRateSchema,
    /** Maintenance windows and the thawed-boots counter (a state file without them reads as none). */
    maintenance: maintenanceSettingsSchema.default(DEFAULT_MAINTENANCE_SETTINGS),
  })
  .strict();
export type Settings = z.infer<typeof settingsSchema>;

export const settingsUpdateSchema = z
  .object({
    hydrationRateBytesPerSecond: hydrationRateSchema.optional(),
  })
  .strict()
  .refine((b) => b.hydrationRateBytesPerSecond !== undefined, 'nothing to change');
