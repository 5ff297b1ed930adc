/**
 * Skipping the holes of sparse model images on the file systems an appliance or a lab's server
 * keeps images on: ext4, xfs and btrfs, each made in an image file and loop-mounted here (as
 * root, like the rest of the suite's kernel tests; tmpfs and the temporary directory's own file
 * system are in test/unit/manifest-hashing.test.ts). On each, the data extents SEEK_DATA finds
 * are the regions written, and the manifest made skipping holes is the one a read of every
 * byte gives, having read only the regions with data.
 */
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Mounts } from '../helpers/mounts.js';
import { Prng } from '../helpers/prng.js';
import { createManifest } from '../../appliance/storage/manifest.js';
import { dataRegionRuns } from '../../appliance/storage/data-extents.js';
import { HashPool } from '../../appliance/storage/hash-pool.js';

const KiB = 1024;
const MiB = 1 << 20;
const GiB = 1 << 30;

const FILESYSTEMS: Array<{ fs: string; mkfs: string[] }> = [
  { fs: 'ext4', mkfs: ['mkfs.ext4', '-q', '-F'] },
  { fs: 'xfs', mkfs: ['mkfs.xfs', '-q', '-f'] },
  { fs: 'btrfs', mkfs: ['mkfs.btrfs', '-q', '-f'] },
];

describe('sparse model images on ext4, xfs and btrfs: holes skipped, the same manifest', function () {
  this.timeout(300_000);
  let dir: string;
  let pool: HashPool;
  const mounts = new Mounts();
  before(() => {
    assert.equal(process.getuid?.(), 0, 'these tests loop-mount file systems: run the suite as root, as CI does');
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-sparse-fs-'));
    pool = new HashPool({ threads: 2 });
  });
  afterEach(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const { fs, mkfs } of FILESYSTEMS) {
    it(`on ${fs}: SEEK_DATA finds the regions written, and the manifest skipping holes equals the one reading every byte`, async () => {
      const mnt = mounts.loop(join(dir, `${fs}.img`), join(dir, 'mnt'), mkfs, 512 * MiB);
      try {
        const regionSize = MiB;
        const size = 1 * GiB + 100 * KiB;
        const extents: Array<[number, number]> = [
          [0, 64 * KiB],
          [7 * MiB - 4 * KiB, 8 * KiB], // across a region boundary
          [700 * MiB + 333, 2 * MiB],
          [size - 4 * KiB, 4 * KiB], // the short last region
        ];
        const image = join(mnt, 'model.img');
        const rng = new Prng(31);
        const fd = openSync(image, 'w');
        try {
          ftruncateSync(fd, size);
          for (const [off, len] of extents) writeSync(fd, rng.bytes(len), 0, len, off);
        } finally {
          closeSync(fd);
        }
        const runs = await dataRegionRuns(image, size, regionSize);
        assert.ok(runs !== null, `${fs} answers SEEK_DATA`);
        // file systems allocate in blocks (btrfs and xfs may round an extent up), so the runs hold
        // at least the regions written, and nothing far from them
        const written = new Set<number>();
        for (const [off, len] of extents) for (let r = Math.floor(off / regionSize); r * regionSize < off + len; r++) written.add(r);
        const found = new Set<number>();
        for (const [a, b] of runs) for (let r = a; r < b; r++) found.add(r);
        for (const r of written) assert.ok(found.has(r), `${fs}: region ${r} with data is found`);
        assert.ok(found.size <= written.size + 4, `${fs}: ${found.size} regions found for ${written.size} written`);

        let read = 0;
        const skipped = await createManifest(image, { regionSize, hashPool: pool, onRead: (n) => (read += n) });
        const whole = await createManifest(image, { regionSize, hashPool: pool, skipHoles: false });
        assert.equal(skipped.id, whole.id, `${fs}: the same manifest`);
        assert.ok(skipped.allDigests.equals(whole.allDigests));
        let foundBytes = 0;
        for (const r of found) foundBytes += Math.min(size, (r + 1) * regionSize) - r * regionSize;
        assert.equal(read, foundBytes, `${fs}: only the regions with data are read`);
      } finally {
        mounts.unmountAll();
      }
    });
  }
});
