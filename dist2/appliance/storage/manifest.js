/**
 * Model manifest: what a model image must contain (DESIGN §5). Size, region size, a named hash
 * per region, and an id that is the hash of the manifest's content, so two appliances holding
 * the same bytes agree on the id. Stored as JSON beside the image (IMAGE.manifest.json); the
 * per-region digests are one base64 string, which keeps a 256 GiB model's manifest at ≈ 11 MB.
 */
import { createHash } from 'node:crypto';
import { readFile, writeFile, rename, open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { FileDevice } from './file-device.js';
import { SnapbackError } from '../errors.js';
import { parseSize, isValidRegionSize } from './sizes.js';
export const MANIFEST_FORMAT = 'snapback-manifest/1';
export const DEFAULT_MANIFEST_REGION_SIZE = 1 << 20;
export const SUPPORTED_HASHES = ['sha256', 'sha1', 'blake2b512'];
const manifestSchema = z.object({
    format: z.literal(MANIFEST_FORMAT),
    id: z.string().regex(/^[0-9a-f]{64}$/),
    name: z.string(),
    size: z.number().int().nonnegative(),
    regionSize: z.number().int().refine(isValidRegionSize, 'region size must be a power of two from 4 KiB to 16 MiB'),
    hash: z.enum(SUPPORTED_HASHES),
    hashes: z.string(),
    createdAt: z.string(),
    /** What the image file looked like when hashed: a later change of these means "verify again". */
    image: z.object({ size: z.number(), mtimeMs: z.number(), ino: z.number() }),
});
export class Manifest {
    json;
    digests;
    constructor(json, digests) {
        this.json = json;
        this.digests = digests;
    }
    get id() {
        return this.json.id;
    }
    get size() {
        return this.json.size;
    }
    get regionSize() {
        return this.json.regionSize;
    }
    get hash() {
        return this.json.hash;
    }
    get regionCount() {
        return Math.ceil(this.json.size / this.json.regionSize);
    }
    get digestLength() {
        return digestLength(this.json.hash);
    }
    digest(region) {
        const n = this.digestLength;
        return this.digests.subarray(region * n, region * n + n);
    }
    static async load(path) {
        let text;
        try {
            text = await readFile(path, 'utf8');
        }
        catch (err) {
            throw new SnapbackError('MANIFEST_INVALID', `cannot read manifest ${path}: ${err.message}`);
        }
        let parsed;
        try {
            parsed = manifestSchema.parse(JSON.parse(text));
        }
        catch (err) {
            const why = err instanceof z.ZodError ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : err.message;
            throw new SnapbackError('MANIFEST_INVALID', `manifest ${path} is not valid: ${why}`);
        }
        const digests = Buffer.from(parsed.hashes, 'base64');
        const count = Math.ceil(parsed.size / parsed.regionSize);
        if (digests.length !== count * digestLength(parsed.hash)) {
            throw new SnapbackError('MANIFEST_INVALID', `manifest ${path} holds ${digests.length} bytes of digests, expected ${count * digestLength(parsed.hash)}`);
        }
        const id = manifestId(parsed.size, parsed.regionSize, parsed.hash, parsed.hashes);
        if (id !== parsed.id) {
            throw new SnapbackError('MANIFEST_INVALID', `manifest ${path} has id ${parsed.id} but its content hashes to ${id}`, { expected: id, actual: parsed.id });
        }
        return new Manifest(parsed, digests);
    }
    async save(path) {
        const tmp = `${path}.tmp-${process.pid}`;
        await writeFile(tmp, JSON.stringify(this.json, null, 1) + '\n');
        const fh = await open(tmp, 'r');
        await fh.sync();
        await fh.close();
        await rename(tmp, path);
    }
}
export function digestLength(hash) {
    return createHash(hash).digest().length;
}
function manifestId(size, regionSize, hash, hashes) {
    return createHash('sha256').update(JSON.stringify({ format: MANIFEST_FORMAT, size, regionSize, hash, hashes })).digest('hex');
}
export function manifestPathFor(imagePath) {
    return `${imagePath}.manifest.json`;
}
/** Hashes an image region by region and returns its manifest. */
export async function createManifest(imagePath, options = {}) {
    const regionSize = options.regionSize ?? DEFAULT_MANIFEST_REGION_SIZE;
    if (!isValidRegionSize(regionSize))
        throw new SnapbackError('BAD_ARGUMENT', `region size ${regionSize} is not a power of two from 4 KiB to 16 MiB`);
    const hash = options.hash ?? 'sha256';
    const dev = new FileDevice(imagePath, { readOnly: true });
    await dev.open();
    try {
        const st = await stat(imagePath);
        const size = dev.size;
        const count = Math.ceil(size / regionSize);
        const dlen = digestLength(hash);
        const digests = Buffer.alloc(count * dlen);
        const chunk = Buffer.allocUnsafe(Math.max(regionSize, 1 << 20));
        const perChunk = chunk.length / regionSize;
        for (let r = 0; r < count; r += perChunk) {
            const off = r * regionSize;
            const len = Math.min(chunk.length, size - off);
            const view = chunk.subarray(0, len);
            await dev.readInto(view, off);
            for (let i = 0; i < perChunk && r + i < count; i++) {
                const part = view.subarray(i * regionSize, Math.min(len, (i + 1) * regionSize));
                createHash(hash).update(part).digest().copy(digests, (r + i) * dlen);
            }
            options.onProgress?.(off + len, size);
        }
        const hashes = digests.toString('base64');
        const json = {
            format: MANIFEST_FORMAT,
            id: manifestId(size, regionSize, hash, hashes),
            name: options.name ?? basename(imagePath),
            size,
            regionSize,
            hash,
            hashes,
            createdAt: new Date().toISOString(),
            image: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino },
        };
        return new Manifest(json, digests);
    }
    finally {
        await dev.close();
    }
}
export { parseSize };
//# sourceMappingURL=manifest.js.map