/**
 * Model manifest: what a model image must contain (docs/architecture.md). Size, region size, a named hash
 * per region, and an id that is the hash of the manifest's content, so two appliances holding
 * the same bytes agree on the id. Stored as JSON beside the image (IMAGE.manifest.json); the
 * per-region digests are one base64 string, which keeps a 256 GiB model's manifest at ≈ 11 MB.
 *
 * In memory the digests are one binary buffer (32 bytes a region for SHA-256), never the base64
 * text: a 1 TiB model with 1 MiB regions holds 1 M digests, 32 MB. Loading streams the file: the
 * small fields around the digests go through JSON.parse, the base64 is decoded chunk by chunk
 * straight into that buffer and hashed on the way for the id, so neither the text of the file
 * nor a string of the digests is ever held whole. A manifest laid out unlike ours (another key
 * order, escapes in the digests) is read the plain way, whole, through JSON.parse.
 *
 * A daemon serving a model loads its manifest with `digests: 'file'`: the digests are checked
 * the same way at load and then read from the open file region by region when a region is
 * verified (manifest-digest-file.ts), so a 1 TiB model costs no memory for them.
 */
import { createHash } from 'node:crypto';
import { open, rename, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { FileDevice } from './file-device.js';
import { ManifestDigestFile } from './manifest-digest-file.js';
import { DIGEST_LENGTHS, DEFAULT_MANIFEST_HASH, SUPPORTED_HASHES, zeroRegionDigest, type HashName } from './hash-functions.js';
import { dataRegionRuns } from './data-extents.js';
import { sharedHashPool, type HashPool } from './hash-pool.js';
import { SharedBufferPool } from './shared-buffers.js';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';
import { parseSize, isValidRegionSize } from './sizes.js';

export { DEFAULT_MANIFEST_HASH, SUPPORTED_HASHES, type HashName };

export const MANIFEST_FORMAT = 'snapback-manifest/1';
export const DEFAULT_MANIFEST_REGION_SIZE = 1 << 20;

const imageSchema = z.object({ size: z.number(), mtimeMs: z.number(), ino: z.number() });

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
  image: imageSchema,
});

/** The manifest file's JSON. */
export type ManifestJson = z.infer<typeof manifestSchema>;
/** Everything of a manifest but its digests (those are Manifest.digest(region)). */
export type ManifestInfo = Omit<ManifestJson, 'hashes'>;

/** Manifests larger than this are read only by the streaming parser (the plain one would need several times this in strings). */
const PLAIN_PARSE_LIMIT = 256 << 20;
/** The JSON around the digests is small; more than this is not a manifest of ours. */
const FIELDS_LIMIT = 1 << 20;
/**
 * The file is read, and the digests' text written, this much at a time: each piece becomes a
 * string on its way to or from base64, and strings this small die young (a scavenge frees them),
 * while megabyte strings wait in the large-object space for a full collection: at 1 TiB those
 * were 40 MB of a daemon's RSS after it loaded a manifest.
 */
const READ_CHUNK = 64 << 10;
const TEXT_STEP = 3 * (16 << 10); // a multiple of 3 bytes: the pieces' base64 concatenates

export interface LoadManifestOptions {
  /** 'memory' (default): the digests held in one buffer; 'file': read from the open file when asked (close() the manifest). */
  digests?: 'memory' | 'file';
}

export class Manifest {
  constructor(
    readonly json: ManifestInfo,
    private readonly digests: Buffer | ManifestDigestFile,
  ) {}

  /** A manifest for these digests (its id computed from them). */
  static fromDigests(info: Omit<ManifestInfo, 'id' | 'format'>, digests: Buffer): Manifest {
    const id = manifestId(info.size, info.regionSize, info.hash, digests);
    const json: ManifestInfo = { format: MANIFEST_FORMAT, id, name: info.name, size: info.size, regionSize: info.regionSize, hash: info.hash, createdAt: info.createdAt, image: info.image };
    return new Manifest(json, digests);
  }

  get id(): string {
    return this.json.id;
  }
  get size(): number {
    return this.json.size;
  }
  get regionSize(): number {
    return this.json.regionSize;
  }
  get hash(): HashName {
    return this.json.hash;
  }
  get regionCount(): number {
    return Math.ceil(this.json.size / this.json.regionSize);
  }
  get digestLength(): number {
    return digestLength(this.json.hash);
  }

  /** One region's digest (read synchronously from the manifest file when its digests are not held). */
  digest(region: number): Buffer {
    const n = this.digestLength;
    if (this.digests instanceof ManifestDigestFile) return this.digests.readSync(region * n, n);
    return this.digests.subarray(region * n, region * n + n);
  }

