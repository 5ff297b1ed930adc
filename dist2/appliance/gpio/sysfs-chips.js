/**
 * Reads the GPIO chips the kernel lists under <sysfs>/class/gpio and finds the one that holds
 * the Pi's BCM lines. Since kernel 6.6, sysfs GPIO numbers no longer start at 0: each chip gets
 * a base from 512 upwards, so BCM 17 is 529 on a Pi 4 (pinctrl-bcm2711, base 512) and 588 on
 * a Pi 5 (pinctrl-rp1, base 571). The base is read, never assumed.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SnapbackError } from '../errors.js';
/**
 * Labels of the chips that carry the 40-pin header's BCM lines, best first.
 * - pinctrl-rp1: Pi 5 (the RP1 south bridge; its 54 lines start with the header's GPIO0-27).
 * - pinctrl-bcm2711: Pi 4, Pi 400, CM4.
 * - pinctrl-bcm2835: Pi 0-3 (and Pi 4 on old kernels).
 * Other chips (raspberrypi-exp-gpio, brcmvirt-gpio, the Pi 5's gpio-brcmstb@… banks) are not the
 * header and are never chosen.
 */
export const RASPBERRY_PI_GPIO_LABELS = ['pinctrl-rp1', 'pinctrl-bcm2711', 'pinctrl-bcm2835'];
export function gpioClassDir(sysfsRoot) {
    return join(sysfsRoot, 'class', 'gpio');
}
/** Every readable gpiochip under <sysfsRoot>/class/gpio, by base. Missing directory: []. */
export function readGpioChips(sysfsRoot) {
    const dir = gpioClassDir(sysfsRoot);
    if (!existsSync(dir))
        return [];
    const chips = [];
    for (const name of readdirSync(dir)) {
        if (!/^gpiochip\d+$/.test(name))
            continue;
        const chip = readChip(join(dir, name), name);
        if (chip)
            chips.push(chip);
    }
    return chips.sort((a, b) => a.base - b.base);
}
function readChip(path, name) {
    try {
        const label = readFileSync(join(path, 'label'), 'utf8').trim();
        const base = Number.parseInt(readFileSync(join(path, 'base'), 'utf8').trim(), 10);
        const ngpio = Number.parseInt(readFileSync(join(path, 'ngpio'), 'utf8').trim(), 10);
        if (!Number.isInteger(base) || base < 0 || !Number.isInteger(ngpio) || ngpio <= 0)
            return null;
        return { name, label, base, ngpio };
    }
    catch {
        return null; // a chip whose attributes cannot be read is not one we can use
    }
}
/** The chip that holds the BCM lines, or null when none of the known labels is present. */
export function findRaspberryPiChip(chips) {
    for (const label of RASPBERRY_PI_GPIO_LABELS) {
        const chip = chips.find((c) => c.label === label);
        if (chip)
            return chip;
    }
    return null;
}
/** The sysfs number of BCM line `bcm` on `chip` (what goes into /sys/class/gpio/export). */
export function bcmToSysfs(chip, bcm) {
    if (!Number.isInteger(bcm) || bcm < 0 || bcm >= chip.ngpio) {
        throw new SnapbackError('OUT_OF_RANGE', `GPIO${bcm} is not a line of ${chip.label} (0…${chip.ngpio - 1})`, {
            bcm,
            chip: chip.label,
        });
    }
    return chip.base + bcm;
}
//# sourceMappingURL=sysfs-chips.js.map