/**
 * GpioBackend on onoff, i.e. on the kernel's legacy sysfs GPIO interface (/sys/class/gpio).
 * onoff always uses /sys/class/gpio; the chip (label, base) comes from detectGpio, which reads
 * the same directory. onoff is loaded on first export, so merely importing this module on a
 * machine without GPIO (or without onoff's native epoll addon) costs nothing.
 *
 * Replaceable: sysfs GPIO is deprecated upstream; a backend on the GPIO character device
 * (libgpiod, /dev/gpiochipN, where line offsets are the BCM numbers and no base is needed)
 * can implement GpioBackend instead, and nothing above it changes. Note the sysfs interface
 * cannot set pull-up/pull-down resistors (see docs/gpio.md for the config.txt line).
 */
import { createRequire } from 'node:module';
import { SnapbackError, fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';
import { bcmToSysfs } from './sysfs-chips.js';
const log = childLogger('gpio');
const requireCjs = createRequire(import.meta.url);
let onoffModule = null;
function loadOnoff() {
    onoffModule ??= requireCjs('onoff');
    return onoffModule;
}
export class OnoffGpioBackend {
    sysfsRoot;
    info;
    lineCount;
    chip;
    lines = new Map();
    /** `sysfsRoot` must be '/sys': onoff cannot be pointed elsewhere (tests use the simulator). */
    constructor(chip, sysfsRoot = '/sys') {
        this.sysfsRoot = sysfsRoot;
        this.chip = chip;
        this.lineCount = chip.ngpio;
        this.info = { kind: 'onoff-sysfs', chip: { label: chip.label, base: chip.base, ngpio: chip.ngpio } };
    }
    /** The sysfs number onoff is given for BCM line `bcm`. */
    sysfsNumber(bcm) {
        return bcmToSysfs(this.chip, bcm);
    }
    export(bcm, config) {
        if (this.sysfsRoot !== '/sys') {
            throw new SnapbackError('NOT_SUPPORTED', `onoff only drives /sys/class/gpio, not ${this.sysfsRoot}/class/gpio`);
        }
        if (this.lines.has(bcm))
            throw new SnapbackError('BUSY', `GPIO${bcm} is already exported`, { bcm });
        const number = this.sysfsNumber(bcm);
        const { Gpio } = loadOnoff();
        try {
            const gpio = config.direction === 'out'
                ? new Gpio(number, config.initial === 1 ? 'high' : 'low')
                : new Gpio(number, 'in', config.edge ?? 'both');
            this.lines.set(bcm, { gpio, watchers: new Map() });
        }
        catch (err) {
            throw fromSystemError(err, `export GPIO${bcm} (sysfs ${number})`);
        }
    }
    unexport(bcm) {
        const line = this.lines.get(bcm);
        if (!line)
            return;
        this.lines.delete(bcm);
        try {
            line.gpio.unexport();
        }
        catch (err) {
            log.warn({ err, bcm }, 'unexport failed');
        }
    }
    read(bcm) {
        try {
            return this.line(bcm).gpio.readSync();
        }
        catch (err) {
            throw fromSystemError(err, `read GPIO${bcm}`);
        }
    }
    write(bcm, level) {
        try {
            this.line(bcm).gpio.writeSync(level);
        }
        catch (err) {
            throw fromSystemError(err, `write GPIO${bcm}`);
        }
    }
    watch(bcm, cb) {
        const line = this.line(bcm);
        if (line.watchers.has(cb))
            return;
        const wrapped = (err, value) => {
            if (err) {
                log.warn({ err, bcm }, 'GPIO edge error');
                return;
            }
            cb(value);
        };
        line.watchers.set(cb, wrapped);
        line.gpio.watch(wrapped);
    }
    unwatch(bcm, cb) {
        const line = this.lines.get(bcm);
        if (!line)
            return;
        if (!cb) {
            line.gpio.unwatchAll();
            line.watchers.clear();
            return;
        }
        const wrapped = line.watchers.get(cb);
        if (!wrapped)
            return;
        line.gpio.unwatch(wrapped);
        line.watchers.delete(cb);
    }
    line(bcm) {
        const line = this.lines.get(bcm);
        if (!line)
            throw new SnapbackError('BAD_ARGUMENT', `GPIO${bcm} is not exported`, { bcm });
        return line;
    }
}
//# sourceMappingURL=onoff-backend.js.map