/**
 * On a filesystem that can share blocks (XFS with reflink, on a loop device), importing a
 * model from a file beside the state directory copies nothing: the library's image shares the
 * source's blocks, so a large model costs no space and no copy time, and its bytes are hashed
 * and verified all the same.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initEngine } from '../../appliance/storage/engine.js';
import { createManifest } from '../../appliance/storage/manifest.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { freeBytes, Mounts } from '../helpers/mounts.js';
import { patternBytes } from '../helpers/prng.js';

const MODEL = 64 << 20;

describe('model import on a filesystem with reflinks', function () {
  this.timeout(120_000);
  let dir: string;
  let mnt: string;
  const mounts = new Mounts();

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-reflink-'));
    mnt = mounts.loop(join(dir, 'xfs.img'), join(dir, 'mnt'), ['mkfs.xfs', '-q', '-m', 'reflink=1'], 512 << 20);
  });
  after(() => {
    mounts.unmountAll();
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
    const before = freeBytes(mnt);
    const library = new ModelLibrary(new StateDir(state));
    const m = await library.importFile(src, { name: 'big' });
    execFileSync('sync');
    const used = before - freeBytes(mnt);
    assert.ok(used < 4 << 20, `the import used ${used} bytes for a ${MODEL}-byte model: its blocks are shared`);
    assert.ok(readFileSync(m.imagePath).equals(bytes));
    assert.equal(m.record.id, (await createManifest(src)).id);
  });
});
