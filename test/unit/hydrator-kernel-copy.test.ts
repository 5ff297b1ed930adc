/**
 * The hydrator's copies in the kernel (copy_file_range through the native addon): a restore
 * of verified model regions copies them file to file; regions not yet verified are read,
 * verified and written through buffers; the kernel refusing (other file systems) falls back to
 * buffers for good; a failed copy fails the restore with the storage error and leaves the
 * regions pending; a model file shorter than the model gives zeroes past its end. Real files,
 * the real engine and the real addon; only the addon's answer is replaced where a test needs
 * the kernel to refuse or fail.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine, openEngine, verifiedDirOf, type Engine } from '../../appliance/storage/engine.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { ProtectedDisk } from '../../appliance/storage/protected-disk.js';
import { RegionLog, logFileSize } from '../../appliance/storage/region-log.js';
import { Hydrator } from '../../appliance/storage/hydrator.js';
import { nativeIo, type NativeIo } from '../../appliance/native/native-io.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { memoryDevice } from '../helpers/fault-device.js';
import { Prng } from '../helpers/prng.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const RS = 16 * KiB;
const SIZE = 4 * MiB;

/** The addon with its copyFileRange answered with `errno` for the first `times` calls, then the real one. */
function failingCopies(io: NativeIo, errno: number, times = Infinity): NativeIo & { calls: number } {
  const fake = Object.create(io) as NativeIo & { calls: number };
  fake.calls = 0;
  const copyFileRange: NativeIo['copyFileRange'] = (inFd, inPos, outFd, outPos, length, onDone) => {
    fake.calls++;
    if (fake.calls <= times) setImmediate(() => onDone(errno, 0));
    else io.copyFileRange(inFd, inPos, outFd, outPos, length, onDone);
  };
  // The addon's own properties are read-only: this one is the fake's own.
  Object.defineProperty(fake, 'copyFileRange', { value: copyFileRange });
  return fake;
}

