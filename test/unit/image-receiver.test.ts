/**
 * Receiving an image from a stream (an upload): the manifest made on the way equals the one made
 * from the finished file; zero regions stay holes; memory stays bounded by a few chunks; a
 * stream cut off, fewer bytes than announced, an image that differs from the manifest uploaded
 * with it, and a filesystem too small each end with a clear error and no file left behind.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isSnapbackError } from '../../appliance/errors.js';
import { HashPool } from '../../appliance/storage/hash-pool.js';
import { receiveImage } from '../../appliance/storage/image-receiver.js';
import { createManifest } from '../../appliance/storage/manifest.js';
import { patternBytes } from '../helpers/prng.js';

const REGION = 64 << 10;

/** An image with data, a long run of zero regions and data again, in pieces of odd sizes. */
function imageBytes(size: number): Buffer {
  const b = patternBytes(size, 5);
  b.fill(0, 2 * REGION, size - 3 * REGION);
  return b;
}

function* pieces(b: Buffer, step = 100_003): Generator<Buffer> {
  for (let i = 0; i < b.length; i += step) yield b.subarray(i, Math.min(b.length, i + step));
}

/** A stream that yields `upTo` bytes of `b`, then fails the way a dropped connection does. */
async function* cutOff(b: Buffer, upTo: number): AsyncGenerator<Buffer> {
  yield* pieces(b.subarray(0, upTo));
  throw Object.assign(new Error('aborted'), { code: 'ECONNRESET' });
}

