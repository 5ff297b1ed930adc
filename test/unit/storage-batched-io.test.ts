/**
 * The batched I/O worker behind FileDevice: small reads and writes reach the disk through one
 * worker thread, many per wake-up, with the same results and errors as the thread-pool path;
 * a worker that dies loses nothing; a device closes only once the worker is done with its fd.
 * Real files and real threads throughout.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BatchedIo } from '../../appliance/storage/batched-io.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { BufferPool } from '../../appliance/nbd/buffer-pool.js';
import { Prng } from '../helpers/prng.js';

const KiB = 1024;

describe('batched I/O worker', function () {
  this.timeout(60_000);
  let dir: string;
  const ios: BatchedIo[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-batched-'));
  });
  afterEach(async () => {
    for (const io of ios.splice(0)) await io.close();
    rmSync(dir, { recursive: true, force: true });
  });
  function newIo(options: ConstructorParameters<typeof BatchedIo>[0] = {}): BatchedIo {
    const io = new BatchedIo(options);
    ios.push(io);
    return io;
  }

  it('serves 64 concurrent 4 KiB writes and reads of a FileDevice with fewer wake-ups than requests', async () => {
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(1 << 20));
    const io = newIo({ loneRequests: true });
    const dev = new FileDevice(path, { batchedIo: io, inlineIo: null });
    await dev.open();
    const data = new Prng(7).bytes(64 * 4 * KiB);
    await Promise.all(Array.from({ length: 64 }, (_, i) => dev.write(i * 8 * KiB, data.subarray(i * 4 * KiB, (i + 1) * 4 * KiB))));
    const back = await Promise.all(Array.from({ length: 64 }, (_, i) => dev.read(i * 8 * KiB, 4 * KiB)));
    for (let i = 0; i < 64; i++) assert.ok(back[i]!.equals(data.subarray(i * 4 * KiB, (i + 1) * 4 * KiB)), `block ${i}`);
    await dev.close();
    assert.equal(io.stats.requests, 128, 'every request went through the worker');
    assert.ok(io.stats.wakeups < io.stats.requests, `${io.stats.wakeups} wake-ups for ${io.stats.requests} requests`);
    assert.ok(io.stats.deliveries < io.stats.requests, `${io.stats.deliveries} deliveries for ${io.stats.requests} requests`);
    // What the worker wrote is in the file.
    const file = readFileSync(path);
    for (let i = 0; i < 64; i++) assert.ok(file.subarray(i * 8 * KiB, i * 8 * KiB + 4 * KiB).equals(data.subarray(i * 4 * KiB, (i + 1) * 4 * KiB)));
  });

  it('reads zeroes past the end of a file shorter than the device', async () => {
    const path = join(dir, 'short.img');
    writeFileSync(path, Buffer.alloc(6 * KiB, 0xab));
    const io = newIo({ loneRequests: true });
    const dev = new FileDevice(path, { size: 64 * KiB, batchedIo: io, inlineIo: null });
    await dev.open();
    const buf = await dev.read(4 * KiB, 4 * KiB);
    assert.ok(buf.subarray(0, 2 * KiB).every((b) => b === 0xab));
    assert.ok(buf.subarray(2 * KiB).every((b) => b === 0));
    assert.ok((await dev.read(32 * KiB, 4 * KiB)).every((b) => b === 0));
    await dev.close();
    assert.equal(io.stats.requests, 2);
  });

  it('leaves large requests, FUA writes and requests beyond its slots to the thread pool, with the same results', async () => {
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(1 << 20));
    const io = newIo({ slots: 4, slotBytes: 8 * KiB, loneRequests: true });
    const dev = new FileDevice(path, { batchedIo: io, inlineIo: null });
    await dev.open();
    const big = new Prng(3).bytes(64 * KiB);
    await dev.write(0, big); // larger than a slot
    await dev.write(128 * KiB, big.subarray(0, 4 * KiB), { fua: true });
    assert.equal(io.stats.requests, 0);
    // 16 at once through 4 slots: 4 taken, the rest through libuv.
    const small = new Prng(4).bytes(16 * 4 * KiB);
    await Promise.all(Array.from({ length: 16 }, (_, i) => dev.write(256 * KiB + i * 4 * KiB, small.subarray(i * 4 * KiB, (i + 1) * 4 * KiB))));
    assert.equal(io.stats.requests, 4);
    assert.ok((await dev.read(0, 64 * KiB)).equals(big));
    assert.ok((await dev.read(128 * KiB, 4 * KiB)).equals(big.subarray(0, 4 * KiB)));
    assert.ok((await dev.read(256 * KiB, 64 * KiB)).equals(small));
    await dev.close();
  });

  it('leaves a lone request to the thread pool and sends a whole burst, its first request too, to the worker', async () => {
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(1 << 20, 5));
    const io = newIo();
    const dev = new FileDevice(path, { batchedIo: io, inlineIo: null });
    await dev.open();
    await dev.read(0, 4 * KiB);
    await dev.write(0, Buffer.alloc(4 * KiB, 6));
    assert.equal(io.stats.requests, 0, 'one at a time: nothing for the worker');
    assert.equal(io.stats.lone, 2, 'both went through the thread pool');
    const reads = await Promise.all(Array.from({ length: 8 }, (_, i) => dev.read(i * 4 * KiB, 4 * KiB)));
    assert.equal(io.stats.requests, 8, 'the whole burst went to the worker');
    assert.ok(reads[0]!.every((b) => b === 6) && reads.slice(1).every((r) => r.every((b) => b === 5)));
    // A lone write after the burst: through the thread pool again, its data in the file.
    await dev.write(4 * KiB, Buffer.alloc(4 * KiB, 7));
    assert.equal(io.stats.lone, 3);
    assert.ok((await dev.read(4 * KiB, 4 * KiB)).every((b) => b === 7));
    await dev.close();
    assert.ok(readFileSync(path).subarray(4 * KiB, 8 * KiB).every((b) => b === 7));
  });

  it('rejects a failed request with a storage error naming the file and offset', async () => {
    const path = join(dir, 'ro.img');
    writeFileSync(path, Buffer.alloc(64 * KiB));
    const fd = openSync(path, 'r'); // a write through it fails with EBADF
    try {
      const io = newIo();
      const p = io.write(fd, Buffer.alloc(4 * KiB, 1), 8192, path);
      assert.ok(p, 'the worker took the request');
      await assert.rejects(p, (err: unknown) => {
        assert.ok(isSnapbackError(err, 'IO_ERROR'), String(err));
        assert.match(err.message, /writing .*ro\.img at 8192/);
        assert.equal(err.details?.errno, 'EBADF');
        return true;
      });
    } finally {
      closeSync(fd);
    }
  });

  it('redoes through the thread pool what a worker that died had taken, then stops taking requests', async () => {
    const path = join(dir, 'disk.img');
    const original = new Prng(9).bytes(256 * KiB);
    writeFileSync(path, original);
    const dying = join(dir, 'dying-worker.mjs');
    writeFileSync(dying, 'process.exit(3);\n');
    const io = newIo({ workerUrl: pathToFileURL(dying), loneRequests: true });
    const dev = new FileDevice(path, { batchedIo: io, inlineIo: null });
    await dev.open();
    const data = new Prng(10).bytes(8 * 4 * KiB);
    const writes = Array.from({ length: 8 }, (_, i) => dev.write(i * 4 * KiB, data.subarray(i * 4 * KiB, (i + 1) * 4 * KiB)));
    const reads = Array.from({ length: 8 }, (_, i) => dev.read(128 * KiB + i * 4 * KiB, 4 * KiB));
    await Promise.all(writes);
    const got = await Promise.all(reads);
    assert.equal(io.stats.requests, 16, 'the worker had taken them all');
    for (let i = 0; i < 8; i++) assert.ok(got[i]!.equals(original.subarray(128 * KiB + i * 4 * KiB, 128 * KiB + (i + 1) * 4 * KiB)));
    assert.ok((await dev.read(0, 32 * KiB)).equals(data));
    assert.equal(io.write(0, Buffer.alloc(4 * KiB), 0, path), null, 'no more requests go to a dead worker');
    await dev.close();
  });

  it('keeps small NBD buffers in 4 KiB classes for reuse', () => {
    const pool = new BufferPool(1 << 20);
    const a = pool.acquire(4 * KiB);
    assert.equal(a.length, 4 * KiB);
    pool.release(a);
    assert.equal(pool.acquire(3000), a, 'a released 4 KiB buffer serves the next small request');
    assert.equal(pool.acquire(5 * KiB).length, 8 * KiB);
  });
});
