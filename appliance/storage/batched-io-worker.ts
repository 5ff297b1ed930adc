/**
 * The batched I/O worker thread (see batched-io.ts): takes small positional reads and writes
 * from a ring in shared memory, does them one after another with synchronous pread/pwrite,
 * and publishes their results. It sleeps on the ring's tail while there is nothing to do, so
 * a burst of requests costs one wake-up, and the event loop never waits for the disk.
 */
import { readSync, writeSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { CTL, ENTRY, ENTRY_INTS, OP_READ, type BatchedIoShared } from './batched-io-layout.js';

const shared = workerData as BatchedIoShared;
const ctl = new Int32Array(shared.control);
const positions = new Float64Array(shared.positions);
const data = Buffer.from(shared.data);
const { slots, slotBytes } = shared;
const mask = slots - 1; // a power of two: sequence numbers wrap as 32-bit integers
/** Results are published at least this often while a batch runs (a slow card answers early requests first). */
const PUBLISH_EVERY_MS = 0.5;

function errnoOf(err: unknown): number {
  const n = (err as NodeJS.ErrnoException | undefined)?.errno;
  return typeof n === 'number' && n < 0 ? n : -5; // -EIO when the error carries no errno
}

/** One request: the whole range, zeroes past the end of a short file; bytes done or -errno. */
function perform(op: number, fd: number, at: number, length: number, pos: number): number {
  let done = 0;
  try {
    if (op === OP_READ) {
      while (done < length) {
        const n = readSync(fd, data, at + done, length - done, pos + done);
        if (n === 0) {
          data.fill(0, at + done, at + length);
          return length;
        }
        done += n;
      }
    } else {
      while (done < length) done += writeSync(fd, data, at + done, length - done, pos + done);
    }
    return length;
  } catch (err) {
    return errnoOf(err);
  }
}

let head = ctl[CTL.COMPLETED]!;
for (;;) {
  const tail = Atomics.load(ctl, CTL.SUBMITTED);
  if (head === tail) {
    if (Atomics.load(ctl, CTL.STOP) !== 0) break;
    Atomics.store(ctl, CTL.SLEEPING, 1);
    // The main thread stores the tail, then looks at SLEEPING: one of us sees the other.
    if (Atomics.load(ctl, CTL.SUBMITTED) === head) Atomics.wait(ctl, CTL.SUBMITTED, head);
    Atomics.store(ctl, CTL.SLEEPING, 0);
    continue;
  }
  let published = performance.now();
  while (head !== tail) {
    const i = head & mask;
    const e = ENTRY + i * ENTRY_INTS;
    ctl[e + 3] = perform(ctl[e]!, ctl[e + 1]!, i * slotBytes, ctl[e + 2]!, positions[i]!);
    head = (head + 1) | 0;
    const now = performance.now();
    if (now - published >= PUBLISH_EVERY_MS && head !== tail) {
      Atomics.store(ctl, CTL.COMPLETED, head);
      Atomics.notify(ctl, CTL.COMPLETED);
      published = now;
    }
  }
  Atomics.store(ctl, CTL.COMPLETED, head);
  Atomics.notify(ctl, CTL.COMPLETED);
}