  /** One region's digest, without blocking on the manifest file when its digests are not held. */
  async readDigest(region: number): Promise<Buffer> {
    const n = this.digestLength;
    if (this.digests instanceof ManifestDigestFile) return this.digests.read(region * n, n);
    return this.digests.subarray(region * n, region * n + n);
  }

  /**
   * All the digests, region after region: a view of the held buffer, or, when they are not held,
   * a copy read whole from the file (32 MB at 1 M regions: for comparing models, not per region).
   */
  get allDigests(): Buffer {
    if (this.digests instanceof ManifestDigestFile) return this.digests.readSync(0, this.digests.byteLength);
    return this.digests;
  }

  /** Closes the manifest file a manifest loaded with `digests: 'file'` reads from (nothing otherwise). */
  async close(): Promise<void> {
    if (this.digests instanceof ManifestDigestFile) await this.digests.close();
  }

  static async load(path: string, options: LoadManifestOptions = {}): Promise<Manifest> {
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      throw new SnapbackError('MANIFEST_INVALID', `cannot read manifest ${path}: ${(err as Error).message}`);
    }
    const fast = await loadStreaming(path, size, options.digests ?? 'memory');
    if (fast) return fast;
    if (size > PLAIN_PARSE_LIMIT) {
      throw new SnapbackError('MANIFEST_INVALID', `manifest ${path} (${size} bytes) is not laid out as Snapback writes manifests, and is too large to read whole; make it again with "snapback model manifest"`);
    }
    return loadManifestPlain(path);
  }

  /** Writes the manifest (streamed: the digests' text is never one string), synced, then renamed into place. */
  async save(path: string): Promise<void> {
    const { head, tail } = manifestTextAround(this.json);
    const tmp = `${path}.tmp-${process.pid}`;
    const fh = await open(tmp, 'w', 0o644);
    try {
      await fh.write(head);
      const d = this.digests;
      const step = TEXT_STEP;
      if (d instanceof ManifestDigestFile) {
        for (let i = 0; i < d.textLength; i += step) await fh.write(await d.readText(i, Math.min(d.textLength - i, step)));
      } else {
        for (let i = 0; i < d.length; i += step) await fh.write(d.toString('base64', i, Math.min(d.length, i + step)));
      }
      await fh.write(tail);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  }
}

/**
 * The manifest file's text before and after the digests' base64 (byte for byte what
 * JSON.stringify(json, null, 1) gives, as manifests have always been written).
 */
function manifestTextAround(info: ManifestInfo): { head: string; tail: string } {
  const json: ManifestJson = {
    format: info.format,
    id: info.id,
    name: info.name,
    size: info.size,
    regionSize: info.regionSize,
    hash: info.hash,
    hashes: '',
    createdAt: info.createdAt,
    image: { size: info.image.size, mtimeMs: info.image.mtimeMs, ino: info.image.ino },
  };
  const text = JSON.stringify(json, null, 1) + '\n';
  const marker = '\n "hashes": ""'; // a string value cannot hold a raw newline: this is the key
  const at = text.indexOf(marker) + marker.length - 1;
  return { head: text.slice(0, at), tail: text.slice(at) };
}

export function digestLength(hash: HashName): number {
  return DIGEST_LENGTHS[hash];
}

/** The text the id hashes, before the digests' base64 (then `"}` after it). */
function idPrefix(size: number, regionSize: number, hash: string): string {
  const text = JSON.stringify({ format: MANIFEST_FORMAT, size, regionSize, hash, hashes: '' });
  return text.slice(0, -2); // drop the closing `"}`
}

/** The manifest id: SHA-256 of {format, size, regionSize, hash, hashes} as JSON, hashes in base64. */
function manifestId(size: number, regionSize: number, hash: string, digests: Buffer): string {
  const h = createHash('sha256').update(idPrefix(size, regionSize, hash));
  const step = TEXT_STEP;
  for (let i = 0; i < digests.length; i += step) h.update(digests.toString('base64', i, Math.min(digests.length, i + step)));
  return h.update('"}').digest('hex');
}

function invalid(path: string, why: string, details?: Record<string, unknown>): SnapbackError {
  return new SnapbackError('MANIFEST_INVALID', `manifest ${path} is not valid: ${why}`, details);
}

