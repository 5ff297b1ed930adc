/**
 * Everything the daemon checks before it changes anything: a start it refuses writes nothing
 * (the previous host session is not ended, write-log.bin and state.json stay as they were).
 *
 * Refusals (essential): the state directory (missing, not initialised, in use), state.json
 * (unreadable, corrupt, from a newer version), the NBD socket path, `--gadget on` where no
 * gadget can run. Settings files of optional parts never refuse a start: a bad gpio.json turns
 * GPIO off, a bad gadget.json gives the gadget its default settings; either is reported in the
 * status, the log and on the LED, and the host's disk is served all the same.
 */
import { lstatSync } from 'node:fs';
import { join } from 'node:path';
import { StateDir } from '../storage/state-dir.js';
import { StateStore } from '../state/state-store.js';
import { readJsonSettings } from '../state/settings-file.js';
import { GadgetSettingsSchema, type GadgetSettings } from '../gadget/gadget-settings.js';
import { gadgetAvailable } from '../gadget/gadget-probe.js';
import { defaultGadgetConfigDir, resolveGadgetDescription } from '../gadget/gadget-config.js';
import { GpioSettingsSchema, type GpioSettings } from '../gpio/gpio-settings.js';
import { SnapbackError } from '../errors.js';

export interface PreflightOptions {
  stateDir: string;
  nbdSocket?: string;
  gadget: 'auto' | 'on' | 'off';
  gpio: 'auto' | 'on' | 'off';
  configfsRoot?: string;
  sysRoot?: string;
}

/** What the daemon will start, decided before anything is written. */
export interface StartPlan {
  state: StateDir;
  nbdSocket: string;
  /** null: no gadget (off, or auto on a machine without one: `gadgetOffReason`). */
  gadget: { settings: GadgetSettings; problem: string | null } | null;
  gadgetOffReason: string | null;
  /** null: --gpio off. `settings` null: gpio.json is bad (`problem` says why) and GPIO stays off. */
  gpio: { settings: GpioSettings | null; problem: string | null } | null;
}

const GPIO_SETTINGS_FILE = 'gpio.json';
const GADGET_SETTINGS_FILE = 'gadget.json';

export async function preflight(opts: PreflightOptions): Promise<StartPlan> {
  const state = new StateDir(opts.stateDir);
  state.readConfig();
  state.assertNotInUse('serve');
  await StateStore.check(state.path);

  const nbdSocket = opts.nbdSocket ?? state.nbdSocket;
  const st = statOrNull(nbdSocket);
  if (st && !st.isSocket()) throw new SnapbackError('BAD_ARGUMENT', `${nbdSocket} exists and is not a socket; not replacing it`, { path: nbdSocket });

  let gadget: StartPlan['gadget'] = null;
  let gadgetOffReason: string | null = null;
  if (opts.gadget !== 'off') {
    const avail = gadgetAvailable(opts.configfsRoot, opts.sysRoot);
    if (!avail.available && opts.gadget === 'on') throw new SnapbackError('NOT_SUPPORTED', `--gadget on, but the USB gadget cannot run here: ${avail.reason}`);
    if (avail.available) gadget = gadgetSettingsOrDefaults(join(state.path, GADGET_SETTINGS_FILE));
    else gadgetOffReason = avail.reason ?? 'not available';
  } else gadgetOffReason = '--gadget off';

  let gpio: StartPlan['gpio'] = null;
  if (opts.gpio !== 'off') {
    try {
      gpio = { settings: readJsonSettings(join(state.path, GPIO_SETTINGS_FILE), GpioSettingsSchema), problem: null };
    } catch (err) {
      gpio = { settings: null, problem: `${(err as Error).message}; GPIO stays off until the file is fixed` };
    }
  }
  return { state, nbdSocket, gadget, gadgetOffReason, gpio };
}

/** gadget.json with its profile resolved; on any problem, the defaults and the problem. */
function gadgetSettingsOrDefaults(file: string): { settings: GadgetSettings; problem: string | null } {
  try {
    const settings = readJsonSettings(file, GadgetSettingsSchema);
    resolveGadgetDescription(settings.profile, settings.overrides, settings.configDir ?? defaultGadgetConfigDir());
    return { settings, problem: null };
  } catch (err) {
    return { settings: GadgetSettingsSchema.parse({}), problem: `${(err as Error).message}; the gadget runs with the default settings` };
  }
}

function statOrNull(path: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}
