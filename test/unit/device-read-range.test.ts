/**
 * read() of the file device and of the protected disk: a range inside the device returns its
 * bytes; a range outside it (past the end, a negative offset or length) rejects with
 * OUT_OF_RANGE before anything is allocated or read.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../../appliance/storage/block-device.js';
import { initEngine, openEngine } from '../../appliance/storage/engine.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { Prng } from '../helpers/prng.js';

const KiB = 1024;
const SIZE = 256 * KiB;

async function assertReads(dev: BlockDevice, bytes: Buffer): Promise<void> {
  assert.ok((await dev.read(0, SIZE)).equals(bytes));
  assert.ok((await dev.read(SIZE - 100, 100)).equals(bytes.subarray(SIZE - 100)));
  assert.equal((await dev.read(SIZE, 0)).length, 0);
  const outside = (err: unknown): boolean => isSnapbackError(err, 'OUT_OF_RANGE') && /^read at /.test(err.message);
  await assert.rejects(dev.read(SIZE - 100, 101), outside, 'past the end');
  await assert.rejects(dev.read(-1, 10), outside, 'negative offset');
  await assert.rejects(dev.read(0, -1), outside, 'negative length');
  await assert.rejects(dev.read(0, SIZE + 1), outside, 'longer than the device');
}

describe('device reads: the range is checked first', function () {
  let dir: string;
  let bytes: Buffer;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-read-range-'));
    bytes = new Prng(5).bytes(SIZE);
    writeFileSync(join(dir, 'model.img'), bytes);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('the file device returns the bytes of a range inside it and refuses one outside it with OUT_OF_RANGE', async () => {
    const dev = new FileDevice(join(dir, 'model.img'));
    await dev.open();
    try {
      await assertReads(dev, bytes);
    } finally {
      await dev.close();
    }
  });

  it('the protected disk returns the bytes of a range inside it and refuses one outside it with OUT_OF_RANGE', async () => {
    const state = join(dir, 'state');
    await initEngine({ stateDir: state, model: join(dir, 'model.img'), disk: join(dir, 'disk.img'), regionSize: 16 * KiB });
    const e = await openEngine(state);
    try {
      await assertReads(e.pd, bytes);
    } finally {
      await e.close();
    }
  });
});
