/**
 * Model image: the read-only pristine disk the host must find again (DESIGN §2, §5). A file (or
 * block device) plus its manifest. Every mutating call is refused here, so the model can never
 * be written through this layer (invariant 6).
 *
 * Verification: with `verify: 'lazy'` (default) the first read of each manifest region hashes
 * the whole region and compares it with the manifest; a region that does not match fails every
 * read of it with MODEL_CORRUPT (expected and actual digests attached), so corrupt model bytes
 * never reach the host or the working disk. At open, a file whose size differs from the
 * manifest is refused; one whose mtime or inode changed since the manifest was made is fully
 * verified before it is used.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { checkRange } from './block-device.js';
import { FileDevice } from './file-device.js';
import { Manifest, manifestPathFor } from './manifest.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
export class ModelCorruptError extends SnapbackError {
    region;
    expected;
    actual;
    constructor(region, expected, actual, imagePath) {
        super('MODEL_CORRUPT', `model ${imagePath} region ${region} does not match its manifest (expected ${expected.slice(0, 16)}…, found ${actual.slice(0, 16)}…)`, {
            region,
            expected,
            actual,
        });
        this.region = region;
        this.expected = expected;
        this.actual = actual;
    }
}
const log = childLogger('model');
export class ModelImage {
    imagePath;
    manifestPath;
    file;
    _manifest = null;
    verified = new Uint8Array(0); // 0 unknown, 1 good, 2 bad
    verifying = new Map();
    verifyMode;
    constructor(imagePath, options = {}) {
        this.imagePath = imagePath;
        this.manifestPath = options.manifestPath ?? manifestPathFor(imagePath);
        this.file = new FileDevice(imagePath, { readOnly: true });
        this.verifyMode = options.verify ?? 'lazy';
    }
    get manifest() {
        if (!this._manifest)
            throw new SnapbackError('CLOSED', `model ${this.imagePath} is not open`);
        return this._manifest;
    }
    get id() {
        return this.manifest.id;
    }
    get size() {
        return this.manifest.size;
    }
    get capabilities() {
        return { canWrite: false, canFlush: false, canFua: false, canTrim: false, canZero: false, preferredBlockSize: 4096 };
    }
    async open() {
        if (this._manifest)
            return;
        const manifest = await Manifest.load(this.manifestPath);
        await this.file.open();
        if (this.file.size !== manifest.size) {
            await this.file.close();
            throw new SnapbackError('SIZE_MISMATCH', `model ${this.imagePath} holds ${this.file.size} bytes but its manifest says ${manifest.size}`, {
                expected: manifest.size,
                actual: this.file.size,
            });
        }
        this._manifest = manifest;
        this.verified = new Uint8Array(manifest.regionCount);
        const st = await stat(this.imagePath);
        const recorded = manifest.json.image;
        if (st.mtimeMs !== recorded.mtimeMs || st.ino !== recorded.ino) {
            log.warn({ image: this.imagePath }, 'model file changed since its manifest was made: verifying every region');
            try {
                await this.verifyAll();
            }
            catch (err) {
                await this.close();
                throw err;
            }
        }
    }
    /** Hashes every region; throws ModelCorruptError at the first mismatch. */
    async verifyAll(onProgress) {
        const m = this.manifest;
        for (let r = 0; r < m.regionCount; r++) {
            await this.verifyRegion(r, true);
            onProgress?.(r + 1, m.regionCount);
        }
    }
    /** Hashes one region now (whatever was known of it) and says whether it matches. */
    async checkRegion(region) {
        try {
            await this.verifyRegion(region, true);
            return true;
        }
        catch (err) {
            if (err instanceof ModelCorruptError)
                return false;
            throw err;
        }
    }
    async verifyRegion(region, force = false) {
        const state = this.verified[region];
        if (state === 1 && !force)
            return;
        const m = this.manifest;
        if (state === 2 && !force) {
            throw new ModelCorruptError(region, m.digest(region).toString('hex'), 'previously failed', this.imagePath);
        }
        const existing = this.verifying.get(region);
        if (existing)
            return existing;
        const p = (async () => {
            const off = region * m.regionSize;
            const len = Math.min(m.regionSize, m.size - off);
            const data = Buffer.allocUnsafe(len);
            await this.file.readInto(data, off);
            const actual = createHash(m.hash).update(data).digest();
            const expected = m.digest(region);
            if (!actual.equals(expected)) {
                this.verified[region] = 2;
                throw new ModelCorruptError(region, expected.toString('hex'), actual.toString('hex'), this.imagePath);
            }
            this.verified[region] = 1;
        })().finally(() => this.verifying.delete(region));
        this.verifying.set(region, p);
        return p;
    }
    async read(offset, length) {
        const buf = Buffer.allocUnsafe(length);
        await this.readInto(buf, offset);
        return buf;
    }
    async readInto(buf, offset) {
        checkRange(this.size, offset, buf.length, 'model read');
        if (this.verifyMode !== 'lazy' || buf.length === 0) {
            await this.file.readInto(buf, offset);
            return;
        }
        const m = this.manifest;
        const rs = m.regionSize;
        const first = Math.floor(offset / rs);
        const last = Math.floor((offset + buf.length - 1) / rs);
        // Regions only partly inside the read are verified on their own first; regions wholly
        // inside it are hashed from the bytes this read fetches anyway (one read, not two).
        const whole = [];
        for (let r = first; r <= last; r++) {
            if (this.verified[r] === 1)
                continue;
            const a = r * rs;
            const b = Math.min(m.size, a + rs);
            if (a >= offset && b <= offset + buf.length && !this.verifying.has(r) && this.verified[r] !== 2)
                whole.push(r);
            else
                await this.verifyRegion(r);
        }
        await this.file.readInto(buf, offset);
        for (const r of whole) {
            const a = r * rs - offset;
            const actual = createHash(m.hash).update(buf.subarray(a, Math.min(buf.length, a + rs))).digest();
            const expected = m.digest(r);
            if (!actual.equals(expected)) {
                this.verified[r] = 2;
                throw new ModelCorruptError(r, expected.toString('hex'), actual.toString('hex'), this.imagePath);
            }
            this.verified[r] = 1;
        }
    }
    refuse() {
        throw new SnapbackError('READ_ONLY', `the model ${this.imagePath} is never written through the storage layers`);
    }
    async write() {
        this.refuse();
    }
    async trim() {
        this.refuse();
    }
    async writeZeroes() {
        this.refuse();
    }
    async flush() {
        /* nothing to flush: never written */
    }
    async close() {
        await this.file.close();
        this._manifest = null;
    }
}
//# sourceMappingURL=model-image.js.map