/**
 * Builds the gadget described by a GadgetDescription in configfs, and tears it down again.
 *
 *   <configfs>/usb_gadget/<name>/
 *     idVendor idProduct bcdDevice bcdUSB      strings/0x409/{manufacturer,product,serialnumber}
 *     functions/mass_storage.0/stall           functions/mass_storage.0/lun.0/{removable,cdrom,ro,nofua,inquiry_string,file}
 *     configs/c.1/{MaxPower,bmAttributes}      configs/c.1/strings/0x409/configuration
 *     configs/c.1/mass_storage.0 -> ../../functions/mass_storage.0
 *     UDC                                      (the controller's name binds the gadget)
 *
 * Order matters to configfs: the lun's flags before its file (ro/cdrom cannot change while a
 * file is open), `stall` before the function is linked, the link before the bind. Teardown is
 * the reverse and tolerates any half-built state (a crash can stop a build anywhere).
 */
import * as path from 'node:path';
import { SnapbackError } from '../errors.js';
import { inquiryString } from './gadget-config.js';
export const FUNCTION_DIR = 'mass_storage.0';
export const CONFIG_DIR = 'c.1';
const LANG = '0x409';
export class GadgetBuilder {
    fs;
    configfsRoot;
    constructor(fs, 
    /** Where configfs is mounted (normally /sys/kernel/config). */
    configfsRoot) {
        this.fs = fs;
        this.configfsRoot = configfsRoot;
    }
    get gadgetsDir() {
        return path.join(this.configfsRoot, 'usb_gadget');
    }
    gadgetDir(name) {
        return path.join(this.gadgetsDir, name);
    }
    lunDir(name) {
        return path.join(this.gadgetDir(name), 'functions', FUNCTION_DIR, 'lun.0');
    }
    async snapshot(name) {
        const g = this.gadgetDir(name);
        if (!(await this.fs.exists(g)))
            return { exists: false, udc: '', luns: {} };
        const udc = await this.readOr(path.join(g, 'UDC'), '');
        const luns = {};
        for (const fn of await this.listOr(path.join(g, 'functions'))) {
            if (!fn.startsWith('mass_storage.'))
                continue;
            for (const lun of await this.listOr(path.join(g, 'functions', fn))) {
                if (!/^lun\.\d+$/.test(lun))
                    continue;
                luns[`${fn}/${lun}`] = await this.readOr(path.join(g, 'functions', fn, lun, 'file'), '');
            }
        }
        return { exists: true, udc, luns };
    }
    /** Creates the gadget's directories and attributes (no medium, not bound). */
    async create(desc, serial) {
        const fs = this.fs;
        if (!(await fs.exists(this.gadgetsDir))) {
            throw new SnapbackError('NOT_SUPPORTED', `${this.gadgetsDir} does not exist: is configfs mounted and libcomposite loaded?`);
        }
        const g = this.gadgetDir(desc.name);
        await fs.mkdir(g);
        await this.set(path.join(g, 'idVendor'), desc.idVendor);
        await this.set(path.join(g, 'idProduct'), desc.idProduct);
        await this.set(path.join(g, 'bcdDevice'), desc.bcdDevice);
        await this.set(path.join(g, 'bcdUSB'), desc.bcdUSB);
        const strings = path.join(g, 'strings', LANG);
        await fs.mkdir(strings);
        await this.set(path.join(strings, 'manufacturer'), desc.strings.manufacturer);
        await this.set(path.join(strings, 'product'), desc.strings.product);
        await this.set(path.join(strings, 'serialnumber'), serial);
        const fn = path.join(g, 'functions', FUNCTION_DIR);
        await fs.mkdir(fn);
        await this.set(path.join(fn, 'stall'), desc.massStorage.stall ? '1' : '0');
        const lun = path.join(fn, 'lun.0');
        const ms = desc.massStorage;
        await this.set(path.join(lun, 'removable'), ms.removable ? '1' : '0');
        await this.set(path.join(lun, 'cdrom'), ms.cdrom ? '1' : '0');
        await this.set(path.join(lun, 'ro'), ms.ro ? '1' : '0');
        await this.set(path.join(lun, 'nofua'), ms.nofua ? '1' : '0');
        await this.set(path.join(lun, 'inquiry_string'), inquiryString(ms.inquiry), (cur) => cur.trimEnd() === inquiryString(ms.inquiry).trimEnd());
        const cfg = path.join(g, 'configs', CONFIG_DIR);
        await fs.mkdir(cfg);
        await this.set(path.join(cfg, 'MaxPower'), String(desc.config.maxPowerMa));
        await this.set(path.join(cfg, 'bmAttributes'), `0x${(0x80 | (desc.config.selfPowered ? 0x40 : 0)).toString(16)}`, (cur) => Number(cur) === (0x80 | (desc.config.selfPowered ? 0x40 : 0)));
        await fs.mkdir(path.join(cfg, 'strings', LANG));
        await this.set(path.join(cfg, 'strings', LANG, 'configuration'), desc.config.label);
        const link = path.join(cfg, FUNCTION_DIR);
        if (!(await fs.isSymlink(link)))
            await fs.symlink(fn, link);
    }
    /** Points lun.0 at a block device (inserts the medium). */
    async insertMedium(name, file) {
        await this.fs.writeAttr(path.join(this.lunDir(name), 'file'), file);
    }
    /** Ejects lun.0's medium even if the host has locked it (forced_eject); idempotent. */
    async ejectMedium(name) {
        const lun = this.lunDir(name);
        if (!(await this.fs.exists(lun)))
            return;
        if ((await this.readOr(path.join(lun, 'file'), '')) === '')
            return;
        await this.fs.writeAttr(path.join(lun, 'forced_eject'), '1');
    }
    async medium(name) {
        return this.readOr(path.join(this.lunDir(name), 'file'), '');
    }
    async bind(name, udc) {
        const file = path.join(this.gadgetDir(name), 'UDC');
        if ((await this.readOr(file, '')) === udc)
            return;
        await this.fs.writeAttr(file, udc);
    }
    async unbind(name) {
        const file = path.join(this.gadgetDir(name), 'UDC');
        if (!(await this.fs.exists(file)))
            return;
        if ((await this.readOr(file, '')) === '')
            return;
        await this.fs.writeAttr(file, '');
    }
    async boundUdc(name) {
        return this.readOr(path.join(this.gadgetDir(name), 'UDC'), '');
    }
    /**
     * Removes the gadget, whatever state it is in: unbind, eject every lun, unlink functions
     * from configurations, remove configurations, functions, strings, the gadget. Every step
     * is tried; the first error is thrown at the end. Returns what the luns were backed by (so
     * the caller can release those devices).
     */
    async remove(name) {
        const snap = await this.snapshot(name);
        if (!snap.exists)
            return snap;
        const g = this.gadgetDir(name);
        const errors = [];
        const attempt = async (fn) => {
            try {
                await fn();
            }
            catch (err) {
                errors.push(err);
            }
        };
        await attempt(() => this.unbind(name));
        for (const [lun, file] of Object.entries(snap.luns)) {
            if (file !== '')
                await attempt(() => this.fs.writeAttr(path.join(g, 'functions', lun, 'forced_eject'), '1'));
        }
        for (const c of await this.listOr(path.join(g, 'configs'))) {
            const cdir = path.join(g, 'configs', c);
            for (const entry of await this.listOr(cdir)) {
                if (await this.fs.isSymlink(path.join(cdir, entry)))
                    await attempt(() => this.fs.unlink(path.join(cdir, entry)));
            }
            for (const lang of await this.listOr(path.join(cdir, 'strings')))
                await attempt(() => this.fs.rmdir(path.join(cdir, 'strings', lang)));
            await attempt(() => this.fs.rmdir(cdir));
        }
        for (const f of await this.listOr(path.join(g, 'functions'))) {
            const fdir = path.join(g, 'functions', f);
            // Extra luns (lun.1…) are user-made groups; lun.0 goes with the function.
            for (const lun of await this.listOr(fdir)) {
                if (/^lun\.[1-9]\d*$/.test(lun))
                    await attempt(() => this.fs.rmdir(path.join(fdir, lun)));
            }
            await attempt(() => this.fs.rmdir(fdir));
        }
        for (const lang of await this.listOr(path.join(g, 'strings')))
            await attempt(() => this.fs.rmdir(path.join(g, 'strings', lang)));
        await attempt(() => this.fs.rmdir(g));
        if (errors.length > 0) {
            const first = errors[0];
            throw new SnapbackError('IO_ERROR', `removing gadget ${name}: ${first instanceof Error ? first.message : String(first)}`, {
                errors: errors.length,
            }, { cause: first });
        }
        return snap;
    }
    async set(file, value, same) {
        const cur = await this.readOr(file, null);
        if (cur !== null && (same ? same(cur) : cur.trim() === value))
            return;
        await this.fs.writeAttr(file, value);
    }
    async readOr(file, fallback) {
        try {
            return await this.fs.readAttr(file);
        }
        catch {
            return fallback;
        }
    }
    async listOr(dir) {
        try {
            return await this.fs.readdir(dir);
        }
        catch {
            return [];
        }
    }
}
//# sourceMappingURL=gadget-builder.js.map