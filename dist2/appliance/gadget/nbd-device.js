/**
 * The kernel nbd device between the gadget and the daemon's NBD server: `nbd-client` attaches
 * /dev/nbdN to the daemon's unix socket; the mass-storage function reads and writes /dev/nbdN
 * through its page cache. At a session end that cache still holds the old session's blocks,
 * so the device is flushed (BLKFLSBUF through `blockdev --flushbufs`) and disconnected, and a
 * fresh attachment is flushed once more before the gadget uses it.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SnapbackError } from '../errors.js';
import { describeFailure, runTool } from './commands.js';
export class NbdDevices {
    o;
    constructor(o) {
        this.o = o;
    }
    devPath(name) {
        return path.join(this.o.devRoot, name);
    }
    /** nbd0, nbd1, … as sysfs lists them, in numeric order. */
    list() {
        let names;
        try {
            names = readdirSync(path.join(this.o.sysRoot, 'block'));
        }
        catch {
            return [];
        }
        return names.filter((n) => /^nbd\d+$/.test(n)).sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
    }
    /** Connected: the kernel shows a `pid` attribute while an nbd device has a connection. */
    isConnected(name) {
        return existsSync(path.join(this.o.sysRoot, 'block', name, 'pid'));
    }
    sizeSectors(name) {
        try {
            return Number(readFileSync(path.join(this.o.sysRoot, 'block', name, 'size'), 'utf8').trim()) || 0;
        }
        catch {
            return 0;
        }
    }
    /** The first nbd device with no connection and no size; null when every one is in use. */
    findFree() {
        for (const n of this.list()) {
            if (!this.isConnected(n) && this.sizeSectors(n) === 0)
                return n;
        }
        return null;
    }
    /** Attaches `name` (or a free device) to the unix socket; returns the device's name. */
    async attach(socket, blockSize, name) {
        if (!existsSync(socket))
            throw new SnapbackError('IO_ERROR', `NBD socket ${socket} does not exist (is the NBD server running?)`);
        let lastErr = '';
        // Another program may take the device we picked between the check and nbd-client: retry.
        for (let attempt = 0; attempt < 3; attempt++) {
            const dev = name ?? this.findFree();
            if (!dev) {
                const known = this.list();
                throw new SnapbackError('IO_ERROR', known.length === 0 ? 'no /dev/nbd* devices: is the nbd module loaded?' : `every nbd device is in use (${known.join(', ')})`);
            }
            const args = ['-u', socket, this.devPath(dev), '-b', String(blockSize)];
            const r = await runTool(this.o.run, 'nbd-client', args, { timeoutMs: 30_000 });
            if (r.code === 0 && (await this.waitConnected(dev, true))) {
                await this.flush(dev);
                return dev;
            }
            lastErr = r.code === 0 ? `nbd-client succeeded but ${dev} shows no connection` : describeFailure('nbd-client', args, r);
            if (name)
                break;
        }
        throw new SnapbackError('IO_ERROR', `cannot attach an nbd device to ${socket}: ${lastErr}`);
    }
    /** Writes back and drops the device's page cache (BLKFLSBUF). Errors are reported, not thrown. */
    async flush(name) {
        const r = await runTool(this.o.run, 'blockdev', ['--flushbufs', this.devPath(name)], { timeoutMs: 60_000 });
        return r.code === 0 ? null : describeFailure('blockdev', ['--flushbufs', this.devPath(name)], r);
    }
    /**
     * Flushes and disconnects; a device that is not connected is fine. The kernel keeps showing
     * the connection until the last opener closes the device: with `wait` (the default) the
     * device must be gone within a second, without it a successful `nbd-client -d` is enough
     * (the caller closes the device next, e.g. by removing the gadget).
     */
    async detach(name, opts = {}) {
        if (!this.isConnected(name))
            return;
        if (opts.flush ?? true)
            await this.flush(name);
        const args = ['-d', this.devPath(name)];
        const r = await runTool(this.o.run, 'nbd-client', args, { timeoutMs: 30_000 });
        if (r.code !== 0 && this.isConnected(name)) {
            throw new SnapbackError('IO_ERROR', `cannot disconnect ${name}: ${describeFailure('nbd-client', args, r)}`);
        }
        if ((opts.wait ?? true) && !(await this.waitConnected(name, false))) {
            throw new SnapbackError('IO_ERROR', `cannot disconnect ${name}: still connected (is something else holding it open?)`);
        }
    }
    /** Waits (briefly) until `name` shows no connection. */
    async waitDisconnected(name) {
        return this.waitConnected(name, false);
    }
    async waitConnected(name, want) {
        for (let i = 0; i < 50; i++) {
            if (this.isConnected(name) === want)
                return true;
            await sleep(20);
        }
        return this.isConnected(name) === want;
    }
}
//# sourceMappingURL=nbd-device.js.map