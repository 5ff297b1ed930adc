/**
 * Finds out whether this machine has usable Raspberry Pi GPIO, and if so builds the backend.
 * On a laptop or in CI the answer is a reason, which the GPIO component logs once and shows
 * in its status; the daemon runs on without GPIO.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';
import { OnoffGpioBackend } from './onoff-backend.js';
import { findRaspberryPiChip, gpioClassDir, readGpioChips } from './sysfs-chips.js';
export function detectGpio(sysfsRoot = '/sys') {
    const dir = gpioClassDir(sysfsRoot);
    if (!existsSync(dir)) {
        return { ok: false, reason: `no ${dir} (not a Raspberry Pi, or a kernel without GPIO sysfs)`, chips: [] };
    }
    const chips = readGpioChips(sysfsRoot);
    if (chips.length === 0)
        return { ok: false, reason: `no GPIO chips under ${dir}`, chips };
    const chip = findRaspberryPiChip(chips);
    if (!chip) {
        const labels = chips.map((c) => c.label).join(', ');
        return { ok: false, reason: `no Raspberry Pi GPIO chip found (chips: ${labels})`, chips };
    }
    const exportFile = join(dir, 'export');
    try {
        accessSync(exportFile, constants.W_OK);
    }
    catch (err) {
        const code = err.code ?? 'error';
        return {
            ok: false,
            reason: `cannot write ${exportFile} (${code}): run the daemon as root or in the gpio group`,
            chips,
        };
    }
    return { ok: true, backend: new OnoffGpioBackend(chip, sysfsRoot), chip, chips };
}
//# sourceMappingURL=detect-gpio.js.map