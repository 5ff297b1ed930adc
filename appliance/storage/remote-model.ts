/**
 * A model arriving from a URL, usable before it has arrived (lazy provisioning): a read-only
 * BlockDevice over a local sparse copy of the image, its manifest, and the bitmap of regions
 * present (present-bitmap.ts). A read of a region already present is served from the local
 * copy; a read of a missing region fetches that region first, ahead of the background download,
 * which fetches the rest at a settable rate with several requests in flight.
 *
 * Every region fetched is hashed (on a hash worker) and compared with the manifest before
 * anything else happens to it: a region that does not match is dropped and fetched again; it is
 * never written, never served. A matching region is written to the local copy, and its bit is
 * persisted only after the copy was synced (data before bit), so a restart of the daemon resumes
 * where it stopped and never trusts bytes that are not on disk. The background
 * download asks for several contiguous missing regions in one request, each verified as soon as
 * it is whole.
 *
 * When the network goes away, a host read of a missing region is retried with a short backoff
 * and then fails with an I/O error for that request only (never wrong data); the download is
 * "stalled" with the error, retries with a growing backoff, and resumes by itself.
 */
import { EventEmitter } from 'node:events';
import { constants as fsc } from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';
import { checkRange, type BlockDevice, type DeviceCapabilities } from './block-device.js';
import { FileDevice } from './file-device.js';
import type { Manifest } from './manifest.js';
import { ModelCorruptError, type ModelVerificationStats, type VerifyRegionsOptions, type VerifyRegionsResult } from './model-image.js';
import { sharedHashPool, type HashPool } from './hash-pool.js';
import { RemoteError, withRetries, type HttpRangeSource } from './http-range-source.js';
import { sleep, systemClock } from '../clock.js';
import { countBits } from './bitmap-file.js';
import { loadPresent, savePresent } from './present-bitmap.js';
import { MODEL_CAPABILITIES, refuseModelWrite } from './read-only-model.js';
import { SnapbackError, fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('remote-model');

/** Offsets, lengths and memory of direct writes are multiples of this (the page size; more than any disk's logical block). */
const DIRECT_ALIGN = 4096;

export interface RemoteModelOptions {
  /** The local copy (made sparse at open when missing; kept across restarts). */
  imagePath: string;
  /** The bitmap of regions present. */
  presentPath: string;
  manifest: Manifest;
  source: HttpRangeSource;
  /** Background download rate in bytes per second; null or 0 for unlimited. */
  rateLimit?: number | null;
  /** Background fetches in flight (default 4). */
  parallel?: number;
  /**
   * Bytes one background request asks for (default 16 MiB): contiguous missing regions are
   * fetched together, each verified as it arrives. With a rate limit a request is one region.
   */
  requestBytes?: number;
  /** Attempts of a host read's fetch before it fails with EIO (default 4), and its backoff (ms). */
  readAttempts?: number;
  readRetryBaseMs?: number;
  readRetryMaxMs?: number;
  /** The background download's backoff after a failure (ms; default 500 doubling to 30 000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** The bitmap is persisted at most this often (ms; default 1000; also at close and at the end). */
  saveDelayMs?: number;
  hashPool?: HashPool;
}

/** Where a download stands (the wire contract's ModelDownload). */
export interface RemoteModelProgress {
  state: 'running' | 'stalled' | 'done';
  regionsTotal: number;
  regionsDone: number;
  bytesDone: number;
  bytesPerSecond: number;
  rateLimitBytesPerSecond: number | null;
  lastError: string | null;
}

/** A region fetched whose bytes do not match the manifest (dropped, fetched again). */
export class RegionMismatchError extends RemoteError {
  constructor(region: number, url: string) {
    super(`region ${region} from ${url} does not match its manifest; it was dropped and will be fetched again`, true);
  }
}

export class RemoteModel extends EventEmitter implements BlockDevice {
  readonly manifest: Manifest;
  readonly imagePath: string;
  private readonly presentPath: string;
  private readonly source: HttpRangeSource;
  private readonly pool: HashPool;
  private readonly file: FileDevice;
  /**
   * The local copy opened for direct writes (O_DIRECT): a verified region goes from its memory
   * to the disk without a copy into the page cache, and the sync that persists its bit has
   * little left to write. Null where the filesystem has no direct I/O (tmpfs); a region whose
   * memory, offset or length is not aligned for it is written through the page cache.
   */
  private direct: FileHandle | null = null;
  private present: Uint8Array;
  private presentCount = 0;
  private bytesPresent = 0;
  private readonly attempts = new Map<number, Promise<Buffer>>();
  /** Regions a background request is fetching, several at a time (see attemptRun). */
  private readonly claimed = new Set<number>();
  private rate: number | null;
  private readonly parallel: number;
  private readonly requestBytes: number;
  private readonly readAttempts: number;
  private readonly readRetryBaseMs: number;
  private readonly readRetryMaxMs: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly saveDelayMs: number;
  private saveTimer: NodeJS.Timeout | null = null;
  private saving: Promise<void> = Promise.resolve();
  private dirty = false;
  private opened = false;
  private background: Promise<void> | null = null;
  private stop = new AbortController();
  private cursor = 0;
  private nextSlotAt = 0;
  /** Aborted when the rate changes: the workers' pacing waits end and are computed again. */
  private rateChanged = new AbortController();
  /** Regions whose last fetch failed, with why; a wrong region stays here until it arrives right. */
  private failing = new Map<number, { message: string; mismatch: boolean }>();
  private lastError: string | null = null;
  private samples: Array<{ at: number; bytes: number }> = [];
  private presentAtOpen = 0;
  private hashedRegions = 0;
  private hashedBytes = 0;
  /** Regions fetched that did not match the manifest, and fetches that failed. */
  mismatches = 0;
  failures = 0;

  constructor(options: RemoteModelOptions) {
    super();
    this.manifest = options.manifest;
    this.imagePath = options.imagePath;
    this.presentPath = options.presentPath;
    this.source = options.source;
    this.pool = options.hashPool ?? sharedHashPool();
    this.file = new FileDevice(options.imagePath, { size: options.manifest.size });
    this.present = new Uint8Array(Math.ceil(options.manifest.regionCount / 8));
    this.rate = options.rateLimit ? options.rateLimit : null;
    this.parallel = Math.max(1, options.parallel ?? 4);
    this.requestBytes = options.requestBytes ?? 16 << 20;
    this.readAttempts = Math.max(1, options.readAttempts ?? 4);
    this.readRetryBaseMs = options.readRetryBaseMs ?? 250;
    this.readRetryMaxMs = options.readRetryMaxMs ?? 2000;
    this.retryBaseMs = options.retryBaseMs ?? 500;
    this.retryMaxMs = options.retryMaxMs ?? 30_000;
    this.saveDelayMs = options.saveDelayMs ?? 1000;
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
  /** Every region is local and verified. */
  get complete(): boolean {
    return this.presentCount === this.manifest.regionCount;
  }

  isPresent(region: number): boolean {
    return (this.present[region >> 3]! & (1 << (region & 7))) !== 0;
  }

  /** Opens (or creates, sparse) the local copy and loads the bitmap of what is already here. */
  async open(): Promise<void> {
    if (this.opened) return;
    const m = this.manifest;
    try {
      const fh = await openFile(this.imagePath, 'a', 0o644);
      try {
        const st = await fh.stat();
        if (st.size !== m.size) await fh.truncate(m.size);
      } finally {
        await fh.close();
      }
    } catch (err) {
      throw fromSystemError(err, `creating the local copy ${this.imagePath}`);
    }
    await this.file.open();
    this.direct = await openFile(this.imagePath, fsc.O_WRONLY | fsc.O_DIRECT).catch(() => null);
    const bits = await loadPresent(this.presentPath, m.id, m.regionCount);
    if (bits) this.present = bits;
    this.presentCount = this.presentAtOpen = countBits(this.present, m.regionCount);
    this.bytesPresent = 0;
    for (let r = 0; r < m.regionCount; r++) if (this.isPresent(r)) this.bytesPresent += this.regionLength(r);
    this.stop = new AbortController();
    this.opened = true;
    log.info({ image: this.imagePath, url: this.source.url.href, present: this.presentCount, of: m.regionCount }, 'model from a URL opened');
  }

  /** Starts the background download of every missing region (no-op when complete or running). */
  startDownload(): void {
    if (!this.opened) throw new SnapbackError('CLOSED', `model ${this.imagePath} is not open`);
    if (this.background || this.complete) return;
    this.cursor = 0;
    this.background = Promise.all(Array.from({ length: this.parallel }, () => this.backgroundWorker()))
      .then(() => undefined)
      .finally(() => {
        this.background = null;
      });
  }

  /** Resolves once every region is present (rejects when the model is closed first). */
  whenComplete(): Promise<void> {
    if (this.complete) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onDone = () => {
        this.off('closed', onClosed);
        resolve();
      };
      const onClosed = () => {
        this.off('complete', onDone);
        reject(new SnapbackError('CLOSED', `the download of ${this.source.url.href} stopped before it was complete`));
      };
      this.once('complete', onDone);
      this.once('closed', onClosed);
    });
  }

  /** The background download's rate in bytes per second; null or 0 for unlimited. */
  setRateLimit(bytesPerSecond: number | null): void {
    this.rate = bytesPerSecond ? bytesPerSecond : null;
    this.nextSlotAt = 0;
    this.rateChanged.abort();
    this.rateChanged = new AbortController();
  }

  progress(): RemoteModelProgress {
    return {
      state: this.complete ? 'done' : this.stalled ? 'stalled' : 'running',
      regionsTotal: this.manifest.regionCount,
      regionsDone: this.presentCount,
      bytesDone: this.bytesPresent,
      bytesPerSecond: this.bytesPerSecond(),
      rateLimitBytesPerSecond: this.rate,
      lastError: this.complete ? null : this.lastError,
    };
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(length);
    await this.readInto(buf, offset);
    return buf;
  }

  async readInto(buf: Buffer, offset: number): Promise<void> {
    if (!this.opened) throw new SnapbackError('CLOSED', `model ${this.imagePath} is not open`);
    checkRange(this.size, offset, buf.length, 'model read');
    if (buf.length === 0) return;
    const rs = this.manifest.regionSize;
    const end = offset + buf.length;
    const first = Math.floor(offset / rs);
    const last = Math.floor((end - 1) / rs);
    const parts: Promise<void>[] = [];
    for (let r = first; r <= last; r++) {
      const a = Math.max(offset, r * rs);
      const b = Math.min(end, (r + 1) * rs);
      const into = buf.subarray(a - offset, b - offset);
      if (this.isPresent(r)) parts.push(this.file.readInto(into, a));
      else parts.push(this.fetchForRead(r).then((bytes) => void bytes.copy(into, 0, a - r * rs, b - r * rs)));
    }
    const results = await Promise.allSettled(parts);
    const failed = results.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** A host read's fetch: a few quick retries, then an I/O error for this request only. */
  private async fetchForRead(region: number): Promise<Buffer> {
    try {
      return await withRetries(() => this.attempt(region), { attempts: this.readAttempts, baseMs: this.readRetryBaseMs, maxMs: this.readRetryMaxMs, signal: this.stop.signal });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new SnapbackError('IO_ERROR', `model region ${region} is not local yet and cannot be fetched: ${why}`, { region }, { cause: err });
    }
  }

  /**
   * One fetch of a region (shared by every reader that asks while it runs): fetched, verified,
   * written to the local copy; the verified bytes are returned. A region already present is
   * read back from the copy.
   */
  private attempt(region: number): Promise<Buffer> {
    const running = this.attempts.get(region);
    if (running) return running;
    const p = (async () => {
      const off = region * this.manifest.regionSize;
      const len = this.regionLength(region);
      if (this.isPresent(region)) return this.file.read(off, len);
      let bytes: Buffer;
      try {
        bytes = await this.source.readRange(off, len, this.stop.signal);
      } catch (err) {
        this.failures++;
        this.noteFailure(region, err);
        throw err;
      }
      await this.accept(region, bytes);
      return bytes;
    })().finally(() => this.attempts.delete(region));
    this.attempts.set(region, p);
    return p;
  }

  /**
   * A region's bytes fetched: verified against the manifest (a mismatch is counted, noted and
   * thrown, nothing written), then written to the local copy and marked present.
   */
  private async accept(region: number, bytes: Buffer): Promise<void> {
    try {
      const actual = await this.pool.digest(this.manifest.hash, bytes);
      if (!actual.equals(this.manifest.digest(region))) {
        this.mismatches++;
        log.warn({ region, url: this.source.url.href }, 'a region fetched does not match the manifest: dropped, fetched again');
        throw new RegionMismatchError(region, this.source.url.href);
      }
    } catch (err) {
      this.failures++;
      this.noteFailure(region, err);
      throw err;
    }
    if (!this.opened) throw new SnapbackError('CLOSED', `model ${this.imagePath} was closed`);
    const at = region * this.manifest.regionSize;
    if (!(await this.writeDirect(at, bytes))) await this.file.write(at, bytes);
    this.markPresent(region, bytes.length);
    this.noteSuccess(region, bytes.length);
  }

  /**
   * The background download's fetch of regions [first, end) in one request: from the first
   * still missing to the last. Each region is verified and written as soon as it is whole. The
   * regions are only claimed against the other background workers: a host read of one of them
   * fetches it on its own at once rather than wait for the request to reach it, and the request
   * then skips it. Throws the first failure (a wrong region, the network) after the request
   * ended, so that a retry fetches what is still missing.
   */
  private async attemptRun(first: number, end: number): Promise<void> {
    while (first < end && this.isPresent(first)) first++;
    while (end > first && this.isPresent(end - 1)) end--;
    if (end - first <= 1) {
      if (end > first) await this.attempt(first);
      return;
    }
    const rs = this.manifest.regionSize;
    for (let r = first; r < end; r++) this.claimed.add(r);
    let failure: unknown = null;
    try {
      await this.source.streamRange(first * rs, Math.min(end * rs, this.size) - first * rs, rs, async (i, bytes) => {
        const r = first + i;
        if (this.isPresent(r) || this.attempts.has(r)) return; // a host read got it, or is getting it
        try {
          await this.accept(r, bytes);
        } catch (err) {
          if (!(err instanceof RegionMismatchError)) throw err;
          failure ??= err;
        }
      }, this.stop.signal, { reuse: true });
    } catch (err) {
      if (!failure) {
        this.failures++;
        this.noteFailure(first, err);
      }
      failure = err;
    } finally {
      for (let r = first; r < end; r++) this.claimed.delete(r);
    }
    if (failure) throw failure;
  }

  /** Writes `bytes` at `offset` with direct I/O: false when it cannot be (no direct handle, not aligned), so the caller writes it otherwise. */
  private async writeDirect(offset: number, bytes: Buffer): Promise<boolean> {
    const fh = this.direct;
    if (!fh || offset % DIRECT_ALIGN !== 0 || bytes.length % DIRECT_ALIGN !== 0) return false;
    let done = 0;
    try {
      while (done < bytes.length) done += (await fh.write(bytes, done, bytes.length - done, offset + done)).bytesWritten;
      return true;
    } catch (err) {
      // EINVAL: this memory is not aligned for direct I/O (only where nothing was written yet)
      if ((err as NodeJS.ErrnoException).code === 'EINVAL' && done === 0) return false;
      throw fromSystemError(err, `writing ${this.imagePath} at ${offset + done}`);
    }
  }

  private markPresent(region: number, len: number): void {
    if (this.isPresent(region)) return;
    this.present[region >> 3]! |= 1 << (region & 7);
    this.presentCount++;
    this.bytesPresent += len;
    this.dirty = true;
    if (this.complete) {
      void this.saveNow().then(
        () => {
          log.info({ image: this.imagePath, regions: this.presentCount }, 'model download complete');
          this.emit('complete');
        },
        (err: unknown) => log.error({ err: (err as Error).message }, 'cannot persist the last regions of the download'),
      );
    } else this.scheduleSave();
  }

  /** Stalled: some region's last fetch failed (the network, the server, or wrong bytes). */
  private get stalled(): boolean {
    return this.failing.size > 0;
  }

  private noteFailure(region: number, err: unknown): void {
    if (this.stop.signal.aborted) return;
    const message = err instanceof Error ? err.message : String(err);
    const was = this.stalled;
    this.failing.set(region, { message, mismatch: err instanceof RegionMismatchError });
    this.lastError = message;
    if (!was) {
      log.warn({ url: this.source.url.href, err: message }, 'model download stalled');
      this.emit('stalled', message);
    }
  }

  /**
   * A region arrived: its own failure is over, and so is every failure of the network or the
   * server (it answers again); a region that came with wrong bytes stays failing until it
   * arrives right.
   */
  private noteSuccess(region: number, bytes: number): void {
    const now = Date.now();
    this.samples.push({ at: now, bytes });
    while (this.samples.length > 0 && this.samples[0]!.at < now - 5000) this.samples.shift();
    if (!this.stalled) return;
    for (const [r, f] of this.failing) if (r === region || !f.mismatch) this.failing.delete(r);
    const still = [...this.failing.values()].pop();
    this.lastError = still ? still.message : null;
    if (!this.stalled) {
      log.info({ url: this.source.url.href }, 'model download resumed');
      this.emit('resumed');
    }
  }

  private bytesPerSecond(): number {
    const now = Date.now();
    const recent = this.samples.filter((s) => s.at >= now - 5000);
    if (recent.length === 0) return 0;
    const bytes = recent.reduce((n, s) => n + s.bytes, 0);
    return Math.round(bytes / Math.max(1, (now - recent[0]!.at) / 1000));
  }

  private regionLength(region: number): number {
    const rs = this.manifest.regionSize;
    return Math.min(rs, this.manifest.size - region * rs);
  }

  /** One background worker: the next missing region, at the rate, retried until it arrives. */
  private async backgroundWorker(): Promise<void> {
    const count = this.manifest.regionCount;
    const signal = this.stop.signal;
    while (!signal.aborted) {
      while (this.cursor < count && (this.isPresent(this.cursor) || this.attempts.has(this.cursor) || this.claimed.has(this.cursor))) this.cursor++;
      if (this.cursor >= count) {
        if (this.complete) return;
        // regions a host read was fetching (and may have failed to): look again once it settled
        await Promise.allSettled([...this.attempts.values()]);
        await sleep(systemClock, 100, signal).catch(() => undefined);
        this.cursor = 0;
        continue;
      }
      // contiguous regions nobody fetches yet, in one request (one region under a rate limit)
      const first = this.cursor;
      const most = this.rate ? 1 : Math.max(1, Math.floor(this.requestBytes / this.manifest.regionSize));
      let end = first + 1;
      while (end < count && end - first < most && !this.isPresent(end) && !this.attempts.has(end) && !this.claimed.has(end)) end++;
      this.cursor = end;
      const region = first;
      try {
        await this.throttle(this.regionLength(region), signal);
        await withRetries(() => this.attemptRun(first, end), {
          attempts: Infinity,
          baseMs: this.retryBaseMs,
          maxMs: this.retryMaxMs,
          signal,
          onRetry: (err, attempt, delay) => log.debug({ region, attempt, delay, err: err.message }, 'background fetch failed; retrying'),
        });
      } catch (err) {
        if (signal.aborted) return;
        // not retryable (the server refuses, the local disk fails): stalled until the next start
        this.noteFailure(region, err);
        log.error({ region, err: (err as Error).message }, 'the model download stopped');
        this.emit('stopped', err);
        return;
      }
    }
  }

  /**
   * Waits for this fetch's turn under the rate limit (bytes per second across all workers). A
   * new rate ends the wait, and the turn is taken again under it (none when it is unlimited).
   */
  private async throttle(bytes: number, signal: AbortSignal): Promise<void> {
    while (this.rate) {
      const now = Date.now();
      const start = Math.max(now, this.nextSlotAt);
      this.nextSlotAt = start + (bytes / this.rate) * 1000;
      if (start <= now) return;
      const changed = this.rateChanged.signal;
      try {
        await sleep(systemClock, start - now, AbortSignal.any([signal, changed]));
        return;
      } catch (err) {
        if (signal.aborted || !changed.aborted) throw err;
        // the rate changed: take the turn again under the new one
      }
    }
  }

  private scheduleSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      void this.saveNow().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'cannot persist the regions downloaded; they will be fetched again after a restart'));
    }, this.saveDelayMs);
    this.saveTimer.unref();
  }

  /** Syncs the local copy, then persists the bits of the regions written before the sync. */
  private saveNow(): Promise<void> {
    this.saving = this.saving.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const snapshot = new Uint8Array(this.present);
      await this.file.flush();
      await savePresent(this.presentPath, this.manifest.id, this.manifest.regionCount, snapshot);
    });
    return this.saving;
  }

  /** What is known: regions present were verified on arrival (or before a restart). */
  verificationStats(): ModelVerificationStats {
    return { regions: this.manifest.regionCount, verified: this.presentCount, bad: 0, fromRecord: this.presentAtOpen, hashedRegions: this.hashedRegions, hashedBytes: this.hashedBytes };
  }

  /**
   * "Verify now": hashes every region present in the local copy again and fetches (and so
   * verifies) every region still missing. A local region that no longer matches is reported bad
   * and forgotten, so that the next read fetches it again.
   */
  async verifyRegions(options: VerifyRegionsOptions = {}): Promise<VerifyRegionsResult> {
    const total = this.manifest.regionCount;
    const bad: number[] = [];
    let next = 0;
    let done = 0;
    let stop = false;
    const worker = async () => {
      while (!stop && next < total && !options.signal?.aborted) {
        const r = next++;
        const off = r * this.manifest.regionSize;
        const len = this.regionLength(r);
        if (this.isPresent(r)) {
          const bytes = await this.file.read(off, len);
          const actual = await this.pool.digest(this.manifest.hash, bytes);
          this.hashedRegions++;
          this.hashedBytes += len;
          if (!actual.equals(this.manifest.digest(r))) {
            this.forget(r, len);
            bad.push(r);
            options.onBad?.(r, new ModelCorruptError(r, this.manifest.digest(r).toString('hex'), actual.toString('hex'), this.imagePath));
            if (options.stopAtFirstBad) stop = true;
          }
        } else await this.fetchForRead(r);
        done++;
        options.onProgress?.(done, total);
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, options.concurrency ?? 4) }, worker));
    bad.sort((a, b) => a - b);
    return { regions: total, bad, aborted: options.signal?.aborted === true };
  }

  /** Verifies every region (fetching what is missing); throws ModelCorruptError at the first bad one. */
  async verifyAll(onProgress?: (done: number, total: number) => void): Promise<void> {
    const res = await this.verifyRegions({ stopAtFirstBad: true, ...(onProgress ? { onProgress } : {}) });
    const first = res.bad[0];
    if (first !== undefined) throw new ModelCorruptError(first, this.manifest.digest(first).toString('hex'), 'changed on disk', this.imagePath);
  }

  private forget(region: number, len: number): void {
    if (!this.isPresent(region)) return;
    this.present[region >> 3]! &= ~(1 << (region & 7));
    this.presentCount--;
    this.bytesPresent -= len;
    this.dirty = true;
    this.scheduleSave();
  }

  write(): Promise<void> { return refuseModelWrite(this.imagePath); }
  trim(): Promise<void> { return refuseModelWrite(this.imagePath); }
  writeZeroes(): Promise<void> { return refuseModelWrite(this.imagePath); }
  async flush(): Promise<void> {} // nothing to flush: never written by its users

  /** Stops the download, persists what arrived, closes the local copy. */
  async close(): Promise<void> {
    if (!this.opened) return;
    this.stop.abort(new SnapbackError('CLOSED', `model ${this.imagePath} was closed`));
    await this.background?.catch(() => undefined);
    await Promise.allSettled([...this.attempts.values()]);
    this.opened = false;
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    await this.saveNow().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'cannot persist the regions downloaded'));
    await this.file.close();
    await this.direct?.close().catch(() => undefined);
    this.direct = null;
    this.emit('closed');
  }
}
