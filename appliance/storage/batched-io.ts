/**
 * Batched positional I/O for small requests: one worker thread does them with synchronous
 * pread/pwrite (batched-io-worker.ts), taking them from a ring in shared memory. The main
 * thread wakes it once per burst and is woken once per batch of results, instead of one
 * thread-pool hop per request (libuv's costs several microseconds of CPU for every 4 KiB
 * request, more than the read itself). The event loop never waits for the disk: a slow card
 * only makes the worker slower.
 *
 * Memory is fixed: `slots` requests of at most `slotBytes` each are in flight through the
 * worker; a larger request, or one that finds every slot taken, is not accepted (the caller
 * uses its own path). Read data is copied out of the slot into the caller's buffer when the
 * result arrives; write data is copied into the slot when submitted, so callers may reuse
 * their buffers once the call settles.
 *
 * The worker starts on first use and stops after `idleMs` without requests; while a request
 * is in flight it keeps the process alive, never otherwise. If it stops unexpectedly, the
 * requests it held are done again through libuv and this instance accepts no more requests.
 */
import { read as fsRead, write as fsWrite } from 'node:fs';
import { getSystemErrorName } from 'node:util';
import { Worker } from 'node:worker_threads';
import { CTL, ENTRY, ENTRY_INTS, OP_READ, OP_WRITE, type BatchedIoShared } from './batched-io-layout.js';
import { fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('batched-io');

/** Atomics.waitAsync (in Node since 16; TypeScript's lib types it from es2024). */
type WaitAsync = (ta: Int32Array, index: number, value: number) => { async: false; value: string } | { async: true; value: Promise<string> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

export interface BatchedIoOptions {
  /** Requests in flight through the worker (a power of two; default 64). */
  slots?: number;
  /** Largest request the worker takes (default 16 KiB). */
  slotBytes?: number;
  /** The worker stops after this long without a request (default 30 s). */
  idleMs?: number;
  /** The worker's module (default batched-io-worker.js beside this one). */
  workerUrl?: URL;
  /**
   * Take a request even when nothing else is in flight (default false: a lone request gains
   * nothing from batching, and libuv's hop costs it less than the worker's). Whether a request
   * is alone is decided when the turn that submitted it ends, so the first request of a burst
   * goes to the worker with the rest.
   */
  loneRequests?: boolean;
}

interface Ring {
  /** Started when the first batch is published (a ring that only saw lone requests has none). */
  worker: Worker | null;
  ctl: Int32Array;
  positions: Float64Array;
  data: Buffer;
}

/** The caller's side of one request in flight. */
interface Pending {
  op: number;
  fd: number;
  offset: number;
  length: number;
  /** Where read data goes (null for a write). */
  dest: Buffer | null;
  /** A write's data, the caller's buffer (held until the call settles). */
  src: Buffer | null;
  path: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class BatchedIo {
  readonly slots: number;
  readonly slotBytes: number;
  /** Whether a lone request (nothing else in flight) is taken; see BatchedIoOptions. */
  readonly loneRequests: boolean;
  private readonly mask: number;
  private readonly idleMs: number;
  private readonly workerUrl: URL;
  private ring: Ring | null = null;
  private readonly pending: Array<Pending | null>;
  /** Next sequence number to submit, and the first whose result has not been taken. */
  private submitted = 0;
  private seen = 0;
  private published = 0;
  private kickQueued = false;
  private waiting = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private lastUse = 0;
  private disabled = false;
  /** Lone requests handed to libuv's thread pool, not yet settled (their fds are still in use). */
  private readonly viaPool = new Set<Pending>();
  /**
   * Requests the worker did, times a sleeping worker was woken, times results were delivered,
   * and lone requests handed to the thread pool instead.
   */
  readonly stats = { requests: 0, wakeups: 0, deliveries: 0, lone: 0 };

  private readonly kick = (): void => {
    this.kickQueued = false;
    const r = this.ring;
    if (!r || this.published === this.submitted) return;
    if (!this.loneRequests && ((this.submitted - this.published) | 0) === 1 && this.published === this.seen && this.viaPool.size === 0) {
      this.takeBackLone(r);
      return;
    }
    if (!this.startWorker(r)) return;
    this.published = this.submitted;
    Atomics.store(r.ctl, CTL.SUBMITTED, this.submitted);
    // Armed only for published requests: a lone request taken back leaves no waiter behind.
    if (!this.waiting) this.arm(r);
    // The worker sets SLEEPING before it looks at SUBMITTED again: one of us sees the other.
    if (Atomics.load(r.ctl, CTL.SLEEPING) !== 0) {
      this.stats.wakeups++;
      Atomics.notify(r.ctl, CTL.SUBMITTED);
    }
  };
  private readonly onResults = (): void => {
    this.waiting = false;
    this.deliver();
  };

  constructor(options: BatchedIoOptions = {}) {
    this.slots = options.slots ?? 64;
    if (!Number.isInteger(this.slots) || this.slots < 1 || (this.slots & (this.slots - 1)) !== 0) throw new RangeError(`slots must be a power of two, not ${this.slots}`);
    this.mask = this.slots - 1;
    this.slotBytes = options.slotBytes ?? 16 * 1024;
    this.idleMs = options.idleMs ?? 30_000;
    this.loneRequests = options.loneRequests ?? false;
    this.workerUrl = options.workerUrl ?? new URL('./batched-io-worker.js', import.meta.url);
    this.pending = new Array<Pending | null>(this.slots).fill(null);
  }

  /** Requests submitted and not yet answered. */
  get inflight(): number {
    return (this.submitted - this.seen) | 0;
  }

  /**
   * Reads buf.length bytes at `offset` of `fd` into `buf` (zeroes past the end of the file).
   * Null when the worker does not take it (too large, every slot busy, or stopped for good).
   * Errors reject as fromSystemError does, naming `path`.
   */
  read(fd: number, buf: Buffer, offset: number, path: string): Promise<void> | null {
    return this.submit(OP_READ, fd, buf, offset, path);
  }

  /** Writes all of `data` at `offset` of `fd`; null when not taken (as read()). */
  write(fd: number, data: Buffer, offset: number, path: string): Promise<void> | null {
    return this.submit(OP_WRITE, fd, data, offset, path);
  }

  /** Resolves once no request on `fd` is in flight (its owner may close it then). */
  async drained(fd: number): Promise<void> {
    const busy = (p: Pending | null): boolean => p !== null && p.fd === fd;
    while (this.pending.some(busy) || [...this.viaPool].some(busy)) await new Promise((r) => setTimeout(r, 1));
  }

  /** Stops the worker once nothing is in flight (a later request starts a new one). */
  async close(): Promise<void> {
    while (this.inflight > 0) await new Promise((r) => setTimeout(r, 1));
    this.stopWorker();
  }

  private submit(op: number, fd: number, buf: Buffer, offset: number, path: string): Promise<void> | null {
    const length = buf.length;
    if (this.disabled || length > this.slotBytes || length === 0 || this.inflight >= this.slots) return null;
    const r = this.ring ?? this.start();
    const seq = this.submitted;
    const i = seq & this.mask;
    const e = ENTRY + i * ENTRY_INTS;
    r.ctl[e] = op;
    r.ctl[e + 1] = fd;
    r.ctl[e + 2] = length;
    r.positions[i] = offset;
    if (op === OP_WRITE) buf.copy(r.data, i * this.slotBytes);
    this.submitted = (seq + 1) | 0;
    this.stats.requests++;
    if (this.inflight === 1) {
      r.worker?.ref();
      this.lastUse = Date.now();
    }
    if (!this.kickQueued) {
      this.kickQueued = true;
      queueMicrotask(this.kick);
    }
    return new Promise<void>((resolve, reject) => {
      this.pending[i] = { op, fd, offset, length, dest: op === OP_READ ? buf : null, src: op === OP_READ ? null : buf, path, resolve, reject };
    });
  }

  /**
   * The turn submitted one request and the worker has nothing of ours: waking it gains nothing
   * from batching, so the request goes through libuv's thread pool instead (it was not yet
   * published, so the worker never sees it).
   */
  private takeBackLone(r: Ring): void {
    const seq = (this.submitted - 1) | 0;
    const i = seq & this.mask;
    const p = this.pending[i]!;
    this.pending[i] = null;
    this.submitted = seq;
    this.stats.requests--;
    this.stats.lone++;
    this.viaPool.add(p);
    if (this.inflight === 0) {
      r.worker?.unref();
      this.lastUse = Date.now();
      this.scheduleIdleStop();
    }
    redoOne(p, p.src ?? EMPTY).then(
      () => {
        this.viaPool.delete(p);
        p.resolve();
      },
      (err: unknown) => {
        this.viaPool.delete(p);
        p.reject(fromSystemError(err, `${p.op === OP_READ ? 'reading' : 'writing'} ${p.path} at ${p.offset}`));
      },
    );
  }

  /** Waits (without blocking) for the worker to publish results past what was seen. */
  private arm(r: Ring): void {
    this.waiting = true;
    const w = waitAsync(r.ctl, CTL.COMPLETED, this.seen);
    if (w.async) void w.value.then(this.onResults);
    else queueMicrotask(this.onResults);
  }

  /** Answers every request the worker has finished. */
  private deliver(): void {
    const r = this.ring;
    if (!r) return;
    const done = Atomics.load(r.ctl, CTL.COMPLETED);
    if (done !== this.seen) this.stats.deliveries++;
    while (this.seen !== done) {
      const i = this.seen & this.mask;
      const p = this.pending[i]!;
      this.pending[i] = null;
      const result = r.ctl[ENTRY + i * ENTRY_INTS + 3]!;
      if (result < 0) p.reject(this.errorFor(p, result));
      else {
        if (p.dest) r.data.copy(p.dest, 0, i * this.slotBytes, i * this.slotBytes + p.length);
        p.resolve();
      }
      this.seen = (this.seen + 1) | 0;
    }
    // Wait for the worker only while it holds published requests (kick arms for later ones).
    if (this.published !== this.seen) this.arm(r);
    else if (this.inflight === 0) {
      r.worker?.unref();
      this.lastUse = Date.now();
      this.scheduleIdleStop();
    }
  }

  private errorFor(p: Pending, errno: number): Error {
    let code = 'EIO';
    try {
      code = getSystemErrorName(errno);
    } catch {
      // not a known errno: EIO
    }
    const err = Object.assign(new Error(`${code}: ${p.op === OP_READ ? 'read' : 'write'} failed`), { code, errno });
    return fromSystemError(err, `${p.op === OP_READ ? 'reading' : 'writing'} ${p.path} at ${p.offset}`);
  }

  /** The shared memory of a ring; its worker starts with the first batch (startWorker). */
  private start(): Ring {
    const control = new SharedArrayBuffer((ENTRY + this.slots * ENTRY_INTS) * 4);
    const positions = new SharedArrayBuffer(this.slots * 8);
    const data = new SharedArrayBuffer(this.slots * this.slotBytes);
    const ctl = new Int32Array(control);
    // The worker starts at the sequence number the main thread is at.
    ctl[CTL.SUBMITTED] = this.submitted;
    ctl[CTL.COMPLETED] = this.submitted;
    const ring: Ring = { worker: null, ctl, positions: new Float64Array(positions), data: Buffer.from(data) };
    this.seen = this.submitted;
    this.published = this.submitted;
    this.ring = ring;
    return ring;
  }

  /** Starts the ring's worker if it has none; false (and its requests redone) if it cannot start. */
  private startWorker(ring: Ring): boolean {
    if (ring.worker) return true;
    const shared: BatchedIoShared = {
      control: ring.ctl.buffer as SharedArrayBuffer,
      positions: ring.positions.buffer as SharedArrayBuffer,
      data: ring.data.buffer as SharedArrayBuffer,
      slots: this.slots,
      slotBytes: this.slotBytes,
    };
    let worker: Worker;
    try {
      worker = new Worker(this.workerUrl, { workerData: shared });
    } catch (err) {
      this.ring = null;
      this.giveUp(`the batched I/O worker did not start: ${(err as Error).message}`);
      this.redo(ring);
      return false;
    }
    if (this.inflight === 0) worker.unref();
    ring.worker = worker;
    const lost = (why: string): void => {
      if (this.ring !== ring) return; // stopped on purpose, or already handled
      this.ring = null;
      this.giveUp(`the batched I/O worker stopped: ${why}`);
      this.redo(ring);
    };
    worker.on('error', (err) => lost(err.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    return true;
  }

  private giveUp(why: string): void {
    if (!this.disabled) log.warn(`${why}; small requests go through the thread pool from now on`);
    this.disabled = true;
  }

  /** The worker is gone: requests it had not answered are done through libuv. */
  private redo(ring: Ring): void {
    while (this.seen !== this.submitted) {
      const i = this.seen & this.mask;
      const p = this.pending[i]!;
      this.pending[i] = null;
      this.seen = (this.seen + 1) | 0;
      const slot = Buffer.from(ring.data.subarray(i * this.slotBytes, i * this.slotBytes + p.length));
      redoOne(p, slot).then(p.resolve, (err: unknown) => p.reject(fromSystemError(err, `${p.op === OP_READ ? 'reading' : 'writing'} ${p.path} at ${p.offset}`)));
    }
  }

  private scheduleIdleStop(): void {
    if (this.idleTimer) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.inflight > 0) return;
      const left = this.lastUse + this.idleMs - Date.now();
      if (left > 0) {
        this.idleTimer = setTimeout(() => {
          this.idleTimer = null;
          this.scheduleIdleStop();
        }, left);
        this.idleTimer.unref();
        return;
      }
      this.stopWorker();
    }, this.idleMs);
    this.idleTimer.unref();
  }

  private stopWorker(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    const r = this.ring;
    if (!r || this.inflight > 0) return;
    this.ring = null;
    this.waiting = false;
    Atomics.store(r.ctl, CTL.STOP, 1);
    Atomics.notify(r.ctl, CTL.SUBMITTED);
    void r.worker?.terminate();
  }
}

/** One request through libuv's thread pool, with `slot` holding a write's data. */
async function redoOne(p: Pending, slot: Buffer): Promise<void> {
  let done = 0;
  while (done < p.length) {
    const n = await new Promise<number>((res, rej) => {
      const cb = (err: Error | null, bytes: number): void => (err ? rej(err) : res(bytes));
      if (p.dest) fsRead(p.fd, p.dest, done, p.length - done, p.offset + done, cb);
      else fsWrite(p.fd, slot, done, p.length - done, p.offset + done, cb);
    });
    if (n === 0 && p.dest) {
      p.dest.fill(0, done);
      return;
    }
    done += n;
  }
}

const EMPTY = Buffer.alloc(0);

let shared: BatchedIo | null = null;

/** The process's batched I/O worker, made on first use. */
export function sharedBatchedIo(): BatchedIo {
  shared ??= new BatchedIo();
  return shared;
}