describe('hydrator: copies in the kernel', function () {
  this.timeout(60_000);
  let dir: string;
  let io: NativeIo;
  let modelBytes: Buffer;
  let state: string;
  let diskPath: string;
  const open: Engine[] = [];

  before(function () {
    const loaded = nativeIo();
    assert.ok(loaded !== null, 'the addon is built by npm ci (npm run build:native) and loads');
    io = loaded;
  });
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-kcopy-'));
    modelBytes = new Prng(21).bytes(SIZE);
    const model = join(dir, 'model.img');
    writeFileSync(model, modelBytes);
    await (await createManifest(model, { regionSize: 64 * KiB })).save(manifestPathFor(model));
    diskPath = join(dir, 'disk.img');
    copyFileSync(model, diskPath);
    state = join(dir, 'state');
    // What init verifies is kept only for a model file unchanged for 100 ms before it was opened
    // (its ctime: model-image.ts), as a model in use has been.
    await new Promise((r) => setTimeout(r, 150));
    await initEngine({ stateDir: state, model, disk: diskPath, diskMatchesModel: true, regionSize: RS });
  });
  afterEach(async () => {
    for (const e of open.splice(0)) await e.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function engine(options: Parameters<typeof openEngine>[1] = {}): Promise<Engine> {
    const e = await openEngine(state, options);
    open.push(e);
    return e;
  }

  /** Writes other bytes over scattered runs of regions, ends the session: they are pending. */
  async function dirty(e: Engine): Promise<number> {
    const rng = new Prng(5);
    for (const [region, count] of [[0, 3], [17, 1], [40, 30], [255, 1]] as const) await e.pd.write(region * RS, rng.bytes(count * RS));
    await e.pd.flush();
    await e.pd.endSession({ keepWrites: false });
    return e.log.pendingCount;
  }

  function assertDiskIsModel(): void {
    assert.ok(readFileSync(diskPath).equals(modelBytes), 'the working disk equals the model again');
  }

  it('copies verified regions file to file, with nothing hashed or copied through buffers', async () => {
    const e = await engine();
    const pending = await dirty(e);
    assert.equal(pending, 35);
    await e.hydrator.runToCompletion();
    assert.equal(e.log.pendingCount, 0);
    assertDiskIsModel();
    assert.deepEqual(e.hydrator.copyStats, { kernelBytes: pending * RS, bufferBytes: 0 });
    assert.equal(e.model.verificationStats().hashedBytes, 0, 'verified at init: trusted from the record');
  });

  it('reads regions not yet verified through buffers, verifying them; once verified they are copied in the kernel', async () => {
    rmSync(verifiedDirOf(new StateDir(state)), { recursive: true, force: true });
    const e = await engine();
    const pending = await dirty(e);
    await e.hydrator.runToCompletion();
    assertDiskIsModel();
    assert.deepEqual(e.hydrator.copyStats, { kernelBytes: 0, bufferBytes: pending * RS });
    assert.ok(e.model.verificationStats().hashedBytes > 0, 'the regions were hashed as they were read');
    await dirty(e);
    await e.hydrator.runToCompletion();
    assertDiskIsModel();
    assert.deepEqual(e.hydrator.copyStats, { kernelBytes: pending * RS, bufferBytes: pending * RS }, 'the second restore: in the kernel');
  });

  it('copies through buffers for good once the kernel refuses (EXDEV: other file systems)', async () => {
    const fake = failingCopies(io, constants.errno.EXDEV);
    const e = await engine({ hydrator: { native: fake } });
    const pending = await dirty(e);
    await e.hydrator.runToCompletion();
    assertDiskIsModel();
    assert.deepEqual(e.hydrator.copyStats, { kernelBytes: 0, bufferBytes: pending * RS });
    assert.equal(fake.calls, 1, 'asked once, not per run');
  });

  it('fails the restore with the storage error when a copy fails (EIO), leaving the regions pending; the next run restores them', async () => {
    const fake = failingCopies(io, constants.errno.EIO, 1);
    const e = await engine({ hydrator: { native: fake } });
    const pending = await dirty(e);
    await assert.rejects(e.hydrator.runToCompletion(), (err: unknown) => isSnapbackError(err, 'IO_ERROR') && /copying .* from the model to the working disk/.test((err as Error).message));
    assert.equal(e.log.pendingCount, pending, 'nothing is marked restored');
    await e.hydrator.runToCompletion();
    assert.equal(e.log.pendingCount, 0);
    assertDiskIsModel();
    assert.equal(e.hydrator.copyStats.kernelBytes, pending * RS);
  });

  it('copies what a model file shorter than the model holds; the rest is restored as zeroes', async () => {
    const rs = 64 * KiB;
    const size = 16 * rs;
    const held = 5 * rs + 1000; // the model file ends inside region 5
    const rng = new Prng(9);
    const modelPath = join(dir, 'short-model.img');
    writeFileSync(modelPath, modelBytes.subarray(0, held));
    const shortDisk = join(dir, 'short-disk.img');
    writeFileSync(shortDisk, rng.bytes(size));
    const model = new FileDevice(modelPath, { size, readOnly: true });
    const disk = new FileDevice(shortDisk);
    await model.open();
    await disk.open();
    try {
      const log = await RegionLog.create(
        memoryDevice('log', Buffer.alloc(logFileSize(16)), rng),
        { modelId: 'm'.repeat(64), regionSize: rs, diskSize: size, sessionNumber: 1, sessionStartedAt: 0, mode: 'frozen', restoreMode: 'instant' },
        () => true,
      );
      const h = new Hydrator(new ProtectedDisk({ disk, model, log }), { native: io, maxYieldMs: 0 });
      await h.runToCompletion();
      assert.equal(log.pendingCount, 0);
      const want = Buffer.alloc(size);
      modelBytes.copy(want, 0, 0, held);
      assert.ok(readFileSync(shortDisk).equals(want));
      assert.deepEqual(h.copyStats, { kernelBytes: held, bufferBytes: size - held });
    } finally {
      await model.close();
      await disk.close();
    }
  });
});
