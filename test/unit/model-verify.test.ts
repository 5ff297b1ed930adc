/**
 * Model verification: regions hashed on the hash worker threads, reads served from the bytes
 * that were verified, and what was verified kept in the state directory per model and file
 * identity, so a daemon start does not hash again what an earlier one verified, while a model
 * file changed in any way is hashed again.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, utimesSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Prng } from '../helpers/prng.js';
import { Manifest, createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { ModelImage } from '../../appliance/storage/model-image.js';
import { HashPool } from '../../appliance/storage/hash-pool.js';
import { digestOf } from '../../appliance/storage/hash-functions.js';
import { initEngine, openEngine } from '../../appliance/storage/engine.js';
import { isSnapbackError } from '../../appliance/errors.js';

const KiB = 1024;
/** A whole second, in the past: the model's mtime can be put back exactly. */
const MTIME = new Date(1_700_000_000_000);

/** A model image with its manifest; its mtime set to MTIME, then left alone past the record's racy window. */
async function makeModel(dir: string, size: number, regionSize: number, seed = 1): Promise<{ path: string; bytes: Buffer }> {
  const bytes = new Prng(seed).bytes(size);
  const path = join(dir, 'model.img');
  writeFileSync(path, bytes);
  utimesSync(path, MTIME, MTIME);
  await (await createManifest(path, { regionSize })).save(manifestPathFor(path));
  await sleep(150);
  return { path, bytes };
}

async function loadId(path: string): Promise<string> {
  return (await Manifest.load(manifestPathFor(path))).id;
}

function patchByte(path: string, offset: number, value: number): void {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.from([value]), 0, 1, offset);
  closeSync(fd);
}

