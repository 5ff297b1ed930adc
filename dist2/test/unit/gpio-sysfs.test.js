/** BCM → sysfs numbers against recorded sysfs trees (test/fixtures/sysfs), and detection. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { detectGpio } from '../../appliance/gpio/detect-gpio.js';
import { OnoffGpioBackend } from '../../appliance/gpio/onoff-backend.js';
import { bcmToSysfs, findRaspberryPiChip, readGpioChips } from '../../appliance/gpio/sysfs-chips.js';
import { isSnapbackError } from '../../appliance/errors.js';
// dist/test/unit → repository root
const fixture = (name) => fileURLToPath(new URL(`../../../test/fixtures/sysfs/${name}`, import.meta.url));
describe('gpio: BCM to sysfs mapping', () => {
    it('Pi 4 (kernel 6.6+): pinctrl-bcm2711 at base 512, not the expander or brcmvirt chips', () => {
        const chips = readGpioChips(fixture('pi4'));
        assert.deepEqual(chips.map((c) => [c.label, c.base, c.ngpio]), [
            ['pinctrl-bcm2711', 512, 58],
            ['raspberrypi-exp-gpio', 570, 8],
            ['brcmvirt-gpio', 578, 2],
        ]);
        const chip = findRaspberryPiChip(chips);
        assert.equal(chip?.label, 'pinctrl-bcm2711');
        assert.ok(chip);
        assert.equal(bcmToSysfs(chip, 0), 512);
        assert.equal(bcmToSysfs(chip, 17), 529);
        assert.equal(bcmToSysfs(chip, 27), 539);
    });
    it('Pi 5: pinctrl-rp1 at base 571, after the four gpio-brcmstb banks', () => {
        const chips = readGpioChips(fixture('pi5'));
        assert.equal(chips.length, 5);
        assert.equal(chips[0]?.label, 'gpio-brcmstb@107d517c00'); // lowest base, but not the header
        const chip = findRaspberryPiChip(chips);
        assert.ok(chip);
        assert.deepEqual([chip.name, chip.label, chip.base, chip.ngpio], ['gpiochip571', 'pinctrl-rp1', 571, 54]);
        assert.equal(bcmToSysfs(chip, 17), 588);
        assert.equal(bcmToSysfs(chip, 22), 593);
    });
    it('older kernels: pinctrl-bcm2835 at base 0 (sysfs number = BCM number)', () => {
        const chip = findRaspberryPiChip(readGpioChips(fixture('pi3-legacy')));
        assert.ok(chip);
        assert.equal(chip.label, 'pinctrl-bcm2835');
        assert.equal(bcmToSysfs(chip, 17), 17);
    });
    it('refuses BCM numbers the chip does not have', () => {
        const chip = findRaspberryPiChip(readGpioChips(fixture('pi5')));
        assert.ok(chip);
        assert.throws(() => bcmToSysfs(chip, 54), (e) => isSnapbackError(e, 'OUT_OF_RANGE'));
        assert.throws(() => bcmToSysfs(chip, -1), (e) => isSnapbackError(e, 'OUT_OF_RANGE'));
    });
    it('detectGpio on the recorded trees builds an onoff backend with the right numbers', () => {
        for (const [tree, base] of [['pi4', 512], ['pi5', 571]]) {
            const found = detectGpio(fixture(tree));
            assert.ok(found.ok, tree);
            assert.equal(found.chip.base, base);
            assert.ok(found.backend instanceof OnoffGpioBackend);
            assert.equal(found.backend.sysfsNumber(17), base + 17);
            assert.equal(found.backend.info.kind, 'onoff-sysfs');
            assert.deepEqual(found.backend.info.chip, { label: found.chip.label, base, ngpio: found.chip.ngpio });
            // onoff can only drive the real /sys: it refuses a recorded tree instead of touching /sys.
            assert.throws(() => found.backend.export(17, { direction: 'in' }), (e) => isSnapbackError(e, 'NOT_SUPPORTED'));
        }
    });
});
describe('gpio: detection on machines without Raspberry Pi GPIO', () => {
    let dir;
    beforeEach(() => {
        dir = mkdtempSync(join(tmpdir(), 'snapback-gpio-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));
    it('no class/gpio directory', () => {
        const found = detectGpio(dir);
        assert.equal(found.ok, false);
        assert.match(found.ok ? '' : found.reason, /^no .*class\/gpio/);
    });
    it('class/gpio without chips', () => {
        mkdirSync(join(dir, 'class', 'gpio'), { recursive: true });
        const found = detectGpio(dir);
        assert.equal(found.ok, false);
        assert.match(found.ok ? '' : found.reason, /no GPIO chips/);
    });
    it('only foreign chips (a PC with a USB GPIO expander)', () => {
        const chipDir = join(dir, 'class', 'gpio', 'gpiochip512');
        mkdirSync(chipDir, { recursive: true });
        writeFileSync(join(chipDir, 'label'), 'ftdi-cbus\n');
        writeFileSync(join(chipDir, 'base'), '512\n');
        writeFileSync(join(chipDir, 'ngpio'), '4\n');
        const found = detectGpio(dir);
        assert.equal(found.ok, false);
        assert.match(found.ok ? '' : found.reason, /no Raspberry Pi GPIO chip found \(chips: ftdi-cbus\)/);
    });
    it('skips chips whose attributes cannot be read', () => {
        mkdirSync(join(dir, 'class', 'gpio', 'gpiochip0'), { recursive: true });
        assert.deepEqual(readGpioChips(dir), []);
    });
});
//# sourceMappingURL=gpio-sysfs.test.js.map