/**
 * A configfs stand-in on an ordinary directory, for unit tests and for running the gadget code
 * on a machine without a USB device controller. It behaves like configfs where the gadget code
 * depends on it:
 *  - mkdir of a gadget, a function (mass_storage.*), a configuration or a strings language
 *    creates the kernel's attribute files and default groups (lun.0, strings/, …) with them;
 *  - rmdir removes a directory together with its attributes and default groups, and refuses
 *    (ENOTEMPTY) while it still holds user-made directories or links, and (EBUSY) a function
 *    that a configuration still links;
 *  - attribute files cannot be created, only written; forced_eject cannot be read;
 *  - UDC takes the name of a controller under <sysRoot>/class/udc (ENODEV otherwise), needs a
 *    configuration with a function, and is exclusive (EBUSY);
 *  - `stall` cannot change while the function is linked, `ro`/`cdrom` while a medium is in;
 *    a medium the host has locked (see `setMediumLocked`) can only be force-ejected;
 *  - unlinking a function from a configuration of a bound gadget unbinds it.
 * State lives entirely in the directory, so a new instance over the same directory (a daemon
 * restarted after a crash) sees what the previous one left.
 */
import { existsSync, lstatSync, readdirSync, readlinkSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
/** Marks a directory the "kernel" made (a default group): removed with its parent. */
const DEFAULT_GROUP = '.default-group';
/** Marks a lun whose medium the host has locked (PREVENT MEDIUM REMOVAL). */
const LOCKED = '.medium-locked';
function errno(code, message) {
    const e = new Error(`${code}: ${message}`);
    e.code = code;
    return e;
}
export class SimulatedConfigfs {
    o;
    /** Every write, in order (for tests that check the order of operations). */
    log = [];
    failures = [];
    constructor(o) {
        this.o = o;
    }
    static async create(o) {
        await fs.mkdir(path.join(o.root, 'usb_gadget'), { recursive: true });
        return new SimulatedConfigfs(o);
    }
    /** Makes the next operation `op` on a path matching `match` fail with `code`. */
    failNext(op, match, code = 'EIO') {
        this.failures.push({ op, match, code });
    }
    /** The host locks / unlocks the medium of a lun (given the lun's directory). */
    async setMediumLocked(lunDir, locked) {
        if (locked)
            await fs.writeFile(path.join(lunDir, LOCKED), '');
        else
            await fs.rm(path.join(lunDir, LOCKED), { force: true });
    }
    checkFailure(op, p) {
        const i = this.failures.findIndex((f) => f.op === op && f.match.test(p));
        if (i >= 0) {
            const f = this.failures[i];
            this.failures.splice(i, 1);
            throw errno(f.code, `${op} ${p} (injected)`);
        }
    }
    rel(p) {
        const r = path.relative(this.o.root, p);
        if (r.startsWith('..') || path.isAbsolute(r))
            throw errno('EPERM', `${p} is outside configfs`);
        return r === '' ? [] : r.split(path.sep);
    }
    async exists(p) {
        return existsSync(p) || this.isLink(p);
    }
    isLink(p) {
        try {
            return lstatSync(p).isSymbolicLink();
        }
        catch {
            return false;
        }
    }
    async isSymlink(p) {
        return this.isLink(p);
    }
    async readdir(p) {
        return (await fs.readdir(p)).filter((n) => n !== DEFAULT_GROUP && n !== LOCKED);
    }
    async readAttr(p) {
        if (path.basename(p) === 'forced_eject')
            throw errno('EACCES', `${p} is write-only`);
        const st = await fs.lstat(p);
        if (!st.isFile())
            throw errno('EISDIR', p);
        return (await fs.readFile(p, 'utf8')).replace(/\n$/, '');
    }
    async attrs(dir, values) {
        for (const [k, v] of Object.entries(values))
            await fs.writeFile(path.join(dir, k), v === '' ? '' : `${v}\n`);
    }
    async defaultGroup(dir) {
        await fs.mkdir(dir);
        await fs.writeFile(path.join(dir, DEFAULT_GROUP), '');
    }
    async mkdir(p) {
        this.checkFailure('mkdir', p);
        if (existsSync(p))
            return; // the real implementation treats EEXIST as success too
        const parts = this.rel(p);
        const parent = path.dirname(p);
        if (!existsSync(parent))
            throw errno('ENOENT', parent);
        const name = parts[parts.length - 1] ?? '';
        const up = parts[parts.length - 2];
        const depth = parts.length;
        // usb_gadget/<g>
        if (depth === 2 && parts[0] === 'usb_gadget') {
            await fs.mkdir(p);
            await this.attrs(p, {
                idVendor: '0x0000', idProduct: '0x0000', bcdDevice: '0x0601', bcdUSB: '0x0200',
                bDeviceClass: '0x00', bDeviceSubClass: '0x00', bDeviceProtocol: '0x00', bMaxPacketSize0: '0x40',
                UDC: '', max_speed: 'super-speed-plus',
            });
            for (const d of ['strings', 'configs', 'functions', 'os_desc'])
                await this.defaultGroup(path.join(p, d));
            return;
        }
        const inGadget = parts[0] === 'usb_gadget' && depth >= 4;
        if (inGadget && depth === 4 && up === 'strings') {
            if (!/^0x[0-9a-fA-F]{1,4}$/.test(name))
                throw errno('EINVAL', `bad language ${name}`);
            await fs.mkdir(p);
            await this.attrs(p, { manufacturer: '', product: '', serialnumber: '' });
            return;
        }
        if (inGadget && depth === 4 && up === 'functions') {
            const m = /^([a-z_]+)\.(.+)$/.exec(name);
            if (!m)
                throw errno('EINVAL', `function name must be <type>.<instance>: ${name}`);
            if (m[1] !== 'mass_storage')
                throw errno('ENOENT', `no function type ${m[1]} (simulated: mass_storage only)`);
            await fs.mkdir(p);
            await this.attrs(p, { stall: '1' });
            await this.lun(path.join(p, 'lun.0'), true);
            return;
        }
        if (inGadget && depth === 5 && parts[2] === 'functions' && /^lun\.[1-9]\d*$/.test(name)) {
            await this.lun(p, false);
            return;
        }
        if (inGadget && depth === 4 && up === 'configs') {
            if (!/^[^.]+\.\d+$/.test(name))
                throw errno('EINVAL', `configuration name must be <label>.<number>: ${name}`);
            await fs.mkdir(p);
            await this.attrs(p, { MaxPower: '2', bmAttributes: '0x80' });
            await this.defaultGroup(path.join(p, 'strings'));
            return;
        }
        if (inGadget && depth === 6 && parts[2] === 'configs' && up === 'strings') {
            await fs.mkdir(p);
            await this.attrs(p, { configuration: '' });
            return;
        }
        throw errno('EPERM', `cannot create a directory at ${p} in configfs`);
    }
    async lun(dir, isDefault) {
        if (isDefault)
            await this.defaultGroup(dir);
        else
            await fs.mkdir(dir);
        await this.attrs(dir, { file: '', ro: '0', removable: '1', cdrom: '0', nofua: '0', inquiry_string: '', forced_eject: '' });
    }
    /** The configuration links that point at `target`. */
    linksTo(target) {
        const parts = this.rel(target);
        if (parts.length < 2)
            return [];
        const g = path.join(this.o.root, parts[0], parts[1]);
        const out = [];
        const cfgs = path.join(g, 'configs');
        if (!existsSync(cfgs))
            return out;
        for (const c of readdirSync(cfgs)) {
            const cdir = path.join(cfgs, c);
            if (!existsSync(cdir) || !lstatSync(cdir).isDirectory())
                continue;
            for (const e of readdirSync(cdir)) {
                const lp = path.join(cdir, e);
                if (this.isLink(lp) && path.resolve(cdir, readlinkSafe(lp)) === path.resolve(target))
                    out.push(lp);
            }
        }
        return out;
    }
    async rmdir(p) {
        this.checkFailure('rmdir', p);
        if (!existsSync(p))
            return;
        const parts = this.rel(p);
        if (existsSync(path.join(p, DEFAULT_GROUP))) {
            throw errno('EPERM', `${p} is a default group: it goes with its parent`);
        }
        if (parts[0] === 'usb_gadget' && parts.length === 4 && parts[2] === 'functions' && this.linksTo(p).length > 0) {
            throw errno('EBUSY', `${p} is linked from a configuration`);
        }
        this.assertRemovable(p, true);
        await fs.rm(p, { recursive: true });
    }
    /** Throws unless `dir` holds only attributes and default groups (recursively). */
    assertRemovable(dir, top) {
        for (const e of readdirSync(dir)) {
            const full = path.join(dir, e);
            const st = lstatSync(full);
            if (st.isSymbolicLink())
                throw errno('ENOTEMPTY', `${top ? dir : full} still holds the link ${e}`);
            if (st.isDirectory()) {
                if (!existsSync(path.join(full, DEFAULT_GROUP)))
                    throw errno('ENOTEMPTY', `${dir} still holds ${e}`);
                this.assertRemovable(full, false);
            }
        }
    }
    async writeAttr(p, value) {
        this.checkFailure('writeAttr', p);
        this.log.push(`${path.relative(this.o.root, p)}=${value}`);
        const parts = this.rel(p);
        if (!existsSync(p) || !lstatSync(p).isFile())
            throw errno(existsSync(p) ? 'EISDIR' : 'EACCES', `no attribute ${p}`);
        const attr = path.basename(p);
        const dir = path.dirname(p);
        const v = value.replace(/\n$/, '');
        const gadgetDir = parts.length >= 2 ? path.join(this.o.root, parts[0], parts[1]) : '';
        if (parts.length === 3 && attr === 'UDC') {
            const cur = (await this.readAttr(p)).trim();
            if (v.trim() === '') {
                await fs.writeFile(p, '');
                if (cur !== '')
                    this.o.onUdc?.(parts[1], '');
                return;
            }
            if (cur !== '')
                throw errno('EBUSY', `gadget already bound to ${cur}`);
            if (!existsSync(path.join(this.o.sysRoot, 'class', 'udc', v)))
                throw errno('ENODEV', `no UDC ${v}`);
            for (const other of readdirSync(path.dirname(gadgetDir))) {
                const f = path.join(path.dirname(gadgetDir), other, 'UDC');
                if (other !== parts[1] && existsSync(f) && (await fs.readFile(f, 'utf8')).trim() === v)
                    throw errno('EBUSY', `${v} is taken by ${other}`);
            }
            const hasFunction = readdirSync(path.join(gadgetDir, 'configs')).some((c) => {
                const cdir = path.join(gadgetDir, 'configs', c);
                return lstatSync(cdir).isDirectory() && readdirSync(cdir).some((e) => this.isLink(path.join(cdir, e)));
            });
            if (!hasFunction)
                throw errno('ENODEV', 'no configuration with a function');
            await fs.writeFile(p, `${v}\n`);
            this.o.onUdc?.(parts[1], v);
            return;
        }
        if (parts[2] === 'functions') {
            const fnDir = path.join(gadgetDir, 'functions', parts[3]);
            if (attr === 'stall' && this.linksTo(fnDir).length > 0)
                throw errno('EBUSY', 'stall cannot change while the function is linked');
            if (/^lun\.\d+$/.test(path.basename(dir))) {
                const open = (await fs.readFile(path.join(dir, 'file'), 'utf8')).trim() !== '';
                const locked = existsSync(path.join(dir, LOCKED));
                if (attr === 'forced_eject') {
                    if (v.trim() === '1' || v.trim().toLowerCase() === 'y') {
                        await fs.writeFile(path.join(dir, 'file'), '');
                        await fs.rm(path.join(dir, LOCKED), { force: true });
                    }
                    return;
                }
                if ((attr === 'ro' || attr === 'cdrom') && open)
                    throw errno('EBUSY', `${attr} cannot change while a medium is in`);
                if (attr === 'file') {
                    if (open && locked)
                        throw errno('EBUSY', 'the host has locked the medium');
                    await fs.writeFile(p, v.trim() === '' ? '' : `${v.trim()}\n`);
                    return;
                }
                if (attr === 'inquiry_string') {
                    await fs.writeFile(p, v === '' ? '' : `${v.slice(0, 28).padEnd(28, ' ')}\n`);
                    return;
                }
            }
        }
        await fs.writeFile(p, v === '' ? '' : `${v}\n`);
    }
    async symlink(target, p) {
        this.checkFailure('symlink', p);
        const parts = this.rel(p);
        const tparts = this.rel(target);
        if (!(parts.length === 5 && parts[2] === 'configs'))
            throw errno('EPERM', `links belong in a configuration: ${p}`);
        if (!(tparts.length === 4 && tparts[2] === 'functions' && tparts[1] === parts[1]))
            throw errno('EPERM', `${target} is not a function of this gadget`);
        if (!existsSync(target))
            throw errno('ENOENT', target);
        if (this.isLink(p))
            throw errno('EEXIST', p);
        await fs.symlink(target, p);
    }
    async unlink(p) {
        this.checkFailure('unlink', p);
        if (!this.isLink(p)) {
            if (existsSync(p))
                throw errno('EPERM', `${p} is not a link`);
            return;
        }
        const parts = this.rel(p);
        const udc = path.join(this.o.root, parts[0], parts[1], 'UDC');
        if (existsSync(udc) && (await fs.readFile(udc, 'utf8')).trim() !== '') {
            await fs.writeFile(udc, '');
            this.o.onUdc?.(parts[1], '');
        }
        await fs.unlink(p);
    }
}
function readlinkSafe(p) {
    try {
        return readlinkSync(p);
    }
    catch {
        return '';
    }
}
//# sourceMappingURL=simulated-configfs.js.map