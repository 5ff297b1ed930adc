/**
 * The USB gadget's settings (DIR/gadget.json, docs/gadget.md): which profile to present, which
 * controller and nbd device to use, the USB session-end policy and the watchdog. Strict: an
 * unknown key is an error naming the key.
 */
import { z } from 'zod';
import { join } from 'node:path';
import { readJsonSettings } from '../state/settings-file.js';
import { UdcPolicySchema } from './udc-policy.js';

export const GadgetWatchdogSchema = z
  .object({
    enabled: z.boolean().default(true),
    /** How often the watchdog looks at the gadget. */
    intervalMs: z.number().int().min(10).max(60_000).default(2000),
    /**
     * A host that has started enumerating the gadget (reset, address) but has not configured
     * it after this long finds the gadget unresponsive: unbind and rebind it.
     */
    stuckEnumerationSeconds: z.number().min(1).max(600).default(20),
    /** At most this many rebinds per hour (a host that never configures us is not helped by more). */
    maxRebindsPerHour: z.number().int().min(1).max(120).default(6),
    /**
     * End the host session after a watchdog rebind. Off by default: a stall is not a definite
     * sign that the host restarted (invariant 4 in docs/architecture.md).
     */
    endSession: z.boolean().default(false),
  })
  .strict();

export const GadgetSettingsSchema = z
  .object({
    /** A profile from gadget-config/profiles/ (default, picky-bios, fixed-disk, read-only, …). */
    profile: z.string().default('default'),
    /** Fields laid over gadget.json and the profile, e.g. {"strings": {"serialnumber": "X"}}. */
    overrides: z.record(z.unknown()).default({}),
    /** Where gadget.json and profiles/ are; null: gadget-config/ next to the installed code. */
    configDir: z.string().nullable().default(null),
    /** The USB device controller; null: the only one (or the first) under /sys/class/udc. */
    udc: z.string().nullable().default(null),
    /** Always use this nbd device (e.g. "nbd3"); null: the first free one. */
    nbdDevice: z.string().regex(/^nbd\d+$/).nullable().default(null),
    /** Holds gadget.json (what is attached) so a restarted daemon can clean up after a crash. */
    runtimeDir: z.string().default('/run/snapback'),
    policy: UdcPolicySchema.default({}),
    watchdog: GadgetWatchdogSchema.default({}),
    /**
     * When the USB policy (or the watchdog) ends a session, the host is rebooting or gone:
     * also leave the bus (unbind the UDC) until the new session's medium is in, then connect
     * again, so the host's firmware enumerates a ready drive instead of finding one without a
     * medium. Session ends from the API, button or power sense only eject the medium.
     */
    reconnectOnUsbSessionEnd: z.boolean().default(true),
  })
  .strict();
export type GadgetSettings = z.output<typeof GadgetSettingsSchema>;
export type GadgetSettingsInput = z.input<typeof GadgetSettingsSchema>;


/**
 * Gadget settings from DIR/gadget.json when present (validated, strict), else the defaults.
 * Throws BAD_ARGUMENT naming the file and what is wrong.
 */
export function readGadgetSettings(stateDir: string): GadgetSettings {
  return readJsonSettings(join(stateDir, 'gadget.json'), GadgetSettingsSchema);
}
