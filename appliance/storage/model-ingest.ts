/**
 * Writing a model image from a stream and hashing it on the way: the bytes are gathered into
 * chunks of whole regions in shared memory, each chunk written to the file and hashed on the
 * hash workers at the same time, a few chunks in flight, so memory stays bounded whatever the
 * image's size. Chunks of zeroes are not written: the file is made at its full size first and
 * stays sparse where the image is empty.
 */
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { SnapbackError, fromSystemError } from '../errors.js';
import { DIGEST_LENGTHS, type HashName } from './hash-functions.js';
import { sharedHashPool, type HashPool } from './hash-pool.js';
import { SharedBufferPool } from './shared-buffers.js';
import { isAllZero, writeAll } from './file-io.js';

export interface WriteAndHashOptions {
  dest: string;
  /** The stream's exact length: a shorter or longer stream fails. */
  size: number;
  regionSize: number;
  hash: HashName;
  hashPool?: HashPool;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
}

const CHUNK_BYTES = 4 << 20;

/** Writes the stream to `dest` (created, fsync'd) and returns its regions' digests. */
export async function writeAndHash(stream: Readable, o: WriteAndHashOptions): Promise<Buffer> {
  const pool = o.hashPool ?? sharedHashPool();
  const chunkBytes = Math.max(o.regionSize, CHUNK_BYTES - (CHUNK_BYTES % o.regionSize));
  const regionCount = Math.ceil(o.size / o.regionSize);
  const dlen = DIGEST_LENGTHS[o.hash];
  const digests = Buffer.alloc(regionCount * dlen);
  const inFlight = Math.max(2, pool.threads + 1);
  const buffers = new SharedBufferPool(chunkBytes, inFlight + 1);
  const fh = await open(o.dest, 'wx', 0o644).catch((err: unknown) => {
    throw fromSystemError(err, `creating ${o.dest}`);
  });
  const pending = new Set<Promise<void>>();
  let failure: unknown = null;
  let done = 0;
  const aborted = () => new SnapbackError('CLOSED', 'the import was cancelled');
  const chunkDone = (p: Promise<void>) => {
    pending.add(p);
    p.then(
      () => pending.delete(p),
      (err: unknown) => {
        pending.delete(p);
        failure ??= err;
      },
    );
  };
  const flushChunk = (buf: Buffer, len: number, offset: number): Promise<void> =>
    (async () => {
      try {
        const view = buf.subarray(0, len);
        const [d] = await Promise.all([pool.digestRegions(o.hash, view, o.regionSize), isAllZero(view) ? Promise.resolve() : writeAll(fh, view, offset)]);
        d.copy(digests, (offset / o.regionSize) * dlen);
        done += len;
        o.onProgress?.(done, o.size);
      } finally {
        buffers.release(buf);
      }
    })();
  try {
    await fh.truncate(o.size).catch((err: unknown) => {
      throw fromSystemError(err, `making ${o.dest} ${o.size} bytes long`);
    });
    let buf = await buffers.acquire();
    let fill = 0;
    let offset = 0;
    let received = 0;
    for await (const piece of stream as AsyncIterable<Buffer | string>) {
      if (o.signal?.aborted) throw aborted();
      if (failure) throw failure;
      const bytes = typeof piece === 'string' ? Buffer.from(piece) : piece;
      received += bytes.length;
      if (received > o.size) throw new SnapbackError('BAD_ARGUMENT', `the image is longer than the ${o.size} bytes announced`, { expected: o.size });
      let at = 0;
      while (at < bytes.length) {
        const n = Math.min(bytes.length - at, chunkBytes - fill);
        bytes.copy(buf, fill, at, at + n);
        fill += n;
        at += n;
        if (fill === chunkBytes) {
          chunkDone(flushChunk(buf, fill, offset));
          offset += fill;
          fill = 0;
          while (pending.size >= inFlight) await Promise.race(pending);
          if (failure) throw failure;
          buf = await buffers.acquire();
        }
      }
    }
    if (o.signal?.aborted) throw aborted();
    if (received < o.size) throw new SnapbackError('BAD_ARGUMENT', `the image ended after ${received} of its ${o.size} bytes (truncated)`, { expected: o.size, actual: received });
    if (fill > 0) chunkDone(flushChunk(buf, fill, offset));
    else buffers.release(buf);
    while (pending.size > 0) await Promise.race(pending);
    if (failure) throw failure;
    await fh.sync().catch((err: unknown) => {
      throw fromSystemError(err, `writing ${o.dest}`);
    });
    return digests;
  } catch (err) {
    // let the chunks still in flight settle before the file is closed (and removed by the caller)
    await Promise.allSettled([...pending]);
    throw fromSystemError(err, `writing ${o.dest}`);
  } finally {
    await fh.close().catch(() => undefined);
  }
}