/** Checks the parsed fields and the digests against each other; the manifest or a clear error. */
function finish(path: string, parsed: ManifestInfo, digests: Buffer | ManifestDigestFile, computedId: string): Manifest {
  const count = Math.ceil(parsed.size / parsed.regionSize);
  const want = count * digestLength(parsed.hash);
  const have = digests instanceof ManifestDigestFile ? digests.byteLength : digests.length;
  if (have !== want) {
    throw new SnapbackError('MANIFEST_INVALID', `manifest ${path} holds ${have} bytes of digests, expected ${want}`);
  }
  if (computedId !== parsed.id) {
    throw new SnapbackError('MANIFEST_INVALID', `manifest ${path} has id ${parsed.id} but its content hashes to ${computedId}`, { expected: computedId, actual: parsed.id });
  }
  return new Manifest(parsed, digests);
}

function parseFields(path: string, value: unknown): ManifestJson {
  try {
    return manifestSchema.parse(value);
  } catch (err) {
    const why = err instanceof z.ZodError ? formatZodIssues(err) : (err as Error).message;
    throw invalid(path, why);
  }
}

function infoOf(j: ManifestJson): ManifestInfo {
  return { format: j.format, id: j.id, name: j.name, size: j.size, regionSize: j.regionSize, hash: j.hash, createdAt: j.createdAt, image: j.image };
}

/** The plain reader: the whole file through JSON.parse (any valid layout; small manifests only). */
export async function loadManifestPlain(path: string): Promise<Manifest> {
  let text: string;
  const fh = await open(path, 'r').catch((err: unknown) => {
    throw new SnapbackError('MANIFEST_INVALID', `cannot read manifest ${path}: ${(err as Error).message}`);
  });
  try {
    text = await fh.readFile('utf8');
  } catch (err) {
    throw new SnapbackError('MANIFEST_INVALID', `cannot read manifest ${path}: ${(err as Error).message}`);
  } finally {
    await fh.close();
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw invalid(path, (err as Error).message);
  }
  const parsed = parseFields(path, value);
  const digests = Buffer.from(parsed.hashes, 'base64');
  const id = createHash('sha256').update(JSON.stringify({ format: MANIFEST_FORMAT, size: parsed.size, regionSize: parsed.regionSize, hash: parsed.hash, hashes: parsed.hashes })).digest('hex');
  return finish(path, infoOf(parsed), digests, id);
}

// ---- the streaming reader --------------------------------------------------------------------

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * Finds where the top-level "hashes" value starts in `head` (the index after its opening
 * quote), or -1 if not there yet; -2 if it is not a string (not our layout).
 */
class FieldScanner {
  private depth = 0;
  private inString = false;
  private escape = false;
  private stringStart = 0;
  private expectKey = false;
  private key: string | null = null;
  private pendingKey: string | null = null;
  pos = 0;

  scan(buf: Buffer, end: number): number {
    for (; this.pos < end; this.pos++) {
      const c = buf[this.pos]!;
      if (this.inString) {
        if (this.escape) this.escape = false;
        else if (c === BACKSLASH) this.escape = true;
        else if (c === QUOTE) {
          this.inString = false;
          if (this.depth === 1 && this.expectKey) {
            this.key = buf.toString('utf8', this.stringStart, this.pos);
            this.expectKey = false;
          }
        }
        continue;
      }
      if (c === QUOTE) {
        if (this.depth === 1 && this.pendingKey === 'hashes') return this.pos + 1;
        this.inString = true;
        this.stringStart = this.pos + 1;
        this.pendingKey = null;
      } else if (c === 0x7b || c === 0x5b) {
        if (this.depth === 1 && this.pendingKey === 'hashes') return -2;
        this.depth++;
        this.pendingKey = null;
        if (this.depth === 1) this.expectKey = true;
      } else if (c === 0x7d || c === 0x5d) {
        this.depth--;
      } else if (c === 0x3a) {
        if (this.depth === 1) this.pendingKey = this.key;
      } else if (c === 0x2c) {
        if (this.depth === 1) this.expectKey = true;
      } else if (c > 0x20 && this.depth === 1 && this.pendingKey === 'hashes') {
        return -2; // a number, true, null: not a string
      }
    }
    return -1;
  }
}

/** The streaming reader; null when the file is not laid out as ours (the caller reads it plainly). */
export async function loadManifestStreaming(path: string, options: LoadManifestOptions = {}): Promise<Manifest | null> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    throw new SnapbackError('MANIFEST_INVALID', `cannot read manifest ${path}: ${(err as Error).message}`);
  }
  return loadStreaming(path, size, options.digests ?? 'memory');
}

async function loadStreaming(path: string, fileSize: number, keep: 'memory' | 'file'): Promise<Manifest | null> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw new SnapbackError('MANIFEST_INVALID', `cannot read manifest ${path}: ${(err as Error).message}`);
  }
  let keptOpen = false;
  try {
    const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(4096, fileSize)));
    let pos = 0;
    const read = async (): Promise<number> => {
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, pos);
      pos += bytesRead;
      return bytesRead;
    };
    // 1. the fields before the digests
    const scanner = new FieldScanner();
    let head = Buffer.alloc(0);
    let n = 0;
    let valueStart = -1;
    for (;;) {
      n = await read();
      if (n === 0) return null; // no "hashes" string: let the plain reader say what is wrong
      head = Buffer.concat([head, chunk.subarray(0, n)]);
      valueStart = scanner.scan(head, head.length);
      if (valueStart === -2) return null;
      if (valueStart >= 0) {
        // what of this chunk lies after the opening quote is digests
        const rest = head.subarray(valueStart);
        head = head.subarray(0, valueStart);
        n = rest.length;
        rest.copy(chunk, 0);
        break;
      }
      if (head.length > FIELDS_LIMIT) return null;
    }
    // the fields before "hashes", as an object: cut at the key, close the brace
    const headText = head.toString('utf8');
    const keyAt = headText.lastIndexOf('"hashes"');
    let before: Record<string, unknown>;
    try {
      before = JSON.parse(headText.slice(0, keyAt).replace(/,\s*$/, '') + '}') as Record<string, unknown>;
    } catch {
      return null;
    }
    const { size, regionSize, hash } = before;
    if (typeof size !== 'number' || typeof regionSize !== 'number' || typeof hash !== 'string' || !(SUPPORTED_HASHES as readonly string[]).includes(hash)) return null;
    // 2. the digests: decoded into one buffer, hashed for the id on the way
    const idHash = createHash('sha256').update(idPrefix(size, regionSize, hash));
    // exactly the digests the fields call for (no more than the file can hold): more digests
    // than that decode short of their length below, and the plain reader names the mismatch
    const expected = Math.ceil(size / regionSize) * DIGEST_LENGTHS[hash as HashName];
    const held = Math.min(Number.isSafeInteger(expected) ? expected : 0, Math.floor((fileSize * 3) / 4) + 3);
    // digests read from the file on demand are decoded here only to be checked, a chunk at a time
    const out = keep === 'file' ? null : Buffer.allocUnsafeSlow(held);
    const scratch = out ? null : Buffer.allocUnsafe(Math.floor(((chunk.length + 4) * 3) / 4) + 3);
    const textStart = valueStart;
    let outLen = 0;
    let carry = '';
    let tail: Buffer | null = null;
    let available = n; // bytes of digests text at the start of `chunk`
    for (;;) {
      const end = chunk.subarray(0, available).indexOf(QUOTE);
      const stop = end >= 0 ? end : available;
      idHash.update(chunk.subarray(0, stop));
      let text = carry + chunk.toString('latin1', 0, stop);
      const whole = end >= 0 ? text.length : text.length - (text.length % 4);
      carry = text.slice(whole);
      text = text.slice(0, whole);
      if (text.length % 4 === 1) return null;
      // A character outside base64 (an escape, a space), or padding before the end, decodes to
      // fewer bytes than its length promises: the plain reader decides about such a file.
      const pads = end >= 0 ? (text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0) : 0;
      const wrote = out ? out.write(text, outLen, 'base64') : scratch!.write(text, 0, 'base64');
      if (wrote !== Math.floor((text.length * 3) / 4) - pads) return null;
      if (!out && outLen + wrote > held) return null; // more digests than the fields call for: the plain reader says so
      outLen += wrote;
      if (end >= 0) {
        tail = Buffer.from(chunk.subarray(end, available));
        break;
      }
      available = await read();
      if (available === 0) {
        throw invalid(path, `the file ends inside the region digests (truncated at ${pos} bytes)`);
      }
    }
    const computedId = idHash.update('"}').digest('hex');
    // 3. the fields after the digests
    const parts: Buffer[] = [tail];
    let tailLen = tail.length;
    for (;;) {
      const m = await read();
      if (m === 0) break;
      parts.push(Buffer.from(chunk.subarray(0, m)));
      tailLen += m;
      if (tailLen > FIELDS_LIMIT) return null;
    }
    let value: unknown;
    try {
      value = JSON.parse(headText + Buffer.concat(parts).toString('utf8'));
    } catch (err) {
      throw invalid(path, `${(err as Error).message} (in the fields around the region digests)`);
    }
    const parsed = parseFields(path, value);
    if (parsed.size !== size || parsed.regionSize !== regionSize || parsed.hash !== hash) return null; // keys given twice: not ours
    if (out) return finish(path, infoOf(parsed), out.subarray(0, outLen), computedId);
    const manifest = finish(path, infoOf(parsed), new ManifestDigestFile(fh, path, textStart, outLen), computedId);
    keptOpen = true;
    return manifest;
  } finally {
    if (!keptOpen) await fh.close();
  }
}

