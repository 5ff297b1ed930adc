import { checkRange } from '../../appliance/storage/block-device.js';
import { SnapbackError, fromSystemError } from '../../appliance/errors.js';
import { Prng } from './prng.js';
export class PowerDomain {
    rng;
    ops = 0;
    crashAt;
    lost = false;
    constructor(rng, crashAt = Infinity) {
        this.rng = rng;
        this.crashAt = crashAt;
    }
    /** Counts one mutating call; throws once the power is out. */
    tick() {
        if (this.lost)
            throw new SnapbackError('POWER_LOST', 'power lost');
        this.ops++;
        if (this.ops >= this.crashAt) {
            this.lost = true;
            throw new SnapbackError('POWER_LOST', 'power lost');
        }
    }
    /** Lets callbacks interleave: resolves after 0–2 turns of the event loop, chosen by the PRNG. */
    async jitter() {
        const n = this.rng.int(3);
        for (let i = 0; i < n; i++)
            await new Promise((r) => setImmediate(r));
    }
}
export class FaultDevice {
    name;
    domain;
    view;
    durable;
    unflushed = [];
    isOpen = false;
    faults = [];
    /** Every mutating call, for tests that want to see the order of writes and flushes. */
    journal = [];
    keepJournal = false;
    constructor(name, initial, domain) {
        this.name = name;
        this.domain = domain;
        this.view = Buffer.from(initial);
        this.durable = Buffer.from(initial);
    }
    get size() {
        return this.view.length;
    }
    get capabilities() {
        return { canWrite: true, canFlush: true, canFua: true, canTrim: true, canZero: true, preferredBlockSize: 512 };
    }
    async open() {
        this.isOpen = true;
    }
    async close() {
        this.isOpen = false;
    }
    fault(op, offset, length = 0) {
        const i = this.faults.findIndex((f) => f.op === op && (f.offset === undefined || (offset !== undefined && f.offset >= offset && f.offset < offset + length)));
        if (i >= 0) {
            const f = this.faults[i];
            throw fromSystemError(Object.assign(new Error(`${f.errno}: injected on ${this.name}`), { code: f.errno }), `${op} ${this.name}`);
        }
    }
    async read(offset, length) {
        const b = Buffer.allocUnsafe(length);
        await this.readInto(b, offset);
        return b;
    }
    async readInto(buf, offset) {
        checkRange(this.size, offset, buf.length);
        await this.domain.jitter();
        if (this.domain.lost)
            throw new SnapbackError('POWER_LOST', 'power lost');
        this.fault('read', offset, buf.length);
        this.view.copy(buf, 0, offset, offset + buf.length);
    }
    async write(offset, data, options = {}) {
        checkRange(this.size, offset, data.length);
        await this.domain.jitter();
        this.fault('write', offset, data.length);
        this.domain.tick();
        const copy = Buffer.from(data);
        copy.copy(this.view, offset);
        this.unflushed.push({ offset, data: copy });
        if (this.keepJournal)
            this.journal.push(`write ${offset}+${data.length}`);
        if (options.fua)
            await this.flush();
    }
    async writeZeroes(offset, length, options = {}) {
        await this.write(offset, Buffer.alloc(length), options);
    }
    async trim(offset, length, options = {}) {
        await this.writeZeroes(offset, length, options);
    }
    async flush() {
        await this.domain.jitter();
        this.fault('flush');
        this.domain.tick();
        for (const p of this.unflushed)
            p.data.copy(this.durable, p.offset);
        this.unflushed = [];
        if (this.keepJournal)
            this.journal.push('flush');
    }
    /** What the device holds after the power cut: durable bytes plus any subset of unflushed sectors. */
    crashImage() {
        const img = Buffer.from(this.durable);
        const rng = this.domain.rng;
        for (const p of this.unflushed) {
            const mode = rng.int(3); // 0 vanish, 1 land whole, 2 torn
            if (mode === 0)
                continue;
            if (mode === 1) {
                p.data.copy(img, p.offset);
                continue;
            }
            // torn at 512-byte boundaries of the device
            let pos = p.offset;
            const end = p.offset + p.data.length;
            while (pos < end) {
                const sectorEnd = Math.min(end, (Math.floor(pos / 512) + 1) * 512);
                if (rng.chance(0.5))
                    p.data.copy(img, pos, pos - p.offset, sectorEnd - p.offset);
                pos = sectorEnd;
            }
        }
        return img;
    }
    /** The bytes reads see now (for checks without a crash). */
    snapshot() {
        return Buffer.from(this.view);
    }
}
/** A plain in-memory device (no faults), e.g. to reopen crash images. */
export function memoryDevice(name, bytes, rng = new Prng(1)) {
    return new FaultDevice(name, bytes, new PowerDomain(rng));
}
//# sourceMappingURL=fault-device.js.map