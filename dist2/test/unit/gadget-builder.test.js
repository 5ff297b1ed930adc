/**
 * Building and tearing down the gadget in configfs, against SimulatedConfigfs (a temporary
 * directory that behaves like configfs where the builder depends on it — the behaviours
 * checked in the first tests were seen on Debian's 6.1 kernel in the QEMU rig).
 */
import { strict as assert } from 'node:assert';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GadgetBuilder } from '../../appliance/gadget/gadget-builder.js';
import { resolveGadgetDescription, inquiryString } from '../../appliance/gadget/gadget-config.js';
import { SimulatedConfigfs } from '../../appliance/gadget/simulated-configfs.js';
async function rejectsWith(p, code) {
    await assert.rejects(p, (e) => e.code === code);
}
describe('gadget: configfs builder', function () {
    let tmp;
    let cfg;
    let sys;
    let sim;
    let b;
    const desc = resolveGadgetDescription('default');
    const G = (...p) => path.join(cfg, 'usb_gadget', 'snapback', ...p);
    const read = (...p) => readFileSync(G(...p), 'utf8').replace(/\n$/, '');
    beforeEach(async function () {
        tmp = mkdtempSync(path.join(os.tmpdir(), 'gadget-builder-'));
        cfg = path.join(tmp, 'config');
        sys = path.join(tmp, 'sys');
        mkdirSync(path.join(sys, 'class', 'udc', 'dummy_udc.0'), { recursive: true });
        writeFileSync(path.join(sys, 'class', 'udc', 'dummy_udc.0', 'state'), 'not attached\n');
        sim = await SimulatedConfigfs.create({ root: cfg, sysRoot: sys });
        b = new GadgetBuilder(sim, cfg);
    });
    afterEach(function () {
        rmSync(tmp, { recursive: true, force: true });
    });
    describe('the simulated configfs behaves like configfs', function () {
        it('mkdir of a gadget and a function creates their attributes and default groups', async function () {
            await sim.mkdir(G());
            assert.ok(existsSync(G('idVendor')) && existsSync(G('UDC')) && existsSync(G('strings')) && existsSync(G('functions')));
            await sim.mkdir(G('functions', 'mass_storage.0'));
            for (const a of ['file', 'ro', 'removable', 'cdrom', 'nofua', 'inquiry_string'])
                assert.ok(existsSync(G('functions', 'mass_storage.0', 'lun.0', a)), a);
            await rejectsWith(sim.mkdir(G('functions', 'hid.0')), 'ENOENT');
            await rejectsWith(sim.writeAttr(G('no_such_attribute'), '1'), 'EACCES');
            await rejectsWith(sim.readAttr(G('functions', 'mass_storage.0', 'lun.0', 'forced_eject')), 'EACCES');
        });
        it('a linked function cannot be removed, nor its stall changed; UDC needs a real controller and a function', async function () {
            await b.create(desc, 'SER');
            await rejectsWith(sim.rmdir(G('functions', 'mass_storage.0')), 'EBUSY');
            await rejectsWith(sim.writeAttr(G('functions', 'mass_storage.0', 'stall'), '0'), 'EBUSY');
            await rejectsWith(sim.writeAttr(G('UDC'), 'nope.0'), 'ENODEV');
            await rejectsWith(sim.rmdir(G('configs', 'c.1')), 'ENOTEMPTY');
            await rejectsWith(sim.rmdir(G()), 'ENOTEMPTY');
        });
        it('a medium the host locked can only be force-ejected; ro cannot change while a medium is in', async function () {
            await b.create(desc, 'SER');
            await b.insertMedium('snapback', '/dev/nbd0');
            await rejectsWith(sim.writeAttr(G('functions', 'mass_storage.0', 'lun.0', 'ro'), '1'), 'EBUSY');
            await sim.setMediumLocked(G('functions', 'mass_storage.0', 'lun.0'), true);
            await rejectsWith(sim.writeAttr(G('functions', 'mass_storage.0', 'lun.0', 'file'), ''), 'EBUSY');
            await b.ejectMedium('snapback');
            assert.equal(read('functions', 'mass_storage.0', 'lun.0', 'file'), '');
        });
    });
    it('builds the description: ids, strings, lun flags before the file, link, then bind', async function () {
        await b.create(desc, 'ABC123');
        await b.insertMedium('snapback', '/dev/nbd3');
        await b.bind('snapback', 'dummy_udc.0');
        assert.equal(read('idVendor'), '0x1d6b');
        assert.equal(read('idProduct'), '0x0104');
        assert.equal(read('strings', '0x409', 'serialnumber'), 'ABC123');
        assert.equal(read('strings', '0x409', 'product'), 'Snapback Protected Disk');
        assert.equal(read('configs', 'c.1', 'MaxPower'), '250');
        assert.equal(read('configs', 'c.1', 'strings', '0x409', 'configuration'), 'Mass storage');
        assert.equal(read('functions', 'mass_storage.0', 'stall'), '1');
        assert.equal(read('functions', 'mass_storage.0', 'lun.0', 'removable'), '1');
        assert.equal(read('functions', 'mass_storage.0', 'lun.0', 'nofua'), '0');
        assert.equal(read('functions', 'mass_storage.0', 'lun.0', 'ro'), '0');
        assert.equal(read('functions', 'mass_storage.0', 'lun.0', 'inquiry_string'), inquiryString(desc.massStorage.inquiry));
        assert.equal(read('functions', 'mass_storage.0', 'lun.0', 'file'), '/dev/nbd3');
        assert.ok(lstatSync(G('configs', 'c.1', 'mass_storage.0')).isSymbolicLink());
        assert.equal(read('UDC'), 'dummy_udc.0');
        const order = sim.log.map((l) => l.split('=')[0].replace('usb_gadget/snapback/', ''));
        assert.ok(order.indexOf('functions/mass_storage.0/lun.0/removable') < order.indexOf('functions/mass_storage.0/lun.0/file'));
        assert.ok(order.indexOf('functions/mass_storage.0/stall') < order.indexOf('UDC'));
        assert.deepEqual(await b.snapshot('snapback'), { exists: true, udc: 'dummy_udc.0', luns: { 'mass_storage.0/lun.0': '/dev/nbd3' } });
    });
    it('the picky-bios profile is built as described', async function () {
        await b.create(resolveGadgetDescription('picky-bios'), 'S');
        assert.equal(read('functions', 'mass_storage.0', 'stall'), '0');
        assert.equal(read('functions', 'mass_storage.0', 'lun.0', 'removable'), '0');
        assert.equal(read('configs', 'c.1', 'MaxPower'), '100');
    });
    it('create, bind, eject and remove are idempotent', async function () {
        await b.create(desc, 'S');
        await b.create(desc, 'S'); // a second run changes nothing (and hits no EBUSY)
        await b.insertMedium('snapback', '/dev/nbd0');
        await b.bind('snapback', 'dummy_udc.0');
        await b.bind('snapback', 'dummy_udc.0');
        await b.ejectMedium('snapback');
        await b.ejectMedium('snapback');
        const snap = await b.remove('snapback');
        assert.equal(snap.udc, 'dummy_udc.0');
        assert.ok(!existsSync(G()));
        assert.deepEqual(await b.remove('snapback'), { exists: false, udc: '', luns: {} });
        await b.unbind('snapback');
        await b.ejectMedium('snapback');
    });
    it('tears down a gadget left half-built at any point of the build', async function () {
        // Every write/mkdir/symlink the build makes, failed in turn: the teardown must remove what is left.
        const ops = [
            { op: 'mkdir', match: /strings\/0x409$/ },
            { op: 'writeAttr', match: /serialnumber$/ },
            { op: 'mkdir', match: /functions\/mass_storage\.0$/ },
            { op: 'writeAttr', match: /lun\.0\/inquiry_string$/ },
            { op: 'mkdir', match: /configs\/c\.1$/ },
            { op: 'mkdir', match: /configs\/c\.1\/strings\/0x409$/ },
            { op: 'symlink', match: /configs\/c\.1\/mass_storage\.0$/ },
        ];
        for (const f of ops) {
            sim.failNext(f.op, f.match);
            await assert.rejects(b.create(desc, 'S'), /injected/);
            await b.remove('snapback');
            assert.ok(!existsSync(G()), `left something after a failure at ${f.op} ${f.match}`);
        }
        // Built, medium in, bound, and the host holding the medium locked: still removed.
        await b.create(desc, 'S');
        await b.insertMedium('snapback', '/dev/nbd1');
        await b.bind('snapback', 'dummy_udc.0');
        await sim.setMediumLocked(G('functions', 'mass_storage.0', 'lun.0'), true);
        const snap = await b.remove('snapback');
        assert.deepEqual(snap.luns, { 'mass_storage.0/lun.0': '/dev/nbd1' });
        assert.ok(!existsSync(G()));
    });
    it('removes extra luns and languages someone else added', async function () {
        await b.create(desc, 'S');
        await sim.mkdir(G('functions', 'mass_storage.0', 'lun.1'));
        await sim.mkdir(G('strings', '0x407'));
        await b.remove('snapback');
        assert.ok(!existsSync(G()));
    });
    it('reports every teardown failure but still tries every step', async function () {
        await b.create(desc, 'S');
        sim.failNext('unlink', /mass_storage\.0$/);
        await assert.rejects(b.remove('snapback'), /removing gadget snapback/);
        assert.ok(existsSync(G())); // the link stayed, so did the rest that depends on it
        await b.remove('snapback');
        assert.ok(!existsSync(G()));
    });
});
//# sourceMappingURL=gadget-builder.test.js.map