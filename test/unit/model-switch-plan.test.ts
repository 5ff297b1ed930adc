/**
 * Planning a switch from the manifests: which write-log regions become pending, with manifest
 * regions smaller than, equal to and larger than the log's; manifests of other region sizes or
 * hashes compared through one image hashed again; the fallback to every region when the
 * manifests cannot be compared; and the refusal of a model of another size.
 */
import assert from 'node:assert/strict';
import { Manifest } from '../../appliance/storage/manifest.js';
import { digestRegionsInto, DIGEST_LENGTHS, type HashName } from '../../appliance/storage/hash-functions.js';
import { planSwitch } from '../../appliance/storage/model-switch.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { Prng } from '../helpers/prng.js';

function manifestOf(bytes: Buffer, regionSize: number, hash: HashName = 'sha256'): Manifest {
  const digests = Buffer.alloc(Math.ceil(bytes.length / regionSize) * DIGEST_LENGTHS[hash]);
  digestRegionsInto(hash, bytes, regionSize, digests);
  return Manifest.fromDigests({ name: 'm', size: bytes.length, regionSize, hash, createdAt: '', image: { size: bytes.length, mtimeMs: 0, ino: 0 } }, digests);
}

const pendingOf = (bits: Uint8Array, n: number): number[] => Array.from({ length: n }, (_, r) => r).filter((r) => (bits[r >> 3]! & (1 << (r & 7))) !== 0);

describe('model switch planning', () => {
  const LOG_RS = 16384;
  const SIZE = 40 * LOG_RS - 4096; // a short last region
  const a = new Prng(1).bytes(SIZE);
  const b = Buffer.from(a);
  b[3 * LOG_RS + 5] = b[3 * LOG_RS + 5]! ^ 1; // log region 3
  b[SIZE - 1] = b[SIZE - 1]! ^ 1; // the short last region, 39
  const shape = { regionSize: LOG_RS, regionCount: 40, diskSize: SIZE };

  it('marks the log regions whose manifest regions differ: manifest regions as large as, smaller than and larger than the log regions', () => {
    assert.deepEqual(pendingOf(planSwitch(manifestOf(a, LOG_RS), manifestOf(b, LOG_RS), shape).differing, 40), [3, 39]);
    assert.deepEqual(pendingOf(planSwitch(manifestOf(a, 4096), manifestOf(b, 4096), shape).differing, 40), [3, 39]);
    const big = planSwitch(manifestOf(a, 4 * LOG_RS), manifestOf(b, 4 * LOG_RS), shape); // a manifest region spans log regions 0-3, …, 36-39
    assert.deepEqual(pendingOf(big.differing, 40), [0, 1, 2, 3, 36, 37, 38, 39]);
    assert.equal(big.regions, 8);
    assert.equal(big.method, 'digests');
  });

  it('two identical models: nothing to restore', () => {
    const p = planSwitch(manifestOf(a, LOG_RS), manifestOf(Buffer.from(a), LOG_RS), shape);
    assert.equal(p.regions, 0);
    assert.deepEqual(pendingOf(p.differing, 40), []);
  });

  it('manifests of different region sizes or hashes cannot be compared: every region, and the plan says why', () => {
    const sizes = planSwitch(manifestOf(a, LOG_RS), manifestOf(b, 2 * LOG_RS), shape);
    assert.equal(sizes.method, 'all');
    assert.equal(sizes.regions, 40);
    assert.match(sizes.reason ?? '', /region sizes differ/);
    const hashes = planSwitch(manifestOf(a, LOG_RS), manifestOf(a, LOG_RS, 'sha1'), shape);
    assert.equal(hashes.method, 'all');
    assert.equal(pendingOf(hashes.differing, 40).length, 40);
    assert.match(hashes.reason ?? '', /hashes differ/);
  });

  it('manifests of different region sizes made comparable by one image hashed again: only the log regions whose bytes differ, at the finer size', () => {
    // from: 4 log regions a manifest region; to: 4 KiB sha1 regions; `from` hashed again as `to` is
    const p = planSwitch(manifestOf(a, 4 * LOG_RS), manifestOf(b, 4096, 'sha1'), shape, { from: manifestOf(a, 4096, 'sha1'), to: manifestOf(b, 4096, 'sha1'), note: 'hashed again' });
    assert.equal(p.method, 'rehashed');
    assert.equal(p.reason, 'hashed again');
    assert.deepEqual(pendingOf(p.differing, 40), [3, 39]);
    assert.equal(p.regions, 2);
    // a pair that is not comparable either (or of another size) is not used: every region
    const wrong = planSwitch(manifestOf(a, LOG_RS), manifestOf(b, 2 * LOG_RS), shape, { from: manifestOf(a, LOG_RS), to: manifestOf(b, 2 * LOG_RS), note: 'x' });
    assert.equal(wrong.method, 'all');
  });

  it('refuses a model of another size than the disk (SIZE_MISMATCH)', () => {
    const larger = Buffer.concat([a, Buffer.alloc(4096)]);
    assert.throws(
      () => planSwitch(manifestOf(a, LOG_RS), manifestOf(larger, LOG_RS), shape),
      (err: unknown) => isSnapbackError(err, 'SIZE_MISMATCH') && /a switch needs a model of the same size/.test(err.message),
    );
  });
});