describe('receiving an image from a stream', function () {
  this.timeout(120_000);
  let dir: string;
  const pool = new HashPool({ threads: 2 });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-receive-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  after(() => pool.close());

  it('makes the same manifest as hashing the finished file, keeps zero regions as holes', async () => {
    const size = 24 * (1 << 20) + 12345; // a short last region
    const bytes = imageBytes(size);
    const path = join(dir, 'up.img');
    let progress = 0;
    const m = await receiveImage(Readable.from(pieces(bytes)), {
      path,
      name: 'lab',
      expectedBytes: size,
      regionSize: REGION,
      hash: 'sha256',
      hashPool: pool,
      onProgress: (n) => (progress = n),
    });
    assert.equal(progress, size);
    assert.ok(readFileSync(path).equals(bytes), 'the file holds the streamed bytes');
    const again = await createManifest(path, { regionSize: REGION, hash: 'sha256', hashPool: pool });
    assert.equal(m.id, again.id);
    assert.equal(m.size, size);
    assert.equal(m.json.name, 'lab');
    const st = statSync(path);
    assert.equal(m.json.image.ino, st.ino);
    assert.ok(st.blocks * 512 < size - 16 * (1 << 20), `zero regions are holes: ${st.blocks * 512} bytes allocated of ${size}`);
  });

  it('never holds more than a few chunks of the image in memory (the stream waits while chunks are written and hashed)', async () => {
    const piece = patternBytes(1 << 20, 3);
    const total = 256 << 20;
    let pulled = 0;
    let peak = 0;
    const base = process.memoryUsage().arrayBuffers;
    async function* source(): AsyncGenerator<Buffer> {
      for (; pulled < total; pulled += piece.length) {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - base);
        yield piece; // the same bytes again and again: whatever is held is the receiver's
      }
    }
    const m = await receiveImage(source(), { path: join(dir, 'big.img'), name: 'big', expectedBytes: total, regionSize: 1 << 20, hash: 'sha256', hashPool: pool });
    assert.equal(m.size, total);
    assert.ok(peak < 48 << 20, `at most ${peak} bytes of buffers while receiving 256 MiB`);
  });

  it('checks every region against a manifest given with the image and refuses the first that differs, leaving nothing', async () => {
    const size = 8 << 20;
    const good = imageBytes(size);
    writeFileSync(join(dir, 'src.img'), good);
    const expect = await createManifest(join(dir, 'src.img'), { regionSize: REGION, hash: 'sha256', hashPool: pool });
    const path = join(dir, 'up.img');
    const m = await receiveImage(Readable.from(pieces(good)), { path, name: 'x', expectedBytes: size, regionSize: 4096, hash: 'sha1', expect, hashPool: pool });
    assert.equal(m.id, expect.id, 'the manifest’s region size and hash are used');
    rmSync(path);

    const bad = Buffer.from(good);
    bad[5 * REGION + 7] = bad[5 * REGION + 7]! ^ 1;
    await assert.rejects(
      receiveImage(Readable.from(pieces(bad)), { path, name: 'x', expectedBytes: size, regionSize: REGION, hash: 'sha256', expect, hashPool: pool }),
      (e) => isSnapbackError(e, 'MODEL_CORRUPT') && /region 5 of the upload does not match/.test(e.message),
    );
    assert.equal(existsSync(path), false);
    await assert.rejects(
      receiveImage(Readable.from(pieces(good)), { path, name: 'x', expectedBytes: size - 1, regionSize: REGION, hash: 'sha256', expect, hashPool: pool }),
      (e) => isSnapbackError(e, 'MANIFEST_INVALID') && /the manifest describes/.test(e.message),
    );
    assert.deepEqual(readdirSync(dir), ['src.img']);
  });

  it('a stream cut off, or ending short of what it announced, fails with how far it got and leaves nothing', async () => {
    const size = 12 << 20;
    const bytes = imageBytes(size);
    const path = join(dir, 'up.img');
    const opts = { path, name: 'x', expectedBytes: size, regionSize: REGION, hash: 'sha256' as const, hashPool: pool };
    await assert.rejects(receiveImage(cutOff(bytes, 5_000_000), opts), (e) => isSnapbackError(e, 'BAD_ARGUMENT') && /cut off after 5000000 of 12582912 bytes/.test(e.message));
    assert.equal(existsSync(path), false);
    await assert.rejects(receiveImage(Readable.from(pieces(bytes.subarray(0, size - 10))), opts), (e) => isSnapbackError(e, 'BAD_ARGUMENT') && /ended after 12582902 of 12582912 bytes/.test(e.message));
    assert.equal(existsSync(path), false);
    await assert.rejects(receiveImage(Readable.from(pieces(bytes)), { ...opts, expectedBytes: size - 10 }), (e) => isSnapbackError(e, 'BAD_ARGUMENT') && /longer than/.test(e.message));
    assert.equal(existsSync(path), false);
    await assert.rejects(receiveImage(Readable.from([]), { ...opts, expectedBytes: null }), (e) => isSnapbackError(e, 'BAD_ARGUMENT') && /empty/.test(e.message));
    assert.deepEqual(readdirSync(dir), []);
  });

  it('a filesystem too small: refused before a byte is written when the size is announced, NO_SPACE when it fills on the way; nothing left', async () => {
    const fs = join(dir, 'small');
    mkdirSync(fs);
    // A real full filesystem (the suite runs as root, as the disk-full integration test does).
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', fs]);
    try {
      const bytes = patternBytes(8 << 20, 9);
      const path = join(fs, 'up.img');
      let progress = 0;
      await assert.rejects(
        receiveImage(Readable.from(pieces(bytes)), { path, name: 'x', expectedBytes: bytes.length, regionSize: REGION, hash: 'sha256', hashPool: pool, onProgress: (n) => (progress = n) }),
        (e) => isSnapbackError(e, 'NO_SPACE') && /not enough space for the image: 8 MiB needed, 4 MiB free/.test(e.message),
      );
      assert.equal(progress, 0, 'nothing was read');
      // Without a size (chunked upload): the disk fills on the way.
      await assert.rejects(
        receiveImage(Readable.from(pieces(bytes)), { path, name: 'x', expectedBytes: null, regionSize: REGION, hash: 'sha256', hashPool: pool }),
        (e) => isSnapbackError(e, 'NO_SPACE') && /no space left/.test(e.message),
      );
      assert.deepEqual(readdirSync(fs), []);
    } finally {
      execFileSync('umount', [fs]);
    }
  });
});
