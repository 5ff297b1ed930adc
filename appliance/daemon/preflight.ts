/**
 * Everything the daemon checks before it changes anything: a start it refuses writes nothing
 * (the previous host session is not ended, write-log.bin and state.json stay as they were).
 *
 * Refusals (essential): the state directory (missing, not initialised, in use), state.json
 * (unreadable, corrupt, from a newer version), the NBD socket path (not a socket, or another
 * server listening on it), the NBD TCP listener (off loopback without TLS or --nbd-insecure),
 * the NBD TLS files, `--gadget on` where no
 * gadget can run. Settings files of optional parts never refuse a start: a bad gpio.json turns
 * GPIO off, a bad gadget.json gives the gadget its default settings; either is reported in the
 * status, the log and on the LED, and the host's disk is served all the same. gadget.json is
 * checked under `--gadget auto` also where no gadget can run, and reported the same way.
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
import { checkSocketFree, checkTcpListen } from '../nbd/listen-policy.js';
import { loadNbdTls, type NbdTlsFiles, type NbdTlsOptions } from '../nbd/tls-config.js';
import { SnapbackError } from '../errors.js';

export interface PreflightOptions {
  stateDir: string;
  nbdSocket?: string;
  nbdListen?: { host: string; port: number };
  nbdTls?: NbdTlsFiles;
  nbdInsecure?: boolean;
  gadget: 'auto' | 'on' | 'off';
  gpio: 'auto' | 'on' | 'off';
  configfsRoot?: string;
  sysRoot?: string;
}

/** What the daemon will start, decided before anything is written. */
export interface StartPlan {
  state: StateDir;
  nbdSocket: string;
  /** The gadget's own NBD socket (reserved slots, never dropped as idle): DIR/gadget-nbd.sock. */
  gadgetNbdSocket: string;
  /** The TLS session options of the TCP listener; null: plain text (loopback, or --nbd-insecure). */
  nbdTls: NbdTlsOptions | null;
  /** null: no gadget (off, or auto on a machine without one: `gadgetOffReason`). */
  gadget: { settings: GadgetSettings; problem: string | null } | null;
  gadgetOffReason: string | null;
  /**
   * With `--gadget auto` on a machine without a gadget: what is wrong with gadget.json (null: it
   * is absent or good), so that a misspelt key is reported here too and not first on the Pi.
   */
  gadgetOffProblem: string | null;
  /** null: --gpio off. `settings` null: gpio.json is bad (`problem` says why) and GPIO stays off. */
  gpio: { settings: GpioSettings | null; problem: string | null } | null;
}

const GPIO_SETTINGS_FILE = 'gpio.json';
const GADGET_SETTINGS_FILE = 'gadget.json';
const GADGET_NBD_SOCKET = 'gadget-nbd.sock';

export async function preflight(opts: PreflightOptions): Promise<StartPlan> {
  const state = new StateDir(opts.stateDir);
  state.readConfig();
  state.assertNotInUse('serve');
  await StateStore.check(state.path);

  const nbdSocket = opts.nbdSocket ?? state.nbdSocket;
  const st = statOrNull(nbdSocket);
  if (st && !st.isSocket()) throw new SnapbackError('BAD_ARGUMENT', `${nbdSocket} exists and is not a socket; not replacing it`, { path: nbdSocket });
  await checkSocketFree(nbdSocket);
  const gadgetNbdSocket = join(state.path, GADGET_NBD_SOCKET);
  await checkSocketFree(gadgetNbdSocket);
  const nbdTls = loadNbdTls(opts.nbdTls ?? {});
  if (opts.nbdListen) checkTcpListen(opts.nbdListen.host, nbdTls !== null, opts.nbdInsecure ?? false);

  let gadget: StartPlan['gadget'] = null;
  let gadgetOffReason: string | null = null;
  let gadgetOffProblem: string | null = null;
  if (opts.gadget !== 'off') {
    const avail = gadgetAvailable(opts.configfsRoot, opts.sysRoot);
    if (!avail.available && opts.gadget === 'on') throw new SnapbackError('NOT_SUPPORTED', `--gadget on, but the USB gadget cannot run here: ${avail.reason}`);
    const settings = gadgetSettingsOrDefaults(join(state.path, GADGET_SETTINGS_FILE));
    if (avail.available) gadget = { settings: settings.settings, problem: settings.problem && `${settings.problem}; the gadget runs with the default settings` };
    else {
      gadgetOffReason = avail.reason ?? 'not available';
      gadgetOffProblem = settings.problem && `${settings.problem}; where a gadget can run, it would run with the default settings`;
    }
  } else gadgetOffReason = '--gadget off';

  let gpio: StartPlan['gpio'] = null;
  if (opts.gpio !== 'off') {
    try {
      gpio = { settings: readJsonSettings(join(state.path, GPIO_SETTINGS_FILE), GpioSettingsSchema), problem: null };
    } catch (err) {
      gpio = { settings: null, problem: `${(err as Error).message}; GPIO stays off until the file is fixed` };
    }
  }
  return { state, nbdSocket, gadgetNbdSocket, nbdTls, gadget, gadgetOffReason, gadgetOffProblem, gpio };
}

/** gadget.json with its profile resolved; on any problem, the defaults and what is wrong with the file. */
function gadgetSettingsOrDefaults(file: string): { settings: GadgetSettings; problem: string | null } {
  try {
    const settings = readJsonSettings(file, GadgetSettingsSchema);
    resolveGadgetDescription(settings.profile, settings.overrides, settings.configDir ?? defaultGadgetConfigDir());
    return { settings, problem: null };
  } catch (err) {
    return { settings: GadgetSettingsSchema.parse({}), problem: (err as Error).message };
  }
}

function statOrNull(path: string): ReturnType<typeof lstatSync> | null {
  try {
    return lstatSync(path);
  } catch {
    return null;
  }
}
