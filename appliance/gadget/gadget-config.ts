/**
 * The declarative description of the USB gadget (gadget-config/gadget.json) and its named
 * compatibility profiles (gadget-config/profiles/<name>.json: a partial description laid over
 * the base). docs/gadget.md explains every field and why each profile differs.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';

const hex16 = z
  .string()
  .regex(/^0x[0-9a-fA-F]{1,4}$/, 'a 16-bit hex number like 0x1d6b')
  .transform((s) => `0x${s.slice(2).toLowerCase().padStart(4, '0')}`);

/** Printable ASCII (the SCSI INQUIRY and USB strings we set are plain text). */
const ascii = (max: number) => z.string().max(max).regex(/^[\x20-\x7e]*$/, 'printable ASCII only');

export const GadgetDescriptionSchema = z
  .object({
    /** The gadget's directory under usb_gadget/. */
    name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('snapback'),
    idVendor: hex16.default('0x1d6b'),
    idProduct: hex16.default('0x0104'),
    bcdDevice: hex16.default('0x0100'),
    bcdUSB: hex16.default('0x0200'),
    strings: z
      .object({
        manufacturer: ascii(126).default('Snapback'),
        product: ascii(126).default('Snapback Protected Disk'),
        /** "auto": derived from the Pi's serial number (or /etc/machine-id elsewhere). */
        serialnumber: ascii(126).default('auto'),
      })
      .strict()
      .default({}),
    config: z
      .object({
        label: ascii(126).default('Mass storage'),
        /** bMaxPower in mA (the configfs MaxPower attribute). */
        maxPowerMa: z.number().int().min(0).max(500).default(250),
        selfPowered: z.boolean().default(false),
      })
      .strict()
      .default({}),
    massStorage: z
      .object({
        /** May the function halt bulk endpoints (STALL) to report errors. */
        stall: z.boolean().default(true),
        /** The RMB bit: the medium is removable (lets the host see a medium change). */
        removable: z.boolean().default(true),
        cdrom: z.boolean().default(false),
        /** Expose the disk write-protected. */
        ro: z.boolean().default(false),
        /**
         * Must stay false: with nofua=1 the gadget would acknowledge FUA writes before they reach
         * the daemon, breaking invariant 2 (docs/architecture.md).
         */
        nofua: z.literal(false, {
          errorMap: () => ({ message: 'nofua must be false: FUA writes must reach the daemon (invariant 2 in docs/architecture.md)' }),
        }).default(false),
        inquiry: z
          .object({
            vendor: ascii(8).default('Snapback'),
            product: ascii(16).default('Protected Disk'),
            revision: ascii(4).default('0100'),
          })
          .strict()
          .default({}),
        /** The sector size the host sees (the nbd device's block size). */
        logicalBlockSize: z.union([z.literal(512), z.literal(4096)]).default(512),
      })
      .strict()
      .default({}),
  })
  .strict();

export type GadgetDescription = z.output<typeof GadgetDescriptionSchema>;

export const GadgetProfileSchema = z
  .object({
    description: z.string(),
    /** Why this profile differs from the default: which hosts need it. */
    why: z.string(),
    overrides: z.record(z.unknown()).default({}),
  })
  .strict();
export type GadgetProfile = z.output<typeof GadgetProfileSchema>;

/** The SCSI INQUIRY string configfs takes: vendor (8) + product (16) + revision (4), padded. */
export function inquiryString(inq: GadgetDescription['massStorage']['inquiry']): string {
  return inq.vendor.padEnd(8, ' ') + inq.product.padEnd(16, ' ') + inq.revision.padEnd(4, ' ');
}

/** Finds gadget-config/ next to the installed code (repository or /opt/snapback). */
export function defaultGadgetConfigDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'gadget-config');
    if (existsSync(path.join(candidate, 'gadget.json'))) return candidate;
    const up = path.dirname(dir);
    if (up === dir) {
      throw new SnapbackError('BAD_ARGUMENT', 'cannot find gadget-config/gadget.json above the installed code; set gadget.configDir');
    }
    dir = up;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Lays `over` onto `base`, object by object; arrays and scalars replace. */
export function deepMerge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over === undefined ? base : over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = deepMerge(base[k], v);
  return out;
}

function readJson(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SnapbackError('BAD_ARGUMENT', `cannot read ${file}: ${(err as Error).message}`, undefined, { cause: err });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new SnapbackError('BAD_ARGUMENT', `${file} is not valid JSON: ${(err as Error).message}`, undefined, { cause: err });
  }
}


export function listGadgetProfiles(configDir: string = defaultGadgetConfigDir()): string[] {
  const dir = path.join(configDir, 'profiles');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

export function loadGadgetProfile(name: string, configDir: string = defaultGadgetConfigDir()): GadgetProfile {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new SnapbackError('BAD_ARGUMENT', `bad gadget profile name: ${JSON.stringify(name)}`);
  const file = path.join(configDir, 'profiles', `${name}.json`);
  if (!existsSync(file)) {
    throw new SnapbackError('BAD_ARGUMENT', `unknown gadget profile ${name} (known: ${listGadgetProfiles(configDir).join(', ')})`);
  }
  const parsed = GadgetProfileSchema.safeParse(readJson(file));
  if (!parsed.success) throw new SnapbackError('BAD_ARGUMENT', `gadget profile ${name}: ${formatZodIssues(parsed.error)}`);
  return parsed.data;
}

/**
 * The description to build: gadget.json, then the profile's overrides, then the settings'
 * overrides. Any error names the file or field; nothing half-valid is returned.
 */
export function resolveGadgetDescription(
  profile: string,
  overrides: Record<string, unknown> = {},
  configDir: string = defaultGadgetConfigDir(),
): GadgetDescription {
  const base = readJson(path.join(configDir, 'gadget.json'));
  const prof = loadGadgetProfile(profile, configDir);
  const merged = deepMerge(deepMerge(base, prof.overrides), overrides);
  const parsed = GadgetDescriptionSchema.safeParse(merged);
  if (!parsed.success) {
    throw new SnapbackError('BAD_ARGUMENT', `gadget description (profile ${profile}): ${formatZodIssues(parsed.error)}`);
  }
  return parsed.data;
}

/**
 * The serial number for "auto": the Pi's own (device tree), else a hash of /etc/machine-id,
 * else a fixed fallback. Always 12–16 upper-case hex digits, stable across boots.
 */
export function autoSerial(readFile: (p: string) => string | null = tryRead): string {
  const pi = readFile('/sys/firmware/devicetree/base/serial-number') ?? readFile('/proc/device-tree/serial-number');
  const piSerial = pi?.replace(/\0/g, '').trim();
  if (piSerial && /^[0-9a-fA-F]{8,16}$/.test(piSerial)) return piSerial.toUpperCase().padStart(16, '0');
  const machineId = readFile('/etc/machine-id')?.trim();
  if (machineId) return createHash('sha256').update(`snapback:${machineId}`).digest('hex').slice(0, 16).toUpperCase();
  return '0000534E41504241';
}

function tryRead(p: string): string | null {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return null;
  }
}
