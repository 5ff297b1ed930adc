/**
 * On a filesystem that can share blocks (XFS with reflink, on a loop device), importing a
 * model from a file beside the state directory copies nothing: the library's image shares the
 * source's blocks, so a large model costs no space and no copy time, and its bytes are hashed
 * and verified all the same.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, ftruncateSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../../appliance/storage/engine.js';
import { createManifest } from '../../appliance/storage/manifest.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { patternBytes } from '../helpers/prng.js';

const MODEL = 64 << 20;

describe('model import on a filesystem with reflinks', function () {
  this.timeout(120_000);
  let dir: string;
  let mnt: string;
  let mounted = false;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-reflink-'));
    const img = join(dir, 'xfs.img');
    const fd = openSync(img, 'w');
    ftruncateSync(fd, 512 << 20);
    closeSync(fd);
    execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img]);
    mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    // Root is needed; the test setup runs the suite as root (as the gadget and VM tests need).
    execFileSync('mount', ['-o', 'loop', img, mnt]);
    mounted = true;
  });
  after(() => {
    if (mounted) execFileSync('umount', [mnt]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('imports a file as a reflink: no space used, the bytes hashed into its manifest', async () => {
    writeFileSync(join(mnt, 'base.img'), patternBytes(4 << 20, 1));
    const state = join(mnt, 'state');
    await initEngine({ stateDir: state, model: join(mnt, 'base.img'), disk: join(mnt, 'disk.img') });
    const src = join(mnt, 'big.img');
    const bytes = patternBytes(MODEL, 2);
    writeFileSync(src, bytes);
    execFileSync('sync');
    const free = (): number => {
      const s = statfsSync(mnt);
      return s.bavail * s.bsize;
    };
    const before = free();
    const library = new ModelLibrary(new StateDir(state));
    const m = await library.importFile(src, { name: 'big' });
    execFileSync('sync');
    const used = before - free();
    assert.ok(used < 4 << 20, `the import used ${used} bytes for a ${MODEL}-byte model: its blocks are shared`);
    assert.ok(readFileSync(m.imagePath).equals(bytes));
    assert.equal(m.record.id, (await createManifest(src)).id);
  });
});
