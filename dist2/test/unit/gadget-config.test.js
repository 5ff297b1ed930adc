/**
 * The declarative gadget description (gadget-config/) and its compatibility profiles.
 */
import { strict as assert } from 'node:assert';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import { GadgetDescriptionSchema, autoSerial, defaultGadgetConfigDir, inquiryString, listGadgetProfiles, loadGadgetProfile, resolveGadgetDescription, } from '../../appliance/gadget/gadget-config.js';
describe('gadget: configuration and profiles', function () {
    const dir = defaultGadgetConfigDir();
    it('finds gadget-config/ next to the code, with the documented profiles', function () {
        assert.ok(dir.endsWith('gadget-config'));
        const profiles = listGadgetProfiles(dir);
        for (const p of ['default', 'picky-bios', 'fixed-disk', 'read-only'])
            assert.ok(profiles.includes(p), `no profile ${p}`);
        for (const p of profiles) {
            const prof = loadGadgetProfile(p, dir);
            assert.ok(prof.description.length > 10 && prof.why.length > 20, `profile ${p} does not say what it is for and why`);
            resolveGadgetDescription(p, {}, dir); // every profile resolves to a valid description
        }
    });
    it('the default: removable, stall, nofua=0, read-write, 512-byte sectors', function () {
        const d = resolveGadgetDescription('default', {}, dir);
        assert.equal(d.name, 'snapback');
        assert.equal(d.idVendor, '0x1d6b');
        assert.equal(d.idProduct, '0x0104');
        assert.deepEqual({ stall: d.massStorage.stall, removable: d.massStorage.removable, ro: d.massStorage.ro, nofua: d.massStorage.nofua, cdrom: d.massStorage.cdrom }, { stall: true, removable: true, ro: false, nofua: false, cdrom: false });
        assert.equal(d.massStorage.logicalBlockSize, 512);
        assert.equal(d.strings.serialnumber, 'auto');
    });
    it('picky-bios: not removable, no stalls, 100 mA; fixed-disk: not removable; read-only: ro', function () {
        const picky = resolveGadgetDescription('picky-bios', {}, dir);
        assert.equal(picky.massStorage.removable, false);
        assert.equal(picky.massStorage.stall, false);
        assert.equal(picky.config.maxPowerMa, 100);
        const fixed = resolveGadgetDescription('fixed-disk', {}, dir);
        assert.equal(fixed.massStorage.removable, false);
        assert.equal(fixed.massStorage.stall, true);
        assert.equal(resolveGadgetDescription('read-only', {}, dir).massStorage.ro, true);
    });
    it('settings overrides lay over the profile, field by field', function () {
        const d = resolveGadgetDescription('picky-bios', { strings: { serialnumber: 'LAB-PC-07' }, massStorage: { inquiry: { product: 'Lab disk' } } }, dir);
        assert.equal(d.strings.serialnumber, 'LAB-PC-07');
        assert.equal(d.strings.manufacturer, 'Snapback');
        assert.equal(d.massStorage.inquiry.product, 'Lab disk');
        assert.equal(d.massStorage.inquiry.vendor, 'Snapback');
        assert.equal(d.massStorage.removable, false); // from the profile
    });
    it('refuses what would be unsafe or invalid, with a message naming the field', function () {
        const err = (overrides, profile = 'default') => {
            try {
                resolveGadgetDescription(profile, overrides, dir);
            }
            catch (e) {
                assert.ok(isSnapbackError(e, 'BAD_ARGUMENT'), String(e));
                return e.message;
            }
            assert.fail(`accepted ${JSON.stringify(overrides)}`);
        };
        assert.match(err({ massStorage: { nofua: true } }), /nofua.*invariant 2/);
        assert.match(err({ idVendor: 'abcd' }), /idVendor/);
        assert.match(err({ massStorage: { inquiry: { vendor: 'TooLongVendor' } } }), /inquiry\.vendor/);
        assert.match(err({ config: { maxPowerMa: 900 } }), /maxPowerMa/);
        assert.match(err({ massStorage: { removeable: false } }), /Unrecognized key/);
        assert.match(err({ massStorage: { logicalBlockSize: 1024 } }), /logicalBlockSize/);
        assert.match(err({}, 'no-such-profile'), /unknown gadget profile no-such-profile/);
        assert.match(err({}, '../etc'), /bad gadget profile name/);
    });
    it('a broken gadget.json or profile gets a clear error', function () {
        const tmp = mkdtempSync(path.join(os.tmpdir(), 'gadget-config-'));
        try {
            mkdirSync(path.join(tmp, 'profiles'));
            writeFileSync(path.join(tmp, 'gadget.json'), '{ "name": ');
            writeFileSync(path.join(tmp, 'profiles', 'default.json'), JSON.stringify({ description: 'x', why: 'y', overrides: {} }));
            assert.throws(() => resolveGadgetDescription('default', {}, tmp), /gadget\.json is not valid JSON/);
            writeFileSync(path.join(tmp, 'gadget.json'), '{}');
            writeFileSync(path.join(tmp, 'profiles', 'default.json'), JSON.stringify({ description: 'x', overrides: {} }));
            assert.throws(() => resolveGadgetDescription('default', {}, tmp), /gadget profile default: why/);
        }
        finally {
            rmSync(tmp, { recursive: true, force: true });
        }
    });
    it('the SCSI INQUIRY string is vendor(8) + product(16) + revision(4)', function () {
        const d = GadgetDescriptionSchema.parse({});
        const s = inquiryString(d.massStorage.inquiry);
        assert.equal(s.length, 28);
        assert.equal(s, 'Snapback' + 'Protected Disk  ' + '0100');
        assert.equal(inquiryString({ vendor: 'A', product: 'B', revision: '1' }), 'A       B               1   ');
    });
    it('"auto" serial: the Pi\'s serial number, else a hash of the machine id, else a constant', function () {
        const files = (m) => (p) => m[p] ?? null;
        assert.equal(autoSerial(files({ '/sys/firmware/devicetree/base/serial-number': '10000000abcdef12\0' })), '10000000ABCDEF12');
        assert.equal(autoSerial(files({ '/proc/device-tree/serial-number': 'abcdef12' })), '00000000ABCDEF12');
        const h = autoSerial(files({ '/etc/machine-id': '0123456789abcdef0123456789abcdef\n' }));
        assert.match(h, /^[0-9A-F]{16}$/);
        assert.equal(h, autoSerial(files({ '/etc/machine-id': '0123456789abcdef0123456789abcdef\n' })));
        assert.match(autoSerial(files({})), /^[0-9A-F]{16}$/);
    });
});
//# sourceMappingURL=gadget-config.test.js.map