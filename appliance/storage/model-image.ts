/**
 * Model image: the read-only pristine disk the host must find again. A file (or
 * block device) plus its manifest. Every mutating call is refused here, so the model can never
 * be written through this layer (invariant 6).
 *
 * Verification: with `verify: 'lazy'` (default) the first read of each manifest region reads
 * the whole region, hashes it on a hash worker thread (never on the event loop) and compares it
 * with the manifest; the read is served from those verified bytes. A region that does not match
 * fails every read of it with MODEL_CORRUPT (expected and actual digests attached), so corrupt
 * model bytes never reach the host or the working disk. At open, a file whose size differs from
 * the manifest is refused; one whose mtime or inode changed since the manifest was made is
 * fully verified before it is used.
 *
 * With `verifiedDir` (the state directory's), what was verified is kept for this manifest and
 * this exact state of the file (verified-record.ts), so the next open trusts those regions
 * instead of hashing them again; a file changed in any way is hashed again.
 */
import { stat } from 'node:fs/promises';
import { checkRange, type BlockDevice, type DeviceCapabilities, type DirectRead } from './block-device.js';
import { FileDevice } from './file-device.js';
import { Manifest, manifestPathFor } from './manifest.js';
import { sharedHashPool, type HashPool } from './hash-pool.js';
import { SharedBufferPool } from './shared-buffers.js';
import { MODEL_CAPABILITIES, refuseModelWrite } from './read-only-model.js';
import { fileIdentity, loadVerified, saveVerified, verifiedRecordPath, type VerifiedKey } from './verified-record.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

export class ModelCorruptError extends SnapbackError {
  constructor(
    readonly region: number,
    readonly expected: string,
    readonly actual: string,
    imagePath: string,
  ) {
    super('MODEL_CORRUPT', `model ${imagePath} region ${region} does not match its manifest (expected ${expected.slice(0, 16)}…, found ${actual.slice(0, 16)}…)`, {
      region,
      expected,
      actual,
    });
  }
}

export interface ModelImageOptions {
  manifestPath?: string;
  verify?: 'lazy' | 'off';
  /** Keep what was verified here across opens (one file per manifest id); none: in memory only. */
  verifiedDir?: string;
  /** The hash worker threads (default: the process's shared pool). */
  hashPool?: HashPool;
  /** Save the verified record this long after a region is first verified (default 5 s; also at close). */
  recordSaveDelayMs?: number;
  /** No record is saved for a file changed less than this long before open (default 100 ms; see saveRecord). */
  recordRacyMs?: number;
}

/** What verification knows and has done since open. */
export interface ModelVerificationStats {
  regions: number;
  /** Regions known to match the manifest (hashed, or trusted from the record). */
  verified: number;
  /** Regions found not to match. */
  bad: number;
  /** Regions trusted at open from the record of an earlier verification. */
  fromRecord: number;
  /** Regions hashed since open, and their bytes. */
  hashedRegions: number;
  hashedBytes: number;
}

export interface VerifyRegionsOptions {
  /** Hash regions already known good again (default true: "verify now" means now). */
  recheck?: boolean;
  /** Stop at the first region that does not match (default false). */
  stopAtFirstBad?: boolean;
  /** Regions hashed at once (default: twice the hash threads). */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
  onBad?: (region: number, err: ModelCorruptError) => void;
  signal?: AbortSignal;
}

export interface VerifyRegionsResult {
  regions: number;
  bad: number[];
  aborted: boolean;
}

/** Verified records are saved only for a file unchanged for at least this long before open (see saveRecord). */
const RACY_MS = 100;

const log = childLogger('model');

export class ModelImage implements BlockDevice {
  readonly imagePath: string;
  readonly manifestPath: string;
  private file: FileDevice;
  private _manifest: Manifest | null = null;
  private verified: Uint8Array = new Uint8Array(0); // 0 unknown, 1 good, 2 bad
  private verifying = new Map<number, Promise<void>>();
  private readonly verifyMode: 'lazy' | 'off';
  private readonly pool: HashPool;
  private slabs: SharedBufferPool | null = null;
  private readonly verifiedDir: string | undefined;
  private recordKey: VerifiedKey | null = null;
  private recordTrusted = false;
  private recordDirty = false;
  private recordTimer: NodeJS.Timeout | null = null;
  private recordSaving: Promise<void> = Promise.resolve();
  private readonly recordSaveDelayMs: number;
  private readonly recordRacyMs: number;
  private openedAtMs = 0;
  private stats: ModelVerificationStats = { regions: 0, verified: 0, bad: 0, fromRecord: 0, hashedRegions: 0, hashedBytes: 0 };

  constructor(imagePath: string, options: ModelImageOptions = {}) {
    this.imagePath = imagePath;
    this.manifestPath = options.manifestPath ?? manifestPathFor(imagePath);
    this.file = new FileDevice(imagePath, { readOnly: true });
    this.verifyMode = options.verify ?? 'lazy';
    this.pool = options.hashPool ?? sharedHashPool();
    this.verifiedDir = options.verifiedDir;
    this.recordSaveDelayMs = options.recordSaveDelayMs ?? 5000;
    this.recordRacyMs = options.recordRacyMs ?? RACY_MS;
  }

  get manifest(): Manifest {
    if (!this._manifest) throw new SnapbackError('CLOSED', `model ${this.imagePath} is not open`);
    return this._manifest;
  }
  get id(): string {
    return this.manifest.id;
  }
  get size(): number {
    return this.manifest.size;
  }
  get capabilities(): DeviceCapabilities {
    return MODEL_CAPABILITIES;
  }

  /** Where what was verified is kept, or null (no verifiedDir, or not a regular file). */
  get verifiedRecordPath(): string | null {
    return this.verifiedDir && this.recordKey ? verifiedRecordPath(this.verifiedDir, this.recordKey.manifestId) : null;
  }

  verificationStats(): ModelVerificationStats {
    return { ...this.stats };
  }

