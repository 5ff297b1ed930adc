/**
 * Inline I/O: a small positional read or write done synchronously on the calling thread, for
 * as long as such calls are fast, as they are when the data is in the page cache or the file
 * lives in RAM. A 4 KiB pread that hits the page cache costs one or two microseconds; handing
 * it to another thread and being woken with the result costs more CPU than that, on two
 * threads (measured with bench/nbd-peers.ts: 4 KiB random reads at queue depth 32 went from
 * 0.61x nbdkit through the batched worker to 1.04x inline).
 *
 * Every inline call is timed. A call over its budget (`slowUs`, plus `usPerMiB` for the copy)
 * had to wait for the disk, or for writeback to let a write in, or its thread was preempted.
 * Two slow calls (a lone one leaks away over the next 32 fast calls) turn inline I/O off for a
 * back-off period, unless the second was preemption: the kernel's count of the time this
 * thread waited for a CPU (run-queue-wait.ts) grew, since the slow call before, by half the
 * call's time or more. On a busy machine (the NBD benchmark's client on one of two cores, a Pi
 * running other services) preemption in the middle of a 2 µs call is common enough that,
 * without this, it turned inline I/O off for seconds at a time although the disk was RAM. Callers then take their asynchronous path (the
 * batched worker, libuv's thread pool) and the event loop never waits for the disk. When the
 * period ends, calls are inline again; two more slow calls turn it off for twice as long (up
 * to `maxBackoffMs`), 256 fast ones reset the period. On an SD card whose data is not cached
 * the event loop thus waits for at most two disk accesses per back-off period (1 s doubling
 * to 60 s). One would be enough on an idle machine; on a busy one (the NBD benchmark's two
 * cores, the client on one) a single preempted call right after a back-off kept inline I/O
 * off for up to a minute at a time, and every request of that minute took the slower path.
 *
 * What the caller reads into must be memory it has touched before: the first touch of fresh
 * pages (page faults, zeroing, in a VM the host's own first touch) took 300-500 µs for a
 * 128 KiB buffer here, and would be timed as a slow disk (the NBD buffer pool touches its
 * buffers when it allocates them).
 */
import { readSync, writeSync } from 'node:fs';
import { asSystemError, nativeIo, type NativeIo } from '../native/native-io.js';
import { systemClock, type Clock } from '../clock.js';
import { threadRunQueueWaitMs, type RunQueueWait } from './run-queue-wait.js';
import { childLogger } from '../logger.js';

const log = childLogger('inline-io');

export interface InlineIoOptions {
  /** What its log lines name (a FileDevice gives its path). */
  name?: string;
  /**
   * Largest request done inline (default 128 KiB: measured with bench/nbd-peers.ts, 128 KiB
   * requests cost a fifth less CPU inline than through the pool; 1 MiB requests are faster
   * through the pool, whose copy then overlaps the main thread's socket work).
   */
  maxBytes?: number;
  /** A call slower than this (plus `usPerMiB` per MiB) is slow (default 200 µs). */
  slowUs?: number;
  /** Extra budget per MiB moved, for the memory copy itself (default 1000 µs: 1 GB/s). */
  usPerMiB?: number;
  /** First back-off after a slow call (default 1 s). */
  backoffMs?: number;
  /** Longest back-off (default 60 s). */
  maxBackoffMs?: number;
  clock?: Clock;
  /**
   * The native addon's pread/pwrite (default: loaded where built). Node's readSync/writeSync
   * check their arguments in JavaScript and C++ on every call; for a 4 KiB write from the page
   * cache that cost a fifth of the server's user CPU (measured with bench/nbd-peers.ts: 4 KiB
   * random writes at queue depth 32, 5.19 against 4.99 µs of server CPU per request). null: Node's.
   */
  native?: NativeIo | null;
  /**
   * The calling thread's total wait for a CPU, in ms (default: the kernel's schedstat, where
   * it has one; null: unknown, every slow call then counts). Asked only after a slow call.
   */
  runQueueWait?: RunQueueWait;
}

export class InlineIo {
  readonly maxBytes: number;
  private readonly name: string | undefined;
  private readonly slowUs: number;
  private readonly usPerMiB: number;
  private readonly firstBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly clock: Clock;
  private readonly native: NativeIo | null;
  /** Inline I/O is off until this time (clock ms); 0: on. */
  private offUntil = 0;
  private backoffMs: number;
  /** Slow calls, leaking away with fast ones; two turn inline I/O off. */
  private strikes = 0;
  /** Fast calls since inline I/O was last turned on; enough of them reset the back-off. */
  private fastSinceOn = 0;
  private readonly runQueueWait: RunQueueWait;
  /** The thread's run-queue wait (ms) when the last slow call ended; null: unknown. */
  private waitAtLastSlow: number | null = null;
  /**
   * Calls done inline, calls found slow, slow calls forgiven because the thread was waiting for
   * a CPU, and times inline I/O was turned off.
   */
  readonly stats = { calls: 0, slow: 0, preempted: 0, off: 0 };

