/**
 * Whether this machine can run the USB gadget (`--gadget auto`): a USB device controller,
 * configfs's usb_gadget (or libcomposite to load), nbd, and nbd-client.
 */
import { accessSync, constants as fsConstants, existsSync, readFileSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const DEFAULT_CONFIGFS = '/sys/kernel/config';

/**
 * Whether `--gadget auto` should turn the gadget on: a USB device controller exists, and
 * configfs's usb_gadget (or a libcomposite module to load) and nbd are there.
 */
export function gadgetAvailable(configfsRoot: string = DEFAULT_CONFIGFS, sysRoot = '/sys'): { available: boolean; reason?: string } {
  let udcs: string[] = [];
  try {
    udcs = readdirSync(path.join(sysRoot, 'class', 'udc'));
  } catch {
    udcs = [];
  }
  if (udcs.length === 0) {
    return {
      available: false,
      reason: `no USB device controller in ${path.join(sysRoot, 'class', 'udc')} (on a Raspberry Pi: dtoverlay=dwc2,dr_mode=peripheral in config.txt)`,
    };
  }
  const release = os.release();
  const moduleKnown = (name: string): boolean => {
    if (existsSync(path.join(sysRoot, 'module', name))) return true;
    for (const f of ['modules.dep', 'modules.builtin']) {
      try {
        const text = readFileSync(path.join('/lib/modules', release, f), 'utf8');
        if (new RegExp(`/${name.replace(/_/g, '[_-]')}\\.ko`).test(text)) return true;
      } catch {
        // not there: try the next
      }
    }
    return false;
  };
  if (!existsSync(path.join(configfsRoot, 'usb_gadget')) && !moduleKnown('libcomposite')) {
    return { available: false, reason: `no ${path.join(configfsRoot, 'usb_gadget')} and no libcomposite module to load` };
  }
  if (!existsSync(path.join(sysRoot, 'block', 'nbd0')) && !moduleKnown('nbd')) {
    return { available: false, reason: 'no nbd devices and no nbd module to load' };
  }
  if (!onPath('nbd-client')) return { available: false, reason: 'nbd-client is not installed (apt install nbd-client)' };
  return { available: true };
}

function onPath(program: string): boolean {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    if (!dir) continue;
    try {
      accessSync(path.join(dir, program), fsConstants.X_OK);
      return true;
    } catch {
      // keep looking
    }
  }
  return false;
}

