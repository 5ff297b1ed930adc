/**
 * A model, local or arriving from a URL, is read-only as a BlockDevice: every mutating call is
 * refused with READ_ONLY naming the model, its capabilities say it cannot be written, and its
 * bytes stay the model's.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BlockDevice } from '../../appliance/storage/block-device.js';
import { HttpRangeSource } from '../../appliance/storage/http-range-source.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { ModelImage } from '../../appliance/storage/model-image.js';
import { RemoteModel } from '../../appliance/storage/remote-model.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { Prng } from '../helpers/prng.js';

const KiB = 1024;

async function assertRefusesWrites(model: BlockDevice, imagePath: string): Promise<void> {
  const named = (err: unknown): boolean => isSnapbackError(err, 'READ_ONLY') && err.message.includes(imagePath);
  await assert.rejects(model.write(0, Buffer.alloc(4 * KiB, 0xaa)), named, 'write');
  await assert.rejects(model.write(0, Buffer.alloc(4 * KiB, 0xaa), { fua: true }), named, 'FUA write');
  await assert.rejects(model.trim(0, 4 * KiB), named, 'trim');
  await assert.rejects(model.writeZeroes(0, 4 * KiB, { noHole: true }), named, 'write-zeroes');
  await model.flush(); // nothing to flush, and no error
  const c = model.capabilities;
  assert.deepEqual([c.canWrite, c.canFlush, c.canFua, c.canTrim, c.canZero], [false, false, false, false, false]);
}

describe('read-only models', function () {
  let dir: string;
  let bytes: Buffer;
  let imagePath: string;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-readonly-model-'));
    bytes = new Prng(3).bytes(64 * KiB);
    imagePath = join(dir, 'model.img');
    writeFileSync(imagePath, bytes);
    await (await createManifest(imagePath, { regionSize: 16 * KiB })).save(manifestPathFor(imagePath));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a model image refuses write, trim and write-zeroes with READ_ONLY naming it, says it cannot be written, and keeps its bytes', async () => {
    const model = new ModelImage(imagePath);
    await model.open();
    try {
      await assertRefusesWrites(model, imagePath);
      assert.ok((await model.read(0, bytes.length)).equals(bytes));
    } finally {
      await model.close();
    }
    assert.ok(readFileSync(imagePath).equals(bytes));
  });

  it('a model from a URL refuses write, trim and write-zeroes with READ_ONLY naming its local copy, and says it cannot be written', async () => {
    const manifest = await createManifest(imagePath, { regionSize: 16 * KiB });
    // never contacted: refusing a write needs no download
    const source = new HttpRangeSource('http://127.0.0.1:9/model.img');
    const local = join(dir, 'local.img');
    const model = new RemoteModel({ imagePath: local, presentPath: join(dir, 'present'), manifest, source });
    try {
      await assertRefusesWrites(model, local);
    } finally {
      await model.close();
      source.close();
      await manifest.close();
    }
  });
});