  constructor(options: InlineIoOptions = {}) {
    this.native = options.native === undefined ? nativeIo() : options.native;
    this.name = options.name;
    this.maxBytes = options.maxBytes ?? 128 * 1024;
    this.slowUs = options.slowUs ?? 200;
    this.usPerMiB = options.usPerMiB ?? 1000;
    this.firstBackoffMs = options.backoffMs ?? 1000;
    this.maxBackoffMs = options.maxBackoffMs ?? 60_000;
    this.backoffMs = this.firstBackoffMs;
    this.clock = options.clock ?? systemClock;
    this.runQueueWait = options.runQueueWait ?? threadRunQueueWaitMs;
  }

  /** Whether a request of `length` bytes (at most `maxBytes`) may be done inline now. */
  allows(length: number, maxBytes = this.maxBytes): boolean {
    if (length > maxBytes || length === 0) return false;
    if (this.offUntil === 0) return true;
    if (this.clock.now() < this.offUntil) return false;
    this.offUntil = 0;
    return true;
  }

  /**
   * Reads buf.length bytes at `position` of `fd` into `buf`, zero-filling past the end of the
   * file. Throws the system error as readSync does (the addon's too).
   */
  read(fd: number, buf: Buffer, position: number): void {
    const t0 = this.clock.now();
    let done = 0;
    try {
      if (this.native !== null) {
        try {
          done = this.native.preadAll(fd, buf, position);
        } catch (err) {
          throw asSystemError(err, 'pread');
        }
        if (done < buf.length) buf.fill(0, done);
        return;
      }
      while (done < buf.length) {
        const n = readSync(fd, buf, done, buf.length - done, position + done);
        if (n === 0) {
          buf.fill(0, done);
          break;
        }
        done += n;
      }
    } finally {
      this.account(buf.length, t0);
    }
  }

  /** Writes all of `data` at `position` of `fd`. Throws the system error as writeSync does (the addon's too). */
  write(fd: number, data: Buffer, position: number): void {
    const t0 = this.clock.now();
    let done = 0;
    try {
      if (this.native === null) while (done < data.length) done += writeSync(fd, data, done, data.length - done, position + done);
      else {
        try {
          this.native.pwriteAll(fd, data, position);
        } catch (err) {
          throw asSystemError(err, 'pwrite');
        }
      }
    } finally {
      this.account(data.length, t0);
    }
  }

  /** Runs `io`, an inline call moving `bytes`, and times it as read() and write() are timed. */
  timed<T>(bytes: number, io: () => T): T {
    const t0 = this.clock.now();
    try {
      return io();
    } finally {
      this.account(bytes, t0);
    }
  }

  private account(bytes: number, t0: number): void {
    this.stats.calls++;
    const tookUs = (this.clock.now() - t0) * 1000;
    if (tookUs <= this.slowUs + (this.usPerMiB * bytes) / (1 << 20)) {
      // A slow call now and then is the thread being preempted, not the disk: it leaks away.
      if (this.strikes > 0) this.strikes = Math.max(0, this.strikes - 1 / 32);
      if (++this.fastSinceOn === 256) this.backoffMs = this.firstBackoffMs;
      return;
    }
    this.stats.slow++;
    const waited = this.runQueueWait();
    const waitBefore = this.waitAtLastSlow;
    this.waitAtLastSlow = waited;
    // A call that would turn inline I/O off is forgiven if the thread spent half its time or
    // more waiting for a CPU (measured since the slow call before, a few calls ago at most).
    if (this.strikes + 1 >= 2 && waited !== null && waitBefore !== null && (waited - waitBefore) * 1000 >= tookUs / 2) {
      this.stats.preempted++;
      return;
    }
    if (++this.strikes < 2) return;
    this.stats.off++;
    // The first time at info (the disk is slower than RAM: expected on a Pi), later ones at debug.
    log[this.stats.off === 1 ? 'info' : 'debug'](
      { file: this.name, tookUs: Math.round(tookUs), bytes, offMs: this.backoffMs },
      `small reads and writes${this.name ? ` of ${this.name}` : ''} are not done inline for ${this.backoffMs} ms: one took ${Math.round(tookUs)} µs (the disk was waited for)`,
    );
    this.offUntil = this.clock.now() + this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.maxBackoffMs);
    this.strikes = 0;
    this.fastSinceOn = 0;
  }
}
