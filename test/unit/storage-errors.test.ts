/**
 * Every error path of the storage engine: damaged header slots, a damaged bitmap, sizes that
 * disagree, a log made for a model the library does not hold, a full disk (working disk, log
 * header, background restore), EIO from the working disk, and a model file that changed under
 * its manifest. Each must say what is wrong and leave the log consistent with what it says.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, readFileSync, rmSync, truncateSync, openSync, writeSync, closeSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../helpers/prng.js';
import { buildStack, reopenStack } from '../helpers/storage-rig.js';
import { memoryDevice } from '../helpers/fault-device.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { initEngine, openEngine } from '../../appliance/storage/engine.js';
import { ModelImage } from '../../appliance/storage/model-image.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { RegionLog, SLOT_SIZE, headerWriteOutcome } from '../../appliance/storage/region-log.js';
import { Hydrator } from '../../appliance/storage/hydrator.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { isSnapbackError } from '../../appliance/errors.js';

async function makeState(dir: string, size = 1 << 20, seed = 1): Promise<{ model: string; disk: string; state: string; bytes: Buffer }> {
  const bytes = new Prng(seed).bytes(size);
  const model = join(dir, 'model.img');
  writeFileSync(model, bytes);
  await (await createManifest(model, { regionSize: 64 * 1024 })).save(manifestPathFor(model));
  const disk = join(dir, 'disk.img');
  const state = join(dir, 'state');
  await initEngine({ stateDir: state, model, disk, regionSize: 16 * 1024 });
  return { model, disk, state, bytes };
}

describe('storage engine error paths', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-err-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('uses the other header slot when one is corrupt', async () => {
    const s = await makeState(dir);
    let e = await openEngine(s.state);
    await e.pd.write(0, Buffer.alloc(4096, 7));
    await e.pd.flush();
    await e.log.endSession(true); // a second header generation, in slot B
    const session = e.log.info.sessionNumber;
    await e.close();
    const log = join(s.state, 'write-log.bin');
    const fd = openSync(log, 'r+');
    writeSync(fd, Buffer.from('garbage!'), 0, 8, SLOT_SIZE + 40); // break slot B's checksum
    closeSync(fd);
    e = await openEngine(s.state);
    assert.match(e.headerWarning ?? '', /slot B: checksum mismatch/);
    assert.equal(e.log.info.sessionNumber, session - 1, 'falls back to the older slot A');
    assert.ok(e.log.isDirty(0), 'the bitmap is still there');
    await e.close();
  });

  it('refuses to serve when both header slots are corrupt, and overwrites nothing', async () => {
    const s = await makeState(dir);
    const log = join(s.state, 'write-log.bin');
    const fd = openSync(log, 'r+');
    writeSync(fd, Buffer.alloc(16, 0xee), 0, 16, 0);
    writeSync(fd, Buffer.alloc(16, 0xee), 0, 16, SLOT_SIZE);
    closeSync(fd);
    const before = readFileSync(log);
    await assert.rejects(openEngine(s.state), (err: unknown) => isSnapbackError(err, 'LOG_CORRUPT') && /no valid header.*slot A: bad magic.*slot B: bad magic/.test((err as Error).message));
    assert.ok(readFileSync(log).equals(before), 'the log was not touched');
  });

  it('refuses a model whose size differs from its manifest, and a disk smaller than the model', async () => {
    const s = await makeState(dir);
    truncateSync(s.disk, 4096);
    await assert.rejects(openEngine(s.state), (err: unknown) => isSnapbackError(err, 'SIZE_MISMATCH') && /working disk/.test((err as Error).message));
    truncateSync(s.disk, s.bytes.length);
    const m = new ModelImage(s.model);
    truncateSync(s.model, s.bytes.length + 4096);
    await assert.rejects(m.open(), (err: unknown) => isSnapbackError(err, 'SIZE_MISMATCH'));
  });

  it('treats a log made for another model as all pending, loudly, and serves the one model of the library', async () => {
    const s = await makeState(dir);
    let e = await openEngine(s.state);
    await e.hydrator.runToCompletion();
    await e.close();
    // the library's one model replaced by a different model of the same size
    const library = new ModelLibrary(new StateDir(s.state));
    const [old] = await library.list();
    rmSync(old!.dir, { recursive: true });
    const other = new Prng(99).bytes(s.bytes.length);
    const otherPath = join(dir, 'other.img');
    writeFileSync(otherPath, other);
    await library.registerInPlace(otherPath, await createManifest(otherPath, { regionSize: 64 * 1024 }), { name: 'other', source: { kind: 'file', path: otherPath } });
    e = await openEngine(s.state);
    assert.equal(e.adoptedForeignModel, true);
    assert.equal(e.modelEntry.record.name, 'other');
    assert.equal(e.log.pendingCount, e.log.regionCount);
    assert.ok((await e.pd.read(0, other.length)).equals(other), 'the host reads the new model at once');
    await e.close();
    e = await openEngine(s.state);
    assert.equal(e.adoptedForeignModel, false, 'adopted once, durably');
    await e.close();
  });

  it('refuses a log naming a model the library does not hold when the library has several', async () => {
    const s = await makeState(dir);
    const library = new ModelLibrary(new StateDir(s.state));
    const [old] = await library.list();
    for (const seed of [98, 99]) {
      const p = join(dir, `other-${seed}.img`);
      writeFileSync(p, new Prng(seed).bytes(s.bytes.length));
      await library.registerInPlace(p, await createManifest(p), { name: `other-${seed}`, source: { kind: 'file', path: p } });
    }
    rmSync(old!.dir, { recursive: true });
    const log = readFileSync(join(s.state, 'write-log.bin'));
    await assert.rejects(openEngine(s.state), (err: unknown) => isSnapbackError(err, 'STATE_CORRUPT') && /not in the model library.*other-98, other-99/.test((err as Error).message));
    assert.ok(readFileSync(join(s.state, 'write-log.bin')).equals(log), 'the log was not touched');
  });

  it('detects a model file that changed under its manifest', async () => {
    const s = await makeState(dir);
    const fd = openSync(s.model, 'r+');
    writeSync(fd, Buffer.from([s.bytes[70000]! ^ 0xff]), 0, 1, 70000);
    closeSync(fd);
    await assert.rejects(openEngine(s.state), (err: unknown) => isSnapbackError(err, 'MODEL_CORRUPT') && /region 1 does not match/.test((err as Error).message));
    // even with the timestamp put back, lazy verification catches it at the first read
    const st = JSON.parse(readFileSync(manifestPathFor(s.model), 'utf8')) as { image: { mtimeMs: number } };
    utimesSync(s.model, new Date(st.image.mtimeMs), new Date(st.image.mtimeMs));
    // (utimes keeps only microseconds, so open() may still see a change and verify everything)
    const m = new ModelImage(s.model);
    const opened = await m.open().then(
      () => true,
      (err: unknown) => {
        assert.ok(isSnapbackError(err, 'MODEL_CORRUPT'));
        return false;
      },
    );
    if (opened) {
      await assert.rejects(m.read(65536, 512), (err: unknown) => isSnapbackError(err, 'MODEL_CORRUPT'));
      assert.equal((await m.read(0, 512)).length, 512, 'other regions still serve');
      await m.close();
    }
    // and lazily, with no stat change at all: a model opened before the bytes changed
    writeFileSync(s.model, s.bytes);
    await (await createManifest(s.model, { regionSize: 64 * 1024 })).save(manifestPathFor(s.model));
    const m2 = new ModelImage(s.model);
    await m2.open();
    const fd2 = openSync(s.model, 'r+');
    writeSync(fd2, Buffer.from([s.bytes[200000]! ^ 0xff]), 0, 1, 200000);
    closeSync(fd2);
    await assert.rejects(m2.read(196608, 4096), (err: unknown) => isSnapbackError(err, 'MODEL_CORRUPT') && /region 3/.test((err as Error).message));
    await m2.close();
  });

  it('fails the write that hits EIO or a full disk, and keeps the log consistent', async () => {
    for (const errno of ['EIO', 'ENOSPC'] as const) {
      const rng = new Prng(5);
      const st = await buildStack(rng, { regionSize: 4096, size: 64 * 1024, initialDisk: 'match' });
      st.disk.faults.push({ op: 'write', errno, offset: 8192 });
      await assert.rejects(st.pd.write(8192, Buffer.alloc(4096, 1)), (err: unknown) => isSnapbackError(err, errno === 'EIO' ? 'IO_ERROR' : 'NO_SPACE'));
      await st.pd.write(0, Buffer.alloc(4096, 2)); // other requests still work
      await st.pd.flush();
      st.disk.faults = [];
      const re = await reopenStack(st.modelBytes, st.disk.snapshot(), st.logDev.snapshot());
      assert.ok(re.log.isDirty(2), 'the failed region stays logged (over-marking is safe)');
      assert.ok(re.log.isDirty(0));
      const got = await re.pd.read(0, 4096);
      assert.ok(got.equals(Buffer.alloc(4096, 2)));
    }
  });

  it('synchronous writes (writeNow) are taken only for regions written this session, reads (readNow) only off the working disk, never while quiesced; EIO throws, is counted and changes nothing', async () => {
    const rng = new Prng(7);
    const st = await buildStack(rng, { regionSize: 4096, size: 64 * 1024, initialDisk: 'match' });
    assert.equal(st.pd.writeNow(8192, Buffer.alloc(4096, 1)), false, 'a clean region needs its mark first: write() must');
    await st.pd.write(8192, Buffer.alloc(4096, 1));
    await st.pd.flush();
    await st.pd.quiesce();
    assert.equal(st.pd.writeNow(8192, Buffer.alloc(4096, 9)), false, 'host I/O is stopped');
    assert.equal(st.pd.readNow(Buffer.alloc(4096), 8192), false, 'host I/O is stopped');
    st.pd.resume();
    assert.equal(st.pd.writeNow(8192, Buffer.alloc(4096, 2)), true);
    st.disk.faults.push({ op: 'write', errno: 'EIO', offset: 8192 });
    const errors = st.pd.stats.ioErrors;
    assert.throws(() => st.pd.writeNow(8192, Buffer.alloc(4096, 3)), (err: unknown) => isSnapbackError(err, 'IO_ERROR'));
    assert.equal(st.pd.stats.ioErrors, errors + 1);
    assert.throws(() => st.pd.writeNow(st.pd.size, Buffer.alloc(4096)), (err: unknown) => isSnapbackError(err, 'OUT_OF_RANGE'));
    st.disk.faults = [];
    assert.ok((await st.pd.read(8192, 4096)).equals(Buffer.alloc(4096, 2)), 'the failed write changed nothing');
    assert.ok(st.log.isDirty(2));
    // A read done at once: a read fault throws and is counted the same way.
    const got = Buffer.alloc(4096);
    assert.equal(st.pd.readNow(got, 8192), true);
    assert.ok(got.equals(Buffer.alloc(4096, 2)));
    st.disk.faults.push({ op: 'read', errno: 'EIO', offset: 8192 });
    assert.throws(() => st.pd.readNow(got, 8192), (err: unknown) => isSnapbackError(err, 'IO_ERROR'));
    assert.equal(st.pd.stats.ioErrors, errors + 2);
    st.disk.faults = [];
    // A session end makes the region pending: it must be restored (or merged) before a write,
    // and it reads from the model, which readNow leaves to readInto.
    await st.pd.endSession({ keepWrites: false });
    assert.equal(st.pd.writeNow(8192, Buffer.alloc(4096, 4)), false);
    assert.equal(st.pd.readNow(got, 8192), false);
    assert.ok((await st.pd.read(8192, 4096)).equals(st.modelBytes.subarray(8192, 12288)), 'the model is what the host sees');
  });

  it('fails a write when the log cannot be made durable, without writing the data', async () => {
    const rng = new Prng(6);
    const st = await buildStack(rng, { regionSize: 4096, size: 64 * 1024, initialDisk: 'match' });
    st.logDev.faults.push({ op: 'flush', errno: 'EIO' });
    const before = st.disk.snapshot();
    await assert.rejects(st.pd.write(4096, Buffer.alloc(4096, 3)), (err: unknown) => isSnapbackError(err, 'IO_ERROR'));
    assert.ok(st.disk.snapshot().equals(before), 'set-before-write: no data reached the disk');
    st.logDev.faults = [];
    await st.pd.write(4096, Buffer.alloc(4096, 3)); // the mark is retried
    assert.ok(st.log.isDirty(1));
  });

  it('detects a bitmap sector zeroed after a thawed write: the host reads the model, and the damage is reported', async () => {
    const s = await makeState(dir);
    let e = await openEngine(s.state);
    await e.hydrator.runToCompletion(); // the daemon's first restore
    await e.log.setModes('thawed', 'instant');
    const tampered = Buffer.alloc(4096, 0);
    tampered.write('TAMPERED', 0, 'latin1');
    await e.pd.write(0, tampered);
    await e.pd.flush();
    await e.close();
    // an SD card loses a sector: 504 bytes of the bitmap's first sector read as zeroes
    const logPath = join(s.state, 'write-log.bin');
    const fd = openSync(logPath, 'r+');
    writeSync(fd, Buffer.alloc(504), 0, 504, 8200);
    closeSync(fd);
    e = await openEngine(s.state);
    try {
      assert.ok(e.bitmapDamage, 'the damage is reported');
      assert.deepEqual(e.bitmapDamage.sectors, [0]);
      assert.equal(e.bitmapDamage.regions, e.log.regionCount, 'this small disk fits in one sector: every region');
      // the daemon's start ends the session (thawed: keeping writes), then the host reads
      await e.pd.endSession({ keepWrites: true });
      assert.ok((await e.pd.read(0, 4096)).equals(s.bytes.subarray(0, 4096)), 'the host reads the model, not TAMPERED');
      assert.ok((await e.pd.read(0, s.bytes.length)).equals(s.bytes), 'and the model everywhere');
      await e.hydrator.runToCompletion();
      assert.ok(readFileSync(s.disk).equals(s.bytes), 'the restore put the model back on the working disk');
    } finally {
      await e.close();
    }
    e = await openEngine(s.state);
    assert.equal(e.bitmapDamage, null, 'the sector was rewritten with a good checksum');
    await e.close();
  });

  it('a header write that fails says whether it happened, and the log on disk agrees', async () => {
    const st = await buildStack(new Prng(8), { regionSize: 4096, size: 64 * 1024, initialDisk: 'match' });
    const reopened = async () => (await RegionLog.open(memoryDevice('log', st.logDev.snapshot()))).log.info;
    // the write of the header fails (a full filesystem): nothing happened
    st.logDev.faults.push({ op: 'write', errno: 'ENOSPC', offset: SLOT_SIZE });
    await assert.rejects(st.log.setModes('thawed', 'instant'), (err: unknown) => isSnapbackError(err, 'NO_SPACE') && headerWriteOutcome(err) === 'unchanged' && /write log is unchanged/.test((err as Error).message));
    assert.equal(st.log.info.mode, 'frozen');
    assert.equal((await reopened()).mode, 'frozen');
    st.logDev.faults = [];
    // its flush fails, and so does the retry: the header is in force, not known durable
    st.logDev.faults.push({ op: 'flush', errno: 'ENOSPC' });
    await assert.rejects(st.log.setModes('thawed', 'instant'), (err: unknown) => isSnapbackError(err, 'NO_SPACE') && headerWriteOutcome(err) === 'applied');
    assert.equal(st.log.info.mode, 'thawed', 'in force in memory');
    assert.equal((await reopened()).mode, 'thawed', 'and for a reader of the file');
    st.logDev.faults = [];
    // a flush that fails once is retried with the header written again: success, durable
    st.logDev.faults.push({ op: 'flush', errno: 'EIO', once: true });
    const session = st.log.info.sessionNumber;
    await st.log.endSession(true);
    assert.equal(st.log.info.sessionNumber, session + 1);
    st.domain.lost = true;
    const { log: afterCut } = await RegionLog.open(memoryDevice('log', st.logDev.crashImage()));
    assert.equal(afterCut.info.sessionNumber, session + 1, 'durable: it survives a power cut');
  });

  it('retries a restore stopped by a full disk with backoff, showing its error, until it gets through', async () => {
    const clock = new FakeClock();
    const st = await buildStack(new Prng(12), { regionSize: 4096, size: 64 * 1024, initialDisk: 'garbage' });
    await st.hydrator.stop();
    const h = new Hydrator(st.pd, { batchBytes: 8192, chunkBytes: 4096, maxYieldMs: 0, retryBaseMs: 1000, retryMaxMs: 4000, clock });
    let starts = 0;
    h.on('start', () => starts++);
    const pending = st.log.pendingCount;
    assert.equal(pending, 16);
    st.disk.faults.push({ op: 'write', errno: 'ENOSPC' });
    let idle = once(h, 'idle');
    h.start();
    await idle;
    let p = h.progress();
    assert.equal(p.running, false);
    assert.match(p.error ?? '', /no space left/);
    assert.deepEqual({ code: p.lastError?.code, attempts: p.lastError?.attempts, retryInMs: p.lastError?.retryInMs }, { code: 'NO_SPACE', attempts: 1, retryInMs: 1000 });
    assert.equal(p.pending, pending);
    // backoff: 1 s, 2 s, 4 s, then 4 s (bounded)
    for (const [attempt, delay] of [
      [2, 1000],
      [3, 2000],
      [4, 4000],
      [5, 4000],
    ] as const) {
      const before = starts;
      await clock.advance(delay - 1);
      assert.equal(starts, before, `no retry before ${delay} ms`);
      idle = once(h, 'idle');
      await clock.advance(1);
      await idle;
      assert.equal(starts, before + 1, `retry ${attempt - 1} ran after ${delay} ms`);
      p = h.progress();
      assert.equal(p.lastError?.attempts, attempt);
      assert.equal(p.lastError?.retryInMs, Math.min(4000, 1000 * 2 ** (attempt - 1)));
      assert.equal(p.pending, pending, 'nothing restored while the disk is full');
    }
    // space is freed: the next retry restores everything and the error goes away
    st.disk.faults = [];
    idle = once(h, 'idle');
    await clock.advance(4000);
    await idle;
    p = h.progress();
    assert.equal(p.pending, 0);
    assert.equal(p.error, null);
    assert.equal(p.lastError, null);
    assert.ok((await st.pd.read(0, st.pd.size)).equals(st.modelBytes));
    assert.ok(st.disk.snapshot().equals(st.modelBytes));
    await h.stop();
    assert.equal(clock.pendingTimers, 0, 'no retry left scheduled');
  });
});
