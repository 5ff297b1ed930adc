/**
 * Hashing model images: BLAKE3 as the default of new manifests (digests checked against the
 * BLAKE3 reference's answers, on the main thread and on the hash workers), SHA-256 manifests
 * still read and verified, each hash finding a changed region; and the holes of sparse images
 * skipped (on the disk-backed temporary directory's file system and on tmpfs) with the very
 * manifest a read of every byte gives, falling back to reading everything where the holes
 * cannot be found.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../helpers/prng.js';
import { BLAKE3_ANSWERS, blake3VectorInput as vectorInput } from '../helpers/blake3-vectors.js';
import { DEFAULT_MANIFEST_HASH, Manifest, createManifest, manifestPathFor, type HashName } from '../../appliance/storage/manifest.js';
import { digestOf, newDigester } from '../../appliance/storage/hash-functions.js';
import { HashPool } from '../../appliance/storage/hash-pool.js';
import { ModelImage } from '../../appliance/storage/model-image.js';
import { dataRegionRuns } from '../../appliance/storage/data-extents.js';

const KiB = 1024;
const MiB = 1 << 20;
const GiB = 1 << 30;
const TMPFS_MAGIC = 0x01021994;

function patchByte(path: string, offset: number, value: number): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([value]), 0, 1, offset);
  closeSync(fd);
}

/** A sparse file of `size` bytes holding random data at the given [offset, length) extents, the rest holes. */
function sparseFile(path: string, size: number, extents: Array<[number, number]>, seed: number): void {
  const rng = new Prng(seed);
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (const [off, len] of extents) writeSync(fd, rng.bytes(len), 0, len, off);
  } finally {
    closeSync(fd);
  }
}

/** Bytes of the regions the extents touch: what a manifest that skips holes has to read. */
function dataRegionBytes(size: number, regionSize: number, extents: Array<[number, number]>): number {
  const regions = new Set<number>();
  for (const [off, len] of extents) for (let r = Math.floor(off / regionSize); r * regionSize < off + len; r++) regions.add(r);
  let bytes = 0;
  for (const r of regions) bytes += Math.min(size, (r + 1) * regionSize) - r * regionSize;
  return bytes;
}

async function manifestCountingReads(path: string, o: { regionSize: number; hash?: HashName; skipHoles: boolean; hashPool: HashPool }): Promise<{ m: Manifest; read: number }> {
  let read = 0;
  const m = await createManifest(path, { ...o, onRead: (n) => (read += n) });
  return { m, read };
}

