/**
 * Receives a model image from a stream (an upload through the API) into a new file, hashing it
 * region by region on the hash workers as the bytes arrive, so the manifest is ready the moment
 * the last byte is on disk: no second pass over the image, and never more than a few chunks of
 * it in memory (the stream waits while the chunks in flight are being written and hashed).
 *
 * Regions that are all zeros are not written (the file keeps holes there), which keeps a mostly
 * empty disk image small on the appliance's storage. With an expected manifest (one uploaded
 * beside the image) every chunk is compared with it as it arrives and the first region that
 * differs ends the upload. On any failure (the stream cut off, fewer bytes than announced, a
 * mismatch, a full disk) the partial file is removed: nothing is left behind.
 */
import { randomBytes } from 'node:crypto';
import { open, stat, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { SnapbackError, fromSystemError } from '../errors.js';
import { DIGEST_LENGTHS, type HashName } from './hash-functions.js';
import { sharedHashPool, type HashPool } from './hash-pool.js';
import { Manifest } from './manifest.js';
import { SharedBufferPool } from './shared-buffers.js';
import { formatSize, isValidRegionSize } from './sizes.js';

export interface ReceiveImageOptions {
  /** The file to create (it must not exist; removed again on failure). */
  path: string;
  /** The model's name in its manifest. */
  name: string;
  /** How many bytes the stream announced (Content-Length); null when it did not say. */
  expectedBytes: number | null;
  /** Region size and hash of the new manifest (ignored with `expect`, whose own are used). */
  regionSize: number;
  hash: HashName;
  /** A manifest the image must match, region for region. */
  expect?: Manifest;
  /** Called as bytes arrive (received, not necessarily on disk yet). */
  onProgress?: (bytesDone: number) => void;
  /** The hash worker threads (default: the process's shared pool). */
  hashPool?: HashPool;
  /** Bytes kept free on the filesystem besides the image (default 0). */
  reserveBytes?: number;
}

/** How many bytes are written and hashed as one piece (a multiple of any region size up to 4 MiB). */
const CHUNK_BYTES = 4 << 20;

export async function receiveImage(source: AsyncIterable<Uint8Array>, opts: ReceiveImageOptions): Promise<Manifest> {
  const expect = opts.expect;
  const regionSize = expect?.regionSize ?? opts.regionSize;
  const hash = expect?.hash ?? opts.hash;
  if (!isValidRegionSize(regionSize)) throw new SnapbackError('BAD_ARGUMENT', `region size ${regionSize} is not a power of two from 4 KiB to 16 MiB`);
  if (expect && opts.expectedBytes !== null && expect.size !== opts.expectedBytes) {
    throw new SnapbackError('MANIFEST_INVALID', `the manifest describes ${formatSize(expect.size)} (${expect.size} bytes) but the upload is ${opts.expectedBytes} bytes`, {
      manifestSize: expect.size,
      uploadSize: opts.expectedBytes,
    });
  }
  const announced = opts.expectedBytes ?? expect?.size ?? null;
  if (announced !== null) await checkFreeSpace(dirname(opts.path), announced + (opts.reserveBytes ?? 0));

  const pool = opts.hashPool ?? sharedHashPool();
  const chunkBytes = Math.max(regionSize, CHUNK_BYTES);
  const dlen = DIGEST_LENGTHS[hash];
  const buffers = new SharedBufferPool(chunkBytes, Math.max(2, pool.threads + 1));
  const zeros = Buffer.alloc(regionSize);
  const digestsOfChunk: Buffer[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: Error | null = null;
  let received = 0;

  let fh: FileHandle;
  try {
    fh = await open(opts.path, 'wx', 0o644);
  } catch (err) {
    throw fromSystemError(err, `cannot create ${opts.path}`);
  }

  /** Writes and hashes one full (or the last) chunk; the buffer goes back to the pool after. */
  const flush = (buf: Buffer, index: number, length: number): void => {
    const view = buf.subarray(0, length);
    const offset = index * chunkBytes;
    const task = Promise.all([pool.digestRegions(hash, view, regionSize), writeSkippingZeros(fh, view, offset, regionSize, zeros)])
      .then(([digests]) => {
        digestsOfChunk[index] = digests;
        if (expect) {
          const firstRegion = offset / regionSize;
          for (let i = 0; i * dlen < digests.length; i++) {
            const region = firstRegion + i;
            if (region >= expect.regionCount || !digests.subarray(i * dlen, (i + 1) * dlen).equals(expect.digest(region))) {
              throw new SnapbackError('MODEL_CORRUPT', `region ${region} of the upload does not match its manifest`, { region });
            }
          }
        }
      })
      .catch((err: unknown) => {
        failure ??= fromSystemError(err, `cannot write ${opts.path}`);
      })
      .finally(() => {
        buffers.release(buf);
        inFlight.delete(task);
      });
    inFlight.add(task);
  };

  try {
    let buf = await buffers.acquire();
    let fill = 0;
    let index = 0;
    for await (const piece of source) {
      if (failure) throw failure;
      for (let p = 0; p < piece.length; ) {
        const n = Math.min(piece.length - p, chunkBytes - fill);
        buf.set(piece.subarray(p, p + n), fill);
        fill += n;
        p += n;
        if (fill === chunkBytes) {
          flush(buf, index++, fill);
          buf = await buffers.acquire();
          fill = 0;
          if (failure) throw failure;
        }
      }
      received += piece.length;
      if (announced !== null && received > announced) {
        throw new SnapbackError('BAD_ARGUMENT', `the upload is longer than the ${announced} bytes announced`, { announced });
      }
      opts.onProgress?.(received);
    }
    if (fill > 0) flush(buf, index++, fill);
    else buffers.release(buf);
    await Promise.all([...inFlight]);
    if (failure) throw failure;
    if (announced !== null && received !== announced) {
      throw new SnapbackError('BAD_ARGUMENT', `the upload ended after ${received} of ${announced} bytes; nothing was imported`, { received, announced });
    }
    if (received === 0) throw new SnapbackError('BAD_ARGUMENT', 'the upload is empty; nothing was imported');
    await fh.truncate(received); // the holes at the end, if the image ends in zeros
    await fh.sync();
    await fh.close();
    const st = await stat(opts.path);
    const digests = Buffer.concat(digestsOfChunk);
    const manifest = Manifest.fromDigests(
      { name: opts.name, size: received, regionSize, hash, createdAt: new Date().toISOString(), image: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } },
      digests,
    );
    if (expect && manifest.id !== expect.id) {
      throw new SnapbackError('MODEL_CORRUPT', `the upload hashes to manifest ${manifest.id}, not to the ${expect.id} uploaded beside it`);
    }
    return manifest;
  } catch (err) {
    await Promise.allSettled([...inFlight]);
    await fh.close().catch(() => undefined);
    await unlink(opts.path).catch(() => undefined);
    throw failure ?? asReceiveError(err, received, announced, opts.path);
  }
}

/** Fails at once, before any byte is written, when the image cannot fit. */
async function checkFreeSpace(dir: string, need: number): Promise<void> {
  let free: number;
  try {
    const st = await statfs(dir);
    free = st.bavail * st.bsize;
  } catch (err) {
    throw fromSystemError(err, `cannot check the free space in ${dir}`);
  }
  if (need > free) {
    throw new SnapbackError('NO_SPACE', `not enough space for the image: ${formatSize(need)} needed, ${formatSize(free)} free in ${dir}`, { need, free });
  }
}

/** Writes the chunk at `offset`, leaving regions that are all zeros as holes. */
async function writeSkippingZeros(fh: FileHandle, chunk: Buffer, offset: number, regionSize: number, zeros: Buffer): Promise<void> {
  let runStart = -1;
  const writeRun = async (from: number, to: number): Promise<void> => {
    for (let at = from; at < to; ) {
      const { bytesWritten } = await fh.write(chunk, at, to - at, offset + at);
      if (bytesWritten <= 0) throw new SnapbackError('IO_ERROR', 'a write made no progress');
      at += bytesWritten;
    }
  };
  for (let a = 0; a < chunk.length; a += regionSize) {
    const b = Math.min(chunk.length, a + regionSize);
    const zero = chunk.subarray(a, b).equals(zeros.subarray(0, b - a));
    if (!zero && runStart < 0) runStart = a;
    if (zero && runStart >= 0) {
      await writeRun(runStart, a);
      runStart = -1;
    }
  }
  if (runStart >= 0) await writeRun(runStart, chunk.length);
}

/** A stream that broke off (the client went away) is a cut-off upload, said in those words. */
function asReceiveError(err: unknown, received: number, announced: number | null, path: string): Error {
  if (err instanceof SnapbackError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as Error | undefined)?.message === 'aborted') {
    const of = announced !== null ? ` of ${announced}` : '';
    return new SnapbackError('BAD_ARGUMENT', `the upload was cut off after ${received}${of} bytes; nothing was imported`, { received, announced });
  }
  return fromSystemError(err, `receiving ${basename(path)}`);
}
