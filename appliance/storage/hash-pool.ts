/**
 * A small pool of hash worker threads (appliance/storage/hash-worker.ts), sized to the cores.
 * The storage layers hand it bytes to digest and await the digests; the event loop that serves
 * the host only compares them. Bytes in shared memory (a Buffer over a SharedArrayBuffer) reach
 * a worker without a copy; other bytes are copied once.
 *
 * Workers start on first use and stop after a while without work, so an idle daemon carries
 * none of them; while a job is in flight its worker keeps the process alive, never otherwise.
 * With `threads: 0` the pool hashes inline on the calling thread (for comparisons); so does a
 * pool whose worker threads cannot start (a warning in the log), rather than fail the reads.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { DIGEST_LENGTHS, digestOf, digestRegionsInto, type HashName } from './hash-functions.js';
import type { HashRequest, HashResponse } from './hash-worker.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('hash-pool');

export interface HashPoolOptions {
  /** Worker threads (default: the cores, at most 4); 0 hashes inline. */
  threads?: number;
  /** Workers stop after this long without a job (default 10 s). */
  idleMs?: number;
  /** The worker's module (default hash-worker.js beside this one). */
  workerUrl?: URL;
}

interface Job {
  id: number;
  hash: HashName;
  regionSize: number;
  data: Uint8Array;
  resolve: (digests: Buffer) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
  /** The worker's module loaded (it said it is ready). */
  online: boolean;
}

/** Workers that fail before coming up, in a row, after which the pool hashes on the main thread. */
const MAX_START_FAILURES = 3;

export interface HashPoolStats {
  threads: number;
  running: number;
  jobs: number;
  bytes: number;
}

export const DEFAULT_HASH_THREADS = Math.max(1, Math.min(4, availableParallelism()));

export class HashPool {
  readonly threads: number;
  private readonly idleMs: number;
  private slots: Slot[] = [];
  private queue: Job[] = [];
  private nextId = 1;
  private idleTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private jobs = 0;
  private bytes = 0;
  private startFailures = 0;
  private inline = false;
  private readonly workerUrl: URL;

  constructor(options: HashPoolOptions = {}) {
    this.threads = Math.max(0, Math.floor(options.threads ?? DEFAULT_HASH_THREADS));
    this.idleMs = options.idleMs ?? 10_000;
    this.workerUrl = options.workerUrl ?? new URL('./hash-worker.js', import.meta.url);
  }

  /** The digest of `data`. */
  async digest(hash: HashName, data: Uint8Array): Promise<Buffer> {
    if (data.length === 0) return digestOf(hash, data);
    return this.digestRegions(hash, data, data.length);
  }

  /** The digests of consecutive `regionSize` regions of `data` (the last may be short), concatenated. */
  digestRegions(hash: HashName, data: Uint8Array, regionSize: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(new SnapbackError('CLOSED', 'the hash pool is closed'));
    if (!(regionSize > 0)) return Promise.reject(new SnapbackError('BAD_ARGUMENT', `region size ${regionSize} must be positive`));
    this.jobs++;
    this.bytes += data.length;
    return new Promise<Buffer>((resolve, reject) => {
      const job: Job = { id: this.nextId++, hash, regionSize, data, resolve, reject };
      if (this.threads === 0 || this.inline) this.hashInline(job);
      else {
        this.queue.push(job);
        this.pump();
      }
    });
  }

  stats(): HashPoolStats {
    return { threads: this.threads, running: this.slots.length, jobs: this.jobs, bytes: this.bytes };
  }