describe('manifest hashing: BLAKE3 by default, SHA-256 still read, holes of sparse images skipped', function () {
  this.timeout(300_000);
  let dir: string;
  let pool: HashPool;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-hashing-'));
    pool = new HashPool({ threads: 2 });
  });
  afterEach(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('BLAKE3 digests are the reference answers, whole, incremental, per region and on the hash workers', async () => {
    for (const [n, hex] of BLAKE3_ANSWERS) {
      const input = vectorInput(n);
      assert.equal(digestOf('blake3', input).toString('hex'), hex, `${n} bytes`);
      const d = newDigester('blake3');
      for (let i = 0; i < n; i += 333) d.update(input.subarray(i, Math.min(n, i + 333)));
      assert.equal(d.digest().toString('hex'), hex, `${n} bytes in parts`);
      // unshared bytes (copied to the worker) and bytes in shared memory at an odd offset
      assert.equal((await pool.digest('blake3', input)).toString('hex'), hex, `${n} bytes on a worker`);
      const shared = Buffer.from(new SharedArrayBuffer(n + 3));
      input.copy(shared, 3);
      assert.equal((await pool.digest('blake3', shared.subarray(3))).toString('hex'), hex, `${n} bytes of shared memory on a worker`);
    }
    const all = new Prng(3).bytes(5 * 64 * KiB + 100);
    const regions = await pool.digestRegions('blake3', all, 64 * KiB);
    for (let r = 0; r < 6; r++) assert.ok(regions.subarray(r * 32, r * 32 + 32).equals(digestOf('blake3', all.subarray(r * 64 * KiB, (r + 1) * 64 * KiB))), `region ${r}`);
  });

  it('new manifests are BLAKE3; a BLAKE3 manifest and a SHA-256 manifest of the same image both verify it, and each finds a changed region', async () => {
    assert.equal(DEFAULT_MANIFEST_HASH, 'blake3');
    const regionSize = 64 * KiB;
    const bytes = new Prng(21).bytes(16 * regionSize + 999);
    const image = join(dir, 'model.img');
    writeFileSync(image, bytes);
    const b3 = await createManifest(image, { regionSize, hashPool: pool });
    assert.equal(b3.hash, 'blake3', 'the default hash of a new manifest');
    await b3.save(join(dir, 'blake3.manifest.json'));
    const sha = await createManifest(image, { regionSize, hash: 'sha256', hashPool: pool });
    await sha.save(join(dir, 'sha256.manifest.json'));
    assert.notEqual(b3.id, sha.id, 'the hash is part of the id');
    for (const [name, m] of [['blake3', b3], ['sha256', sha]] as const) {
      const loaded = await Manifest.load(join(dir, `${name}.manifest.json`));
      assert.equal(loaded.hash, name);
      assert.equal(loaded.id, m.id);
      for (let r = 0; r < loaded.regionCount; r++) assert.ok(loaded.digest(r).equals(digestOf(name, bytes.subarray(r * regionSize, (r + 1) * regionSize))), `${name} region ${r}`);
    }
    const models = [new ModelImage(image, { manifestPath: join(dir, 'blake3.manifest.json'), hashPool: pool }), new ModelImage(image, { manifestPath: join(dir, 'sha256.manifest.json'), hashPool: pool })];
    try {
      for (const model of models) await model.open();
      for (const model of models) assert.deepEqual((await model.verifyRegions()).bad, [], `${model.manifest.hash}: the image verifies`);
      patchByte(image, 7 * regionSize + 5, bytes[7 * regionSize + 5]! ^ 0x40);
      patchByte(image, 16 * regionSize + 3, bytes[16 * regionSize + 3]! ^ 1); // the short last region
      for (const model of models) assert.deepEqual((await model.verifyRegions()).bad, [7, 16], `${model.manifest.hash} finds the changed regions`);
    } finally {
      for (const model of models) await model.close();
    }
  });

  it('an existing SHA-256 manifest file loads unchanged: same hash, id and digests, and is written back byte for byte', async () => {
    // Written as every earlier release wrote it: SHA-256 region digests, the id over the JSON.
    const bytes = new Prng(5).bytes(3 * MiB + 12345);
    const image = join(dir, 'old.img');
    writeFileSync(image, bytes);
    const digests = Buffer.concat(Array.from({ length: 4 }, (_, r) => digestOf('sha256', bytes.subarray(r * MiB, (r + 1) * MiB))));
    const hashes = digests.toString('base64');
    const idText = JSON.stringify({ format: 'snapback-manifest/1', size: bytes.length, regionSize: MiB, hash: 'sha256', hashes });
    const id = digestOf('sha256', Buffer.from(idText)).toString('hex');
    const json = { format: 'snapback-manifest/1', id, name: 'old.img', size: bytes.length, regionSize: MiB, hash: 'sha256', hashes, createdAt: '2026-01-02T03:04:05.678Z', image: { size: bytes.length, mtimeMs: 1767322845678.123, ino: 4242 } };
    const text = JSON.stringify(json, null, 1) + '\n';
    writeFileSync(manifestPathFor(image), text);
    const m = await Manifest.load(manifestPathFor(image));
    assert.equal(m.hash, 'sha256');
    assert.equal(m.id, id);
    assert.ok(m.allDigests.equals(digests));
    await m.save(join(dir, 'again.json'));
    assert.equal(readFileSync(join(dir, 'again.json'), 'utf8'), text);
    const model = new ModelImage(image, { hashPool: pool });
    await model.open();
    try {
      assert.deepEqual((await model.verifyRegions()).bad, []);
      assert.ok((await model.read(0, bytes.length)).equals(bytes));
    } finally {
      await model.close();
    }
  });

  const places: Array<{ label: string; base: () => string | null }> = [
    { label: 'the temporary directory (disk-backed)', base: () => tmpdir() },
    { label: 'tmpfs (/dev/shm)', base: () => (existsSync('/dev/shm') && statfsSync('/dev/shm').type === TMPFS_MAGIC ? '/dev/shm' : null) },
  ];
  for (const place of places) {
    it(`on ${place.label}: a sparse image's manifest, holes skipped, is the one a read of every byte gives, reading only the regions with data`, async () => {
      const base = place.base();
      assert.ok(base !== null, `${place.label} is not there: the test machine needs a tmpfs at /dev/shm`);
      const where = mkdtempSync(join(base, 'snapback-sparse-'));
      try {
        const regionSize = 1 * MiB;
        const size = 1 * GiB + 300 * KiB; // a short last region
        const extents: Array<[number, number]> = [
          [0, 4 * KiB], // the first region
          [5 * MiB - 8 * KiB, 16 * KiB], // across a region boundary
          [100 * MiB + 123, 3 * MiB], // unaligned, several regions
          [700 * MiB, 64 * KiB],
          [size - 1000, 1000], // the short last region
        ];
        const image = join(where, 'sparse.img');
        sparseFile(image, size, extents, 9);
        for (const hash of ['blake3', 'sha256'] as const) {
          const skipped = await manifestCountingReads(image, { regionSize, hash, skipHoles: true, hashPool: pool });
          const whole = await manifestCountingReads(image, { regionSize, hash, skipHoles: false, hashPool: pool });
          assert.equal(whole.read, size, 'the plain way reads every byte');
          assert.equal(skipped.m.id, whole.m.id, `${hash}: the same manifest id`);
          assert.ok(skipped.m.allDigests.equals(whole.m.allDigests), `${hash}: the same digests`);
          assert.equal(skipped.read, dataRegionBytes(size, regionSize, extents), `${hash}: only the regions with data are read`);
        }
        // the last region short and in a hole
        const image2 = join(where, 'sparse2.img');
        const size2 = 64 * MiB + 4 * KiB;
        sparseFile(image2, size2, [[3 * MiB, 4 * KiB]], 10);
        const a = await manifestCountingReads(image2, { regionSize, skipHoles: true, hashPool: pool });
        const b = await manifestCountingReads(image2, { regionSize, skipHoles: false, hashPool: pool });
        assert.ok(a.m.allDigests.equals(b.m.allDigests));
        assert.equal(a.read, regionSize);
      } finally {
        rmSync(where, { recursive: true, force: true });
      }
    });
  }

  it('a 64 GiB sparse image with a few data extents: its manifest reads only those regions, and every hole region has the digest of zeros', async () => {
    const regionSize = 1 * MiB;
    const size = 64 * GiB;
    const extents: Array<[number, number]> = [
      [0, 1 * MiB],
      [10 * GiB + 5, 2 * MiB],
      [40 * GiB, 4 * KiB],
      [size - 3 * MiB, 3 * MiB],
    ];
    const image = join(dir, 'big.img');
    sparseFile(image, size, extents, 12);
    const progress: number[] = [];
    let read = 0;
    const m = await createManifest(image, { regionSize, hashPool: pool, onRead: (n) => (read += n), onProgress: (d) => progress.push(d) });
    assert.equal(m.regionCount, 64 * 1024);
    assert.equal(read, dataRegionBytes(size, regionSize, extents), 'only the regions with data were read');
    assert.equal(progress[progress.length - 1], size, 'progress reaches the whole image');
    const zero = digestOf('blake3', Buffer.alloc(regionSize));
    const dataRegions = new Set([0, 10 * 1024, 10 * 1024 + 1, 10 * 1024 + 2, 40 * 1024, 65533, 65534, 65535]);
    let zeros = 0;
    for (let r = 0; r < m.regionCount; r++) {
      if (dataRegions.has(r)) assert.ok(!m.digest(r).equals(zero), `region ${r} holds data`);
      else if (m.digest(r).equals(zero)) zeros++;
    }
    assert.equal(zeros, m.regionCount - dataRegions.size, 'every other region is a hole');
  });

  it('where the holes cannot be found (no perl on the PATH), reads every byte and makes the same manifest', async () => {
    const image = join(dir, 'sparse.img');
    const size = 32 * MiB;
    sparseFile(image, size, [[5 * MiB, 4 * KiB]], 13);
    assert.deepEqual(await dataRegionRuns(image, size, MiB), [[5, 6]], 'perl finds the one extent');
    const found = await manifestCountingReads(image, { regionSize: MiB, skipHoles: true, hashPool: pool });
    const path = process.env.PATH;
    process.env.PATH = join(dir, 'empty-bin');
    try {
      assert.equal(await dataRegionRuns(image, size, MiB), null);
      const fallback = await manifestCountingReads(image, { regionSize: MiB, skipHoles: true, hashPool: pool });
      assert.equal(fallback.read, size, 'every byte read');
      assert.equal(fallback.m.id, found.m.id);
    } finally {
      process.env.PATH = path;
    }
  });
});