  async open(): Promise<void> {
    if (this._manifest) return;
    // the digests stay in the manifest file, read when a region is verified (no memory for them)
    const manifest = await Manifest.load(this.manifestPath, { digests: 'file' });
    try {
      await this.file.open();
    } catch (err) {
      await manifest.close();
      throw err;
    }
    if (this.file.size !== manifest.size) {
      await this.file.close();
      await manifest.close();
      throw new SnapbackError('SIZE_MISMATCH', `model ${this.imagePath} holds ${this.file.size} bytes but its manifest says ${manifest.size}`, {
        expected: manifest.size,
        actual: this.file.size,
      });
    }
    this._manifest = manifest;
    this.openedAtMs = Date.now();
    const count = manifest.regionCount;
    this.verified = new Uint8Array(count);
    this.stats = { regions: count, verified: 0, bad: 0, fromRecord: 0, hashedRegions: 0, hashedBytes: 0 };
    // regions being verified at once: enough to keep every hash thread busy, within 32 MiB
    this.slabs = new SharedBufferPool(manifest.regionSize, Math.max(2, Math.min(this.pool.threads * 2 + 1, Math.floor((32 << 20) / manifest.regionSize))));
    try {
      const st = await stat(this.imagePath);
      // the file open for reading, not whatever the path names now
      const identity = this.verifiedDir ? await fileIdentity(this.file.fd) : null;
      if (identity) {
        this.recordKey = { manifestId: manifest.id, regionCount: count, identity };
        this.recordTrusted = Number(BigInt(identity.ctimeNs) / 1_000_000n) <= this.openedAtMs - this.recordRacyMs;
        const bits = await loadVerified(verifiedRecordPath(this.verifiedDir!, manifest.id), this.recordKey);
        if (bits) {
          for (let r = 0; r < count; r++) if (bits[r >> 3]! & (1 << (r & 7))) this.verified[r] = 1;
          this.stats.fromRecord = this.stats.verified = countOnes(this.verified);
          log.debug({ image: this.imagePath, regions: this.stats.fromRecord, of: count }, 'model regions verified earlier, trusted from the record');
        }
      }
      const recorded = manifest.json.image;
      if (st.mtimeMs !== recorded.mtimeMs || st.ino !== recorded.ino) {
        const left = count - this.stats.verified;
        if (left > 0) {
          log.warn({ image: this.imagePath, regions: left }, 'model file changed since its manifest was made: verifying every region');
          await this.verifyRegions({ recheck: false, stopAtFirstBad: true }).then((res) => {
            const first = res.bad[0];
            if (first !== undefined) this.throwIfBad(first);
          });
        }
      }
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Hashes every region (again); throws ModelCorruptError at the first mismatch. */
  async verifyAll(onProgress?: (done: number, total: number) => void): Promise<void> {
    const res = await this.verifyRegions({ recheck: true, stopAtFirstBad: true, ...(onProgress ? { onProgress } : {}) });
    const first = res.bad[0];
    if (first !== undefined) this.throwIfBad(first);
  }

  /**
   * Hashes the model's regions on the hash workers, several at once, and says which do not
   * match; for "verify now" and for a changed file at open. Progress counts regions done.
   */
  async verifyRegions(options: VerifyRegionsOptions = {}): Promise<VerifyRegionsResult> {
    const m = this.manifest;
    const total = m.regionCount;
    const recheck = options.recheck ?? true;
    const concurrency = Math.max(1, options.concurrency ?? this.pool.threads * 2);
    const bad: number[] = [];
    let next = 0;
    let done = 0;
    let stop = false;
    const worker = async () => {
      while (!stop && next < total) {
        if (options.signal?.aborted) {
          stop = true;
          break;
        }
        const r = next++;
        if (recheck || this.verified[r] !== 1) {
          try {
            await this.verifyRegion(r, recheck);
          } catch (err) {
            if (!(err instanceof ModelCorruptError)) {
              stop = true;
              throw err;
            }
            bad.push(r);
            options.onBad?.(r, err);
            if (options.stopAtFirstBad) stop = true;
          }
        }
        done++;
        options.onProgress?.(done, total);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, total)) }, worker));
    bad.sort((a, b) => a - b);
    return { regions: total, bad, aborted: options.signal?.aborted === true };
  }

  /** Hashes one region now (whatever was known of it) and says whether it matches. */
  async checkRegion(region: number): Promise<boolean> {
    try {
      await this.verifyRegion(region, true);
      return true;
    } catch (err) {
      if (err instanceof ModelCorruptError) return false;
      throw err;
    }
  }

  private throwIfBad(region: number): void {
    throw this.corrupt(region, 'unknown');
  }
  private corrupt(region: number, actualIfUnknown: string): ModelCorruptError {
    const f = this.failed.get(region);
    return new ModelCorruptError(region, f?.expected ?? 'unknown', f?.actual ?? actualIfUnknown, this.imagePath);
  }
  /** The digests expected and found for regions that failed (for errors raised later). */
  private failed = new Map<number, { expected: string; actual: string }>();

  /**
   * Reads the whole region, hashes it on a worker and compares; `use` gets the verified bytes
   * (while they are still held) so a read can be served from exactly what was hashed.
   */
  private verifyRegion(region: number, force = false, use?: (bytes: Buffer) => void): Promise<void> {
    const state = this.verified[region];
    if (state === 1 && !force) return Promise.resolve();
    const m = this.manifest;
    if (state === 2 && !force) {
      return Promise.reject(this.corrupt(region, 'previously failed'));
    }
    const existing = this.verifying.get(region);
    if (existing) return existing;
    const slabs = this.slabs!;
    const p = (async () => {
      const off = region * m.regionSize;
      const len = Math.min(m.regionSize, m.size - off);
      const slab = await slabs.acquire();
      try {
        const data = slab.subarray(0, len);
        await this.file.readInto(data, off);
        const actual = await this.pool.digest(m.hash, data);
        this.stats.hashedRegions++;
        this.stats.hashedBytes += len;
        const expected = await m.readDigest(region);
        if (!actual.equals(expected)) {
          this.setState(region, 2);
          this.failed.set(region, { expected: expected.toString('hex'), actual: actual.toString('hex') });
          throw new ModelCorruptError(region, expected.toString('hex'), actual.toString('hex'), this.imagePath);
        }
        this.setState(region, 1);
        use?.(data);
      } finally {
        slabs.release(slab);
      }
    })().finally(() => this.verifying.delete(region));
    this.verifying.set(region, p);
    return p;
  }

  private setState(region: number, s: 1 | 2): void {
    const was = this.verified[region];
    if (was === s) return;
    if (was === 1) this.stats.verified--;
    if (was === 2) this.stats.bad--;
    this.verified[region] = s;
    if (s === 1) this.stats.verified++;
    else this.stats.bad++;
    this.recordChanged();
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  async readInto(buf: Buffer, offset: number): Promise<void> {
    checkRange(this.size, offset, buf.length, 'model read');
    if (this.verifyMode !== 'lazy' || buf.length === 0) {
      await this.file.readInto(buf, offset);
      return;
    }
    const m = this.manifest;
    const rs = m.regionSize;
    const end = offset + buf.length;
    const first = Math.floor(offset / rs);
    const last = Math.floor((end - 1) / rs);
    // Runs of verified regions are read straight from the file; every other region is read
    // whole, verified, and its part of this read copied from the verified bytes.
    const parts: Promise<void>[] = [];
    let runStart = -1;
    const flushRun = (upTo: number) => {
      if (runStart < 0) return;
      const a = Math.max(offset, runStart * rs);
      const b = Math.min(end, upTo * rs);
      parts.push(this.file.readInto(buf.subarray(a - offset, b - offset), a));
      runStart = -1;
    };
    for (let r = first; r <= last; r++) {
      if (this.verified[r] === 1) {
        if (runStart < 0) runStart = r;
        continue;
      }
      flushRun(r);
      parts.push(this.readVerifying(r, buf, offset));
    }
    flushRun(last + 1);
    const results = await Promise.allSettled(parts);
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * The model file behind a range whose every region is verified (or with verification off),
   * for a copy in the kernel (BlockDevice.directRead); null while any of them is not: the
   * caller reads it with readInto(), which verifies it.
   */
  directRead(offset: number, length: number): DirectRead | null {
    if (length === 0 || !Number.isSafeInteger(offset) || offset < 0 || offset + length > this.size) return null;
    if (this.verifyMode === 'lazy') {
      const rs = this.manifest.regionSize;
      const last = Math.floor((offset + length - 1) / rs);
      for (let r = Math.floor(offset / rs); r <= last; r++) if (this.verified[r] !== 1) return null;
    }
    return this.file.directRead(offset, length);
  }

  /** The part of region `r` inside the read (buf at offset), from verified bytes. */
  private async readVerifying(r: number, buf: Buffer, offset: number): Promise<void> {
    const rs = this.manifest.regionSize;
    const a = Math.max(offset, r * rs);
    const b = Math.min(offset + buf.length, (r + 1) * rs);
    let copied = false;
    await this.verifyRegion(r, false, (bytes) => {
      bytes.copy(buf, a - offset, a - r * rs, b - r * rs);
      copied = true;
    });
    // joined a verification already under way, or the region was verified meanwhile
    if (!copied) await this.file.readInto(buf.subarray(a - offset, b - offset), a);
  }

  private recordChanged(): void {
    if (!this.recordKey) return;
    this.recordDirty = true;
    if (this.recordTimer) return;
    this.recordTimer = setTimeout(() => {
      this.recordTimer = null;
      void this.saveRecord();
    }, this.recordSaveDelayMs);
    this.recordTimer.unref();
  }

  /**
   * Writes what is verified now to the record. Skipped when the file changed just before open:
   * a file's times have a coarse granularity, so a change within the same tick after hashing
   * could leave its identity unchanged; a file quiet for recordRacyMs before open cannot.
   */
  private saveRecord(): Promise<void> {
    const key = this.recordKey;
    if (!key || !this.verifiedDir || !this.recordDirty || !this.recordTrusted) return this.recordSaving;
    this.recordDirty = false;
    const bits = new Uint8Array(Math.ceil(key.regionCount / 8));
    for (let r = 0; r < key.regionCount; r++) if (this.verified[r] === 1) bits[r >> 3]! |= 1 << (r & 7);
    const path = verifiedRecordPath(this.verifiedDir, key.manifestId);
    this.recordSaving = this.recordSaving
      .then(() => saveVerified(path, key, bits))
      .catch((err: unknown) => log.warn({ path, err: (err as Error).message }, 'cannot save the record of verified model regions; they will be hashed again'));
    return this.recordSaving;
  }

  write(): Promise<void> { return refuseModelWrite(this.imagePath); }
  trim(): Promise<void> { return refuseModelWrite(this.imagePath); }
  writeZeroes(): Promise<void> { return refuseModelWrite(this.imagePath); }
  async flush(): Promise<void> {} // nothing to flush: never written

  async close(): Promise<void> {
    await Promise.allSettled([...this.verifying.values()]);
    if (this.recordTimer) clearTimeout(this.recordTimer);
    this.recordTimer = null;
    await this.saveRecord();
    await this.file.close();
    await this._manifest?.close();
    this._manifest = null;
    this.recordKey = null;
    this.slabs?.trim();
    this.slabs = null;
  }
}

function countOnes(states: Uint8Array): number {
  let n = 0;
  for (let i = 0; i < states.length; i++) if (states[i] === 1) n++;
  return n;
}