  /** Stops every worker; jobs still queued or running fail with CLOSED. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    for (const j of this.queue.splice(0)) j.reject(new SnapbackError('CLOSED', 'the hash pool is closed'));
    const slots = this.slots.splice(0);
    for (const s of slots) s.job?.reject(new SnapbackError('CLOSED', 'the hash pool is closed'));
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private pump(): void {
    if (this.idleTimer) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (this.inline) {
      for (const j of this.queue.splice(0)) this.hashInline(j);
      return;
    }
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.job === null);
      if (!slot) {
        if (this.slots.length >= this.threads) break;
        try {
          slot = this.spawn();
        } catch (err) {
          if (this.slots.length > 0) break; // the running workers take the queue
          this.goInline((err as Error).message);
          return;
        }
      }
      const job = this.queue.shift()!;
      this.send(slot, job);
    }
    if (this.queue.length === 0 && this.slots.every((s) => s.job === null) && this.slots.length > 0) {
      this.idleTimer = setTimeout(() => this.stopIdle(), this.idleMs);
      this.idleTimer.unref();
    }
  }

  /** No worker thread can be had: hash on this thread from now on rather than fail reads (correct, only slower). */
  private goInline(why: string): void {
    if (!this.inline) log.warn({ err: why }, 'cannot start a hash worker thread: hashing on the main thread');
    this.inline = true;
    for (const j of this.queue.splice(0)) this.hashInline(j);
  }

  private hashInline(j: Job): void {
    try {
      const out = Buffer.allocUnsafe(Math.ceil(j.data.length / j.regionSize) * DIGEST_LENGTHS[j.hash]);
      digestRegionsInto(j.hash, j.data, j.regionSize, out);
      j.resolve(out);
    } catch (err) {
      j.reject(new SnapbackError('IO_ERROR', `hashing failed: ${(err as Error).message}`));
    }
  }

  private spawn(): Slot {
    const worker = new Worker(this.workerUrl);
    const slot: Slot = { worker, job: null, online: false };
    worker.unref();
    worker.on('message', (res: HashResponse) => {
      if ('ready' in res) {
        slot.online = true;
        this.startFailures = 0;
        return;
      }
      const job = slot.job;
      if (!job || job.id !== res.id) return;
      slot.job = null;
      worker.unref();
      if ('error' in res) job.reject(new SnapbackError('IO_ERROR', `hashing failed: ${res.error}`));
      else job.resolve(Buffer.from(res.digests));
      this.pump();
    });
    const lost = (why: string) => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return; // already handled (an 'error' is followed by 'exit'), or stopped on purpose
      this.slots.splice(i, 1);
      const job = slot.job;
      slot.job = null;
      if (this.closed) return;
      if (!slot.online) {
        // never came up: its job goes back to the queue; after a few such, hash here
        if (job) this.queue.unshift(job);
        if (this.inline || ++this.startFailures >= MAX_START_FAILURES) {
          this.goInline(why);
          return;
        }
      } else if (job) job.reject(new SnapbackError('IO_ERROR', `a hash worker stopped: ${why}`));
      this.pump();
    };
    worker.on('error', (err) => lost(err.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    this.slots.push(slot);
    return slot;
  }

  private send(slot: Slot, job: Job): void {
    slot.job = job;
    slot.worker.ref();
    const d = job.data;
    let req: HashRequest;
    if (d.buffer instanceof SharedArrayBuffer) {
      req = { id: job.id, hash: job.hash, regionSize: job.regionSize, data: { sab: d.buffer, offset: d.byteOffset, length: d.length } };
      slot.worker.postMessage(req);
    } else {
      const ab = new ArrayBuffer(d.length);
      new Uint8Array(ab).set(d);
      req = { id: job.id, hash: job.hash, regionSize: job.regionSize, data: { ab } };
      slot.worker.postMessage(req, [ab]);
    }
  }

  private stopIdle(): void {
    this.idleTimer = null;
    const idle = this.slots.filter((s) => s.job === null);
    this.slots = this.slots.filter((s) => s.job !== null);
    for (const s of idle) void s.worker.terminate();
  }
}

let shared: HashPool | null = null;

/** The process's hash pool, made on first use. */
export function sharedHashPool(): HashPool {
  shared ??= new HashPool();
  return shared;
}