describe('model verification', function () {
  this.timeout(120_000);
  let dir: string;
  let pool: HashPool;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-modelverify-'));
    pool = new HashPool({ threads: 2 });
  });
  afterEach(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('init of a new disk makes pending exactly the regions where the model is not all zeroes', async () => {
    const regionSize = 16 * KiB;
    const bytes = new Prng(7).bytes(2 << 20);
    const zero = [0, 5, 6, 8, 127];
    for (const r of zero) bytes.fill(0, r * regionSize, (r + 1) * regionSize);
    const path = join(dir, 'model.img');
    writeFileSync(path, bytes);
    await (await createManifest(path, { regionSize: 64 * KiB })).save(manifestPathFor(path));
    const state = join(dir, 'state');
    const res = await initEngine({ stateDir: state, model: path, disk: join(dir, 'disk.img'), regionSize });
    assert.equal(res.regionCount, 128);
    assert.equal(res.pendingRegions, 128 - zero.length);
    const e = await openEngine(state);
    try {
      for (let r = 0; r < 128; r++) assert.equal(e.log.isPending(r), !zero.includes(r), `region ${r}`);
    } finally {
      await e.close();
    }
  });

  it('trusts at a daemon start the regions an earlier start verified, and hashes none of them again', async () => {
    const m = await makeModel(dir, 2 << 20, 64 * KiB);
    const state = join(dir, 'state');
    // init reads the whole model (zero regions of a new disk): every region is verified then
    await initEngine({ stateDir: state, model: m.path, disk: join(dir, 'disk.img'), regionSize: 16 * KiB });
    const e = await openEngine(state);
    try {
      const st = e.model.verificationStats();
      assert.equal(st.regions, 32);
      assert.equal(st.fromRecord, 32, 'every region trusted from the record');
      assert.ok(existsSync(join(state, 'model-verified', `${e.model.id}.verified`)));
      await e.hydrator.runToCompletion(); // the restore reads every region of the model
      assert.ok((await e.pd.read(0, m.bytes.length)).equals(m.bytes));
      assert.equal(e.model.verificationStats().hashedRegions, 0, 'nothing hashed again');
    } finally {
      await e.close();
    }
  });

  it('hashes again a model file changed after it was verified, even with its mtime put back (the record is tied to the file identity)', async () => {
    const m = await makeModel(dir, 1 << 20, 64 * KiB);
    const verifiedDir = join(dir, 'verified');
    const a = new ModelImage(m.path, { verifiedDir, hashPool: pool });
    await a.open();
    const res = await a.verifyRegions();
    assert.deepEqual(res.bad, []);
    await a.close();
    // the first daemon start after: all trusted
    const b = new ModelImage(m.path, { verifiedDir, hashPool: pool });
    await b.open();
    assert.equal(b.verificationStats().fromRecord, 16);
    await b.close();
    // the file changes in place (same inode, same size) and its mtime is put back exactly,
    // so the manifest's own check of mtime and inode sees nothing
    patchByte(m.path, 2 * 64 * KiB + 100, m.bytes[2 * 64 * KiB + 100]! ^ 0x5a);
    utimesSync(m.path, MTIME, MTIME);
    const c = new ModelImage(m.path, { verifiedDir, hashPool: pool });
    await c.open();
    try {
      assert.equal(c.verificationStats().fromRecord, 0, 'the record of another state of the file is not used');
      await assert.rejects(c.read(2 * 64 * KiB, 4096), (err: unknown) => isSnapbackError(err, 'MODEL_CORRUPT') && /region 2 does not match/.test((err as Error).message));
      assert.ok((await c.read(0, 64 * KiB)).equals(m.bytes.subarray(0, 64 * KiB)), 'other regions still serve');
    } finally {
      await c.close();
    }
  });

  it('keeps no record for a file changed just before it was opened (its times may not show a change within the same tick)', async () => {
    const m = await makeModel(dir, 256 * KiB, 64 * KiB);
    const verifiedDir = join(dir, 'verified');
    // a window of an hour: the file, written a moment ago, is inside it
    const a = new ModelImage(m.path, { verifiedDir, hashPool: pool, recordRacyMs: 3_600_000 });
    await a.open();
    assert.deepEqual((await a.verifyRegions()).bad, []);
    await a.close();
    assert.equal(existsSync(join(verifiedDir, `${(await loadId(m.path))}.verified`)), false, 'nothing recorded');
    const b = new ModelImage(m.path, { verifiedDir, hashPool: pool });
    await b.open();
    assert.equal(b.verificationStats().fromRecord, 0);
    await b.close();
  });

  it('ignores a damaged record and hashes again', async () => {
    const m = await makeModel(dir, 512 * KiB, 64 * KiB);
    const verifiedDir = join(dir, 'verified');
    const a = new ModelImage(m.path, { verifiedDir, hashPool: pool });
    await a.open();
    await a.verifyRegions();
    const record = a.verifiedRecordPath!;
    await a.close();
    const bytes = readFileSync(record);
    bytes[bytes.length - 40] = bytes[bytes.length - 40]! ^ 0xff; // a bit of the bitmap
    writeFileSync(record, bytes);
    const b = new ModelImage(m.path, { verifiedDir, hashPool: pool });
    await b.open();
    assert.equal(b.verificationStats().fromRecord, 0);
    assert.ok((await b.read(0, m.bytes.length)).equals(m.bytes));
    assert.equal(b.verificationStats().hashedRegions, 8);
    await b.close();
  });

  it('serves reads across region boundaries from verified bytes, each region hashed once on the worker threads', async () => {
    const size = 3 * 256 * KiB + 12345;
    const m = await makeModel(dir, size, 256 * KiB, 7);
    const model = new ModelImage(m.path, { hashPool: pool });
    await model.open();
    try {
      const rng = new Prng(8);
      const reads = Array.from({ length: 200 }, () => {
        const off = rng.int(size);
        return { off, len: Math.min(size - off, 1 + rng.int(300 * KiB)) };
      });
      // all at once: reads of the same region join one verification
      const got = await Promise.all(reads.map((r) => model.read(r.off, r.len)));
      got.forEach((b, i) => assert.ok(b.equals(m.bytes.subarray(reads[i]!.off, reads[i]!.off + reads[i]!.len)), `read ${i}`));
      assert.ok((await model.read(0, size)).equals(m.bytes));
      const st = model.verificationStats();
      assert.equal(st.hashedRegions, 4, 'each region hashed once');
      assert.equal(st.verified, 4);
      assert.equal(pool.stats().jobs, 4, 'on the hash workers');
    } finally {
      await model.close();
    }
  });

  it('finds every bad region when asked to verify now, and keeps serving the good ones', async () => {
    const m = await makeModel(dir, 1 << 20, 64 * KiB);
    const model = new ModelImage(m.path, { hashPool: pool, verifiedDir: join(dir, 'verified') });
    await model.open();
    try {
      assert.ok((await model.read(0, 1 << 20)).equals(m.bytes));
      patchByte(m.path, 5 * 64 * KiB, m.bytes[5 * 64 * KiB]! ^ 1);
      patchByte(m.path, 11 * 64 * KiB + 9, m.bytes[11 * 64 * KiB + 9]! ^ 1);
      const progress: number[] = [];
      const bad: number[] = [];
      const res = await model.verifyRegions({ onProgress: (d) => progress.push(d), onBad: (r) => bad.push(r) });
      assert.deepEqual(res.bad, [5, 11]);
      assert.deepEqual([...bad].sort((x, y) => x - y), [5, 11]);
      assert.equal(progress[progress.length - 1], 16);
      assert.equal(model.verificationStats().bad, 2);
      await assert.rejects(model.read(5 * 64 * KiB, 512), (err: unknown) => isSnapbackError(err, 'MODEL_CORRUPT'));
      assert.equal(await model.checkRegion(4), true);
      assert.equal(await model.checkRegion(11), false);
    } finally {
      await model.close();
    }
  });

  it('hash pool: the digests of node:crypto for shared and unshared bytes, idle workers stop, a closed pool refuses', async () => {
    const p = new HashPool({ threads: 2, idleMs: 50 });
    const bytes = new Prng(3).bytes(3 * 64 * KiB + 5);
    const shared = Buffer.from(new SharedArrayBuffer(bytes.length + 10)).subarray(10);
    bytes.copy(shared);
    for (const data of [bytes, shared, bytes.subarray(1000, 2000)]) {
      assert.ok((await p.digest('sha256', data)).equals(digestOf('sha256', data)));
      const per = await p.digestRegions('sha1', data, 64 * KiB);
      const want = Buffer.concat(Array.from({ length: Math.ceil(data.length / (64 * KiB)) }, (_, i) => digestOf('sha1', data.subarray(i * 64 * KiB, (i + 1) * 64 * KiB))));
      assert.ok(per.equals(want));
    }
    assert.ok((await p.digest('blake2b512', Buffer.alloc(0))).equals(digestOf('blake2b512', Buffer.alloc(0))));
    // a job the worker cannot do fails with a clear error, and the pool goes on
    await assert.rejects(p.digest('md4' as 'sha256', bytes), (err: unknown) => isSnapbackError(err, 'IO_ERROR') && /hashing failed: unknown hash md4/.test((err as Error).message));
    assert.ok((await p.digest('sha256', bytes)).equals(digestOf('sha256', bytes)));
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => p.digest('sha256', bytes.subarray(i))));
    many.forEach((d, i) => assert.ok(d.equals(digestOf('sha256', bytes.subarray(i)))));
    assert.ok(p.stats().running > 0 && p.stats().running <= 2);
    for (let i = 0; i < 200 && p.stats().running > 0; i++) await sleep(25);
    assert.equal(p.stats().running, 0, 'idle workers stopped');
    assert.ok((await p.digest('sha256', bytes)).equals(digestOf('sha256', bytes)), 'and start again on demand');
    await p.close();
    await assert.rejects(p.digest('sha256', bytes), (err: unknown) => isSnapbackError(err, 'CLOSED'));
  });

  it('hash pool: when no worker thread can start, hashes on the main thread instead of failing reads', async () => {
    const p = new HashPool({ threads: 2, workerUrl: new URL('./no-such-hash-worker.js', import.meta.url) });
    try {
      const bytes = new Prng(4).bytes(200 * KiB);
      const got = await Promise.all([p.digest('sha256', bytes), p.digestRegions('sha1', bytes, 64 * KiB), p.digest('sha256', bytes.subarray(7))]);
      assert.ok(got[0].equals(digestOf('sha256', bytes)));
      assert.equal(got[1].length, 4 * 20);
      assert.ok(got[2].equals(digestOf('sha256', bytes.subarray(7))));
      assert.equal(p.stats().running, 0);
    } finally {
      await p.close();
    }
  });
});