// ---- making a manifest -----------------------------------------------------------------------

export function manifestPathFor(imagePath: string): string {
  return `${imagePath}.manifest.json`;
}

export interface CreateManifestOptions {
  regionSize?: number;
  /** The region digest (default DEFAULT_MANIFEST_HASH). */
  hash?: HashName;
  name?: string;
  onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** Told the length of every read of the image (what was read, as opposed to skipped as holes). */
  onRead?: (bytes: number) => void;
  /** Skip the holes of a sparse image file (default true); false reads every byte. */
  skipHoles?: boolean;
  /** The hash worker threads (default: the process's shared pool). */
  hashPool?: HashPool;
}

/**
 * Hashes an image region by region (on the hash workers, several chunks at once) and returns
 * its manifest. Regions that lie wholly in holes of a sparse image file are not read: their
 * digest is that of zeros, computed once.
 */
export async function createManifest(imagePath: string, options: CreateManifestOptions = {}): Promise<Manifest> {
  const regionSize = options.regionSize ?? DEFAULT_MANIFEST_REGION_SIZE;
  if (!isValidRegionSize(regionSize)) throw new SnapbackError('BAD_ARGUMENT', `region size ${regionSize} is not a power of two from 4 KiB to 16 MiB`);
  const hash = options.hash ?? DEFAULT_MANIFEST_HASH;
  const pool = options.hashPool ?? sharedHashPool();
  const dev = new FileDevice(imagePath, { readOnly: true });
  await dev.open();
  try {
    const st = await stat(imagePath);
    const size = dev.size;
    const count = Math.ceil(size / regionSize);
    const dlen = digestLength(hash);
    const digests = Buffer.alloc(count * dlen);
    // The regions to read; the rest are holes, whose digests are filled in here.
    const runs = (options.skipHoles ?? true) && st.isFile() ? await dataRegionRuns(imagePath, size, regionSize) : null;
    const toRead: Array<[number, number]> = runs ?? (count > 0 ? [[0, count]] : []);
    let done = 0;
    let holeStart = 0;
    for (const [first, end] of [...toRead, [count, count] as [number, number]]) {
      if (first > holeStart) {
        const lastShort = first === count && size % regionSize !== 0;
        const full = lastShort ? first - 1 : first;
        if (full > holeStart) digests.fill(zeroRegionDigest(hash, regionSize), holeStart * dlen, full * dlen);
        if (lastShort) zeroRegionDigest(hash, size % regionSize).copy(digests, (count - 1) * dlen);
        done += Math.min(size, first * regionSize) - holeStart * regionSize;
      }
      holeStart = end;
    }
    if (done > 0) options.onProgress?.(done, size);
    const chunkBytes = Math.max(regionSize, 4 << 20);
    const perChunk = chunkBytes / regionSize;
    const inFlight = Math.max(2, pool.threads + 1);
    const buffers = new SharedBufferPool(chunkBytes, inFlight);
    let run = 0;
    let next = toRead[0]?.[0] ?? count;
    /** The next chunk to read: up to perChunk regions, within one run of data. */
    const take = (): [number, number] | null => {
      for (;;) {
        const r = toRead[run];
        if (!r) return null;
        if (next < r[1]) {
          const first = next;
          next = Math.min(r[1], first + perChunk);
          return [first, next];
        }
        run++;
        next = toRead[run]?.[0] ?? count;
      }
    };
    const worker = async () => {
      for (let c = take(); c !== null; c = take()) {
        const [first, end] = c;
        const off = first * regionSize;
        const len = Math.min(end * regionSize, size) - off;
        const buf = await buffers.acquire();
        try {
          const view = buf.subarray(0, len);
          await dev.readInto(view, off);
          options.onRead?.(len);
          const d = await pool.digestRegions(hash, view, regionSize);
          d.copy(digests, first * dlen);
        } finally {
          buffers.release(buf);
        }
        done += len;
        options.onProgress?.(done, size);
      }
    };
    await Promise.all(Array.from({ length: inFlight }, worker));
    return Manifest.fromDigests({ name: options.name ?? basename(imagePath), size, regionSize, hash, createdAt: new Date().toISOString(), image: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } }, digests);
  } finally {
    await dev.close();
  }
}

export { parseSize };
