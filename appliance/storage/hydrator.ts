/**
 * Hydrator: restores pending regions (D and not S) from the model to the working disk in the
 * background. It copies each contiguous run in the kernel (copy_file_range(2) through the native
 * addon, on libuv's thread pool: one copy, page cache to page cache) where the model can give
 * the file behind it with its bytes already trusted (BlockDevice.directRead: verified, or
 * verification off) and both files are on one file system; otherwise in large chunks through
 * buffers with several reads and writes in flight (a region not yet verified is verified as it
 * is read). It makes each batch durable with one flush, and only then clears D for the
 * batch's regions (lazily persisted: a crash before that only means the copy is done again).
 * It yields to host I/O, honours a rate limit in bytes per second, and a host write to a region
 * being copied waits for that region only (the batch's region locks), never for the restore.
 *
 * A restore that fails (a full state filesystem, an I/O error) is retried with exponential
 * backoff up to a bounded delay, for as long as regions are pending; its last error stays in
 * `progress()` until a retry gets through, so status can say why the restore is not moving.
 */
import { EventEmitter } from 'node:events';
import type { ProtectedDisk } from './protected-disk.js';
import { sleep, systemClock, type Clock, type TimerHandle } from '../clock.js';
import { fromSystemError, isSnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import { KERNEL_COPY_UNSUPPORTED, kernelCopy, nativeIo, type NativeIo } from '../native/native-io.js';

const log = childLogger('hydrator');

export interface HydratorOptions {
  /** Bytes per second; null or 0 = unlimited. */
  rateLimit?: number | null;
  /** Bytes copied per batch (one flush and one lock set per batch; default 8 MiB). */
  batchBytes?: number;
  /**
   * Bytes per batch of runToCompletion(), which runs while no host request can wait for a
   * batch's locks (the eager restore at a session end, with host I/O stopped; `snapback
   * restore`): default 32 MiB, or `batchBytes` where that is given. Fewer flushes: on ext4 each is a journal commit (measured with
   * `npm run bench`, restore of 100 % of a 256 MiB disk: 0.87-0.90x dd with 8 MiB batches,
   * 0.99-1.04x with 32 MiB).
   */
  fullSpeedBatchBytes?: number;
  /** Bytes per read/write chunk. */
  chunkBytes?: number;
  /** Chunks in flight at once. */
  parallel?: number;
  /** Longest the hydrator waits for host I/O to drain before copying anyway (ms). */
  maxYieldMs?: number;
  /** First delay before a failed restore is retried (ms); it doubles per failure. Default 1 s. */
  retryBaseMs?: number;
  /** Longest delay between retries (ms). Default 60 s. */
  retryMaxMs?: number;
  /** Time and timers of the retries (tests pass a fake clock). */
  clock?: Clock;
  /** The native addon, for copies in the kernel (default: loaded where built; null: through buffers only). */
  native?: NativeIo | null;
}

/** Why the background restore is not moving: its last failure, until a retry gets through. */
export interface HydrationError {
  message: string;
  /** The SnapbackError code (NO_SPACE, IO_ERROR, MODEL_CORRUPT, …), or null for another error. */
  code: string | null;
  /** When it last failed (ms since 1970). */
  at: number;
  /** Failures in a row. */
  attempts: number;
  /** The wait before the next retry (ms), or null when none is scheduled (stopped, or retrying now). */
  retryInMs: number | null;
  /** When the next retry runs (ms since 1970), or null. */
  nextRetryAt: number | null;
}

export interface HydrationProgress {
  running: boolean;
  totalAtStart: number;
  done: number;
  pending: number;
  bytesPerSecond: number;
  etaSeconds: number | null;
  /** The last error's message (null when the restore is moving or done). */
  error: string | null;
  lastError: HydrationError | null;
}

/** A batch of regions copied from the model, holding their region locks until cleared. */
interface CopiedBatch {
  /** The regions, ascending. */
  todo: number[];
  regions: Set<number>;
  /** The model the bytes came from. */
  model: ProtectedDisk['model'];
  release: () => void;
  bytes: number;
  /** The flush that makes the copy durable, once started. */
  flushed: Promise<void> | null;
}

export class Hydrator extends EventEmitter {
  private rate: number | null;
  private readonly batchBytes: number;
  private readonly fullSpeedBatchBytes: number;
  private readonly chunkBytes: number;
  private readonly parallel: number;
  private readonly maxYieldMs: number;
  private loop: Promise<void> | null = null;
  private stopping = false;
  private started = false;
  private cursor = 0;
  private totalAtStart = 0;
  private done = 0;
  private startedAt = 0;
  private bytesCopied = 0;
  private lastError: HydrationError | null = null;
  private retryTimer: TimerHandle | null = null;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly clock: Clock;
  private finishedAt = 0;
  /** The pacing under a rate limit counts from here: the start, or the last change of the rate. */
  private paceFrom = 0;
  private paceBytes = 0;
  /** Aborted to end the pacing wait in progress (a new rate, a stop), so that it is computed again. */
  private pacingWait: AbortController | null = null;
  /** Copy buffers, allocated once: fresh ones per batch cost page faults and zeroing. */
  private readonly buffers: Buffer[] = [];
  private readonly native: NativeIo | null;
  /** Set once the kernel refused a copy between the model and the disk (other file systems). */
  private kernelCopyRefused = false;
  /** Bytes restored by copies in the kernel, and through buffers. */
  readonly copyStats = { kernelBytes: 0, bufferBytes: 0 };

  constructor(
    private readonly pd: ProtectedDisk,
    options: HydratorOptions = {},
  ) {
    super();
    this.rate = options.rateLimit || null;
    this.batchBytes = options.batchBytes ?? 8 << 20;
    this.fullSpeedBatchBytes = options.fullSpeedBatchBytes ?? options.batchBytes ?? 32 << 20;
    this.chunkBytes = options.chunkBytes ?? 1 << 20;
    this.parallel = options.parallel ?? 4;
    this.maxYieldMs = options.maxYieldMs ?? 20;
    this.retryBaseMs = options.retryBaseMs ?? 1000;
    this.retryMaxMs = options.retryMaxMs ?? 60_000;
    this.clock = options.clock ?? systemClock;
    this.native = options.native === undefined ? nativeIo() : options.native;
  }

  get rateLimit(): number | null {
    return this.rate;
  }
  /**
   * Takes effect at once: the pacing starts again from now (bytes copied under another rate,
   * or unlimited, are no debt), and a pacing wait in progress ends to be computed again.
   */
  setRateLimit(bytesPerSecond: number | null): void {
    this.rate = bytesPerSecond && bytesPerSecond > 0 ? bytesPerSecond : null;
    this.restartPacing();
  }

  private restartPacing(): void {
    this.paceFrom = this.clock.now();
    this.paceBytes = 0;
    this.pacingWait?.abort();
  }

  get running(): boolean {
    return this.loop !== null;
  }

  progress(): HydrationProgress {
    const pending = this.pd.log.pendingCount;
    const elapsed = (this.clock.now() - this.startedAt) / 1000;
    const bps = this.loop && elapsed > 0 ? this.bytesCopied / elapsed : 0;
    return {
      running: this.loop !== null,
      totalAtStart: this.totalAtStart,
      done: this.done,
      pending,
      bytesPerSecond: Math.round(bps),
      etaSeconds: bps > 0 ? (pending * this.pd.regionSize) / bps : null,
      error: this.lastError?.message ?? null,
      lastError: this.lastError ? { ...this.lastError } : null,
    };
  }

  /** Begins restoring in the background (no-op if already running or nothing is pending). */
  start(): void {
    this.started = true;
    this.stopping = false;
    this.kick();
  }

  /** Called when new pending regions may exist (a session ended); also ends a retry's wait. */
  kick(): void {
    if (!this.started || this.loop || this.pd.log.pendingCount === 0) return;
    this.cancelRetry();
    this.cursor = 0;
    this.totalAtStart = this.pd.log.pendingCount;
    this.done = 0;
    this.bytesCopied = 0;
    this.startedAt = this.clock.now();
    this.restartPacing();
    this.emit('start', this.totalAtStart);
    this.loop = this.run(false)
      .then(
        () => {
          this.lastError = null;
        },
        (err: unknown) => this.failed(err),
      )
      .finally(() => {
        this.loop = null;
        this.finishedAt = this.clock.now();
        this.emit('idle');
        // a session may have ended meanwhile
        if (!this.stopping && this.lastError === null && this.pd.log.pendingCount > 0) this.kick();
      });
  }

  /** Records a failed restore and schedules its retry (backoff doubling up to retryMaxMs). */
  private failed(err: unknown): void {
    const attempts = (this.lastError?.attempts ?? 0) + 1;
    const delay = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** Math.min(30, attempts - 1));
    const now = Date.now();
    const retry = this.started && !this.stopping;
    this.lastError = {
      message: (err as Error)?.message ?? String(err),
      code: isSnapbackError(err) ? err.code : null,
      at: now,
      attempts,
      retryInMs: retry ? delay : null,
      nextRetryAt: retry ? now + delay : null,
    };
    log.error({ err, attempts, retryInMs: retry ? delay : null, pending: this.pd.log.pendingCount }, 'the background restore stopped on an error; it is retried');
    this.emit('error-stopped', err);
    if (retry) {
      this.retryTimer = this.clock.setTimeout(() => {
        this.retryTimer = null;
        this.kick();
      }, delay);
    }
  }

  private cancelRetry(): void {
    if (this.retryTimer !== null) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.lastError) {
      this.lastError.retryInMs = null;
      this.lastError.nextRetryAt = null;
    }
  }

  /** Restores everything pending now, at full speed, and resolves when none is left. */
  async runToCompletion(onProgress?: (done: number, total: number) => void): Promise<void> {
    const wasStarted = this.started;
    this.started = false;
    if (this.loop) {
      this.stopping = true;
      await this.loop;
      this.stopping = false;
    }
    this.cursor = 0;
    this.totalAtStart = this.pd.log.pendingCount;
    this.done = 0;
    this.bytesCopied = 0;
    this.startedAt = this.clock.now();
    try {
      await this.run(true, onProgress);
      this.cancelRetry();
      this.lastError = null;
    } finally {
      this.finishedAt = this.clock.now();
      this.started = wasStarted;
    }
  }

  async stop(): Promise<void> {
    this.started = false;
    this.stopping = true;
    this.cancelRetry();
    this.pacingWait?.abort();
    if (this.loop) await this.loop;
    this.stopping = false;
    await this.pd.log.sync().catch(() => undefined);
  }

  /**
   * Stops the background restore until the returned function is called, which starts it again
   * if it was started (a model switch: nothing is copied from the old model meanwhile).
   */
  async pause(): Promise<() => void> {
    const wasStarted = this.started;
    await this.stop();
    return () => {
      if (wasStarted) this.start();
    };
  }

  get lastFinishedAt(): number {
    return this.finishedAt;
  }

  /**
   * The restore loop. Batches are pipelined: a batch's flush runs while the next batch is
   * copied, and a batch's regions are cleared (and its region locks released) only once its own
   * flush is done, so that no region is ever marked restored before its bytes are durable. At
   * most two batches hold locks at once. Under a rate limit each batch is finished before the
   * pacing wait, which holds no locks.
   */
  private async run(fullSpeed: boolean, onProgress?: (done: number, total: number) => void): Promise<void> {
    const rs = this.pd.regionSize;
    // under a rate limit, batches of at most a quarter second's worth keep progress honest
    const batch = fullSpeed ? this.fullSpeedBatchBytes : this.rate ? Math.min(this.batchBytes, Math.floor(this.rate / 4)) : this.batchBytes;
    const maxRegions = Math.max(1, Math.floor(batch / rs));
    let sinceSync = 0;
    /** The batch whose flush is running (copied, not yet cleared), if any. */
    let flushing: CopiedBatch | null = null;
    /** The batch being copied: it holds its locks too. */
    let copying: CopiedBatch | null = null;
    const finishFlushing = async (): Promise<void> => {
      const b = flushing;
      if (!b) return;
      flushing = null;
      if (await this.finishBatch(b, onProgress)) sinceSync += b.bytes;
      if (sinceSync >= 256 << 20) {
        sinceSync = 0;
        await this.pd.log.sync();
      }
    };
    try {
      for (;;) {
        if (this.stopping && !fullSpeed) break;
        if (!fullSpeed) {
          // under a rate limit: no pipelining, and no locks held while waiting for the pace
          if (this.rate) {
            await finishFlushing();
            await this.throttle();
            if (this.stopping) break;
          }
          await this.yieldToHost();
        }
        const inFlush = flushing?.regions;
        const first = this.nextCandidate(inFlush);
        if (first < 0) {
          // nothing pending but what is being flushed: finish it (a switch may leave it pending)
          if (!flushing) break;
          await finishFlushing();
          continue;
        }
        // the batch: pending regions from `first`, up to maxRegions, not locked by a host write
        const candidates: number[] = [];
        for (let r = first; r < this.pd.log.regionCount && candidates.length < maxRegions; r++) {
          if (this.pd.log.isPending(r) && !inFlush?.has(r)) candidates.push(r);
          else if (r - first > maxRegions * 4) break;
        }
        this.cursor = (candidates[candidates.length - 1] ?? first) + 1;
        const { locked, release } = this.pd.locks.tryAcquire(candidates);
        const todo = locked.filter((r) => this.pd.log.isPending(r));
        if (todo.length === 0) {
          release();
          if (flushing) {
            await finishFlushing();
            continue;
          }
          // every candidate is held by a host write: wait for the first to be released
          const held = candidates.find((r) => this.pd.locks.isLocked(r) && !locked.includes(r));
          if (held !== undefined) await this.pd.locks.released(held);
          continue;
        }
        // the model at the start of the batch: if a switch put another in force meanwhile, the
        // bytes copied are the old model's and the regions stay pending (copied again)
        const model = this.pd.model;
        copying = { todo, regions: new Set(todo), model, release, bytes: 0, flushed: null };
        copying.bytes = await this.copyRegions(todo, model);
        // the previous batch's flush ran while this one was copied
        await finishFlushing();
        flushing = copying;
        copying = null;
        flushing.flushed = this.pd.disk.flush();
        // awaited in finishBatch; a stop or an error before then must not leave it unhandled
        flushing.flushed.catch(() => undefined);
      }
      await finishFlushing();
    } finally {
      // an error (or a stop) with batches still holding locks: they stay pending, unlocked
      for (const b of [flushing, copying]) b?.release();
    }
    await this.pd.log.sync();
  }

  /** The first pending region at or after the cursor (wrapping once), not in `skip`; -1 if none. */
  private nextCandidate(skip: ReadonlySet<number> | undefined): number {
    for (let pass = 0; pass < 2; pass++) {
      let r = this.pd.log.nextPending(this.cursor);
      while (r >= 0 && skip?.has(r)) r = this.pd.log.nextPending(r + 1);
      if (r >= 0 || this.cursor === 0) return r;
      this.cursor = 0;
    }
    return -1;
  }

  /**
   * Waits for a batch's flush, then marks its regions restored (unless another model was put
   * in force since it was copied) and releases its locks. True when its regions were cleared.
   */
  private async finishBatch(b: CopiedBatch, onProgress?: (done: number, total: number) => void): Promise<boolean> {
    try {
      await b.flushed;
      if (this.pd.model !== b.model) return false;
      for (const r of b.todo) this.pd.log.clearRestored(r);
      this.pd.emitChanges(b.todo, 0);
      this.done += b.todo.length;
      this.bytesCopied += b.bytes;
      this.paceBytes += b.bytes;
      onProgress?.(this.done, this.totalAtStart);
      if (this.lastError) {
        log.info({ after: this.lastError.attempts }, 'the background restore is moving again');
        this.lastError = null;
      }
      this.emit('progress', this.done, this.totalAtStart);
      return true;
    } finally {
      b.release();
    }
  }

  /**
   * Copies the regions (ascending) from model to disk, coalescing contiguous runs: each run in
   * the kernel where it can be, what is left of it through buffers.
   */
  private async copyRegions(regions: number[], model: ProtectedDisk['model']): Promise<number> {
    const rs = this.pd.regionSize;
    const size = this.pd.size;
    const chunks: { off: number; len: number }[] = [];
    let total = 0;
    let i = 0;
    while (i < regions.length) {
      let j = i;
      while (j + 1 < regions.length && regions[j + 1] === regions[j]! + 1) j++;
      const runStart = regions[i]! * rs;
      const end = Math.min(size, (regions[j]! + 1) * rs);
      const inKernel = await this.copyInKernel(model, runStart, end - runStart);
      total += inKernel;
      for (let off = runStart + inKernel; off < end; off += this.chunkBytes) chunks.push({ off, len: Math.min(this.chunkBytes, end - off) });
      i = j + 1;
    }
    this.copyStats.kernelBytes += total;
    let next = 0;
    while (this.buffers.length < this.parallel) this.buffers.push(Buffer.allocUnsafe(this.chunkBytes));
    const worker = async (w: number) => {
      const buf = this.buffers[w]!;
      while (next < chunks.length) {
        const c = chunks[next++]!;
        const view = buf.subarray(0, c.len);
        await model.readInto(view, c.off);
        await this.pd.disk.write(c.off, view);
        total += c.len;
        this.copyStats.bufferBytes += c.len;
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.parallel, chunks.length) }, (_, w) => worker(w)));
    return total;
  }

  /**
   * Copies `length` bytes at `offset` from the model to the disk with copy_file_range(2), where
   * the model gives the file behind them (trusted bytes) and the disk takes a write into its
   * file. The bytes copied: 0 when it cannot (the caller copies through buffers), fewer than
   * `length` at the end of a model file shorter than the model (the rest reads as zeroes).
   */
  private async copyInKernel(model: ProtectedDisk['model'], offset: number, length: number): Promise<number> {
    if (this.native === null || this.kernelCopyRefused) return 0;
    const from = model.directRead?.(offset, length) ?? null;
    if (from === null) return 0;
    const to = this.pd.disk.directWrite?.(offset, length) ?? null;
    if (to === null) return 0;
    try {
      return await kernelCopy(this.native, from.fd, from.position, to.fd, to.position, length);
    } catch (err) {
      if (!KERNEL_COPY_UNSUPPORTED.has((err as NodeJS.ErrnoException).code ?? '')) {
        throw fromSystemError(err, `copying ${length} bytes at ${offset} from the model to the working disk`);
      }
      this.kernelCopyRefused = true;
      log.info({ err: (err as Error).message }, 'the kernel cannot copy from the model to the working disk (other file systems?): regions are restored through buffers');
      return 0;
    } finally {
      to.finish(null);
    }
  }

  /** Lets the host's requests in flight go first, for up to maxYieldMs of real time. */
  private async yieldToHost(): Promise<void> {
    const until = Date.now() + this.maxYieldMs;
    while (this.pd.hostInflight > 0 && Date.now() < until) await sleep(systemClock, 1);
  }

  /**
   * Paces the restore: bytes copied since the rate was set never run ahead of rate × the time
   * since. The wait ends early when the rate changes or the restore stops (then it is computed
   * again from the new rate, or not at all).
   */
  private async throttle(): Promise<void> {
    while (this.rate && !this.stopping) {
      const due = this.paceFrom + (this.paceBytes / this.rate) * 1000;
      const wait = due - this.clock.now();
      if (wait <= 0) return;
      const wake = new AbortController();
      this.pacingWait = wake;
      await sleep(this.clock, wait, wake.signal).catch((err: unknown) => {
        if (!wake.signal.aborted) throw err;
      });
      this.pacingWait = null;
    }
  }
}
