/**
 * Watches /sys/class/udc/<udc>/state. It is a sysfs attribute: it is read on a timer, and
 * inotify (fs.watch), which the UDC core's sysfs_notify triggers on most kernels, only makes
 * a read happen sooner. Each read is handed over with the time it was made; a missing file
 * (the UDC went away) reads as "not attached".
 */
import { watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
export function udcStatePath(sysRoot, udc) {
    return path.join(sysRoot, 'class', 'udc', udc, 'state');
}
export async function readUdcState(sysRoot, udc) {
    try {
        return (await readFile(udcStatePath(sysRoot, udc), 'utf8')).trim();
    }
    catch (err) {
        if (err.code === 'ENOENT')
            return 'not attached';
        throw err;
    }
}
export class UdcWatcher {
    o;
    timer = null;
    fsWatcher = null;
    reading = false;
    again = false;
    stopped = true;
    constructor(o) {
        this.o = o;
    }
    start() {
        if (!this.stopped)
            return;
        this.stopped = false;
        this.timer = setInterval(() => void this.readNow(), this.o.intervalMs);
        this.timer.unref?.();
        try {
            this.fsWatcher = watch(udcStatePath(this.o.sysRoot, this.o.udc), { persistent: false }, () => void this.readNow());
            this.fsWatcher.on('error', () => {
                this.fsWatcher?.close();
                this.fsWatcher = null;
            });
        }
        catch {
            this.fsWatcher = null; // polling alone still works
        }
        void this.readNow();
    }
    stop() {
        this.stopped = true;
        if (this.timer)
            clearInterval(this.timer);
        this.timer = null;
        this.fsWatcher?.close();
        this.fsWatcher = null;
    }
    /** Reads the state now (coalescing concurrent requests). */
    async readNow() {
        if (this.stopped)
            return;
        if (this.reading) {
            this.again = true;
            return;
        }
        this.reading = true;
        try {
            do {
                this.again = false;
                try {
                    const state = await readUdcState(this.o.sysRoot, this.o.udc);
                    if (!this.stopped)
                        this.o.onRead(state, this.o.now());
                }
                catch (err) {
                    this.o.onError?.(err);
                }
            } while (this.again && !this.stopped);
        }
        finally {
            this.reading = false;
        }
    }
}
//# sourceMappingURL=udc-watcher.js.map