/**
 * A model import on a filesystem without room for it, with real ENOSPC from the kernel: the
 * state directory lives on a small tmpfs of its own. An import larger than the free space is
 * refused before it writes anything; one during which the disk fills fails with NO_SPACE and
 * leaves the library, the write log and snapback.json as they were; once there is room, the
 * same import succeeds. A URL without a manifest beside it is downloaded whole and needs room
 * for the image once (hashed where it lies, then moved into the library), not twice.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isSnapbackError } from '../../appliance/errors.js';
import { initEngine } from '../../appliance/storage/engine.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { importFromUrl } from '../../appliance/storage/url-import.js';
import { snapback } from '../helpers/cli.js';
import { fillUp, Mounts } from '../helpers/mounts.js';
import { Nginx } from '../helpers/nginx.js';
import { patternBytes } from '../helpers/prng.js';
import { stateSnapshot } from '../helpers/state-snapshot.js';

describe('model import on a full disk', function () {
  this.timeout(120_000);
  let dir: string;
  let fs: string;
  let state: string;
  const mounts = new Mounts();

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-import-full-'));
    fs = mounts.tmpfs(join(dir, 'statefs'), '48m');
    state = join(fs, 'state');
    writeFileSync(join(dir, 'base.img'), patternBytes(4 << 20, 1));
    // the active model lies outside the small filesystem (registered in place); the disk too
    await initEngine({ stateDir: state, model: join(dir, 'base.img'), disk: join(dir, 'disk.img') });
  });
  afterEach(() => {
    mounts.unmountAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a URL without a manifest is downloaded whole into the library needing its size once (not a copy), and one larger than the free space is refused saying what it needs', async () => {
    const www = join(dir, 'www');
    mkdirSync(www);
    const image = patternBytes(20 << 20, 4); // room for it once (with the reserve), not twice
    writeFileSync(join(www, 'fits.img'), image);
    writeFileSync(join(www, 'big.img'), patternBytes(36 << 20, 5));
    const nginx = await Nginx.start(join(dir, 'nginx'), { root: www });
    try {
      const library = new ModelLibrary(new StateDir(state));
      const before = stateSnapshot(state);
      await assert.rejects(importFromUrl(library, { url: nginx.url('files', 'big.img'), name: 'big', retry: { attempts: 1, baseMs: 10, maxMs: 10 } }), (err: unknown) => {
        assert.ok(isSnapbackError(err, 'NO_SPACE'), String(err));
        assert.match((err as Error).message, /not enough free space for the model in .*: it needs \d+ bytes, \d+ are free/);
        return true;
      });
      assert.equal(stateSnapshot(state), before, 'nothing left behind by the refused import');
      const { model } = await importFromUrl(library, { url: nginx.url('files', 'fits.img'), name: 'fits', retry: { attempts: 1, baseMs: 10, maxMs: 10 } });
      assert.equal(model.record.complete, true);
      assert.equal(model.record.size, image.length);
      assert.ok(readFileSync(model.imagePath).equals(image), 'the model holds the served bytes');
      assert.deepEqual(readdirSync(join(state, 'models', '.downloads')), [], 'the download left nothing behind');
    } finally {
      await nginx.stop();
    }
  });

  it('refuses an import larger than the free space before writing anything', () => {
    const big = join(dir, 'big.img');
    writeFileSync(big, patternBytes(40 << 20, 2));
    const before = stateSnapshot(state);
    const r = snapback(['model', 'import', big, '--name', 'big', '--state-dir', state]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /not enough free space for the model in .*: it needs \d+ bytes, \d+ are free/);
    assert.equal(stateSnapshot(state), before);
  });

  it('fails with NO_SPACE when the disk fills during the import, leaves nothing, and succeeds once there is room', async () => {
    const bytes = patternBytes(16 << 20, 3);
    let filler: string | null = null;
    const stream = (fillAfter: number | null): Readable =>
      Readable.from((async function* () {
        for (let at = 0; at < bytes.length; at += 1 << 20) {
          if (fillAfter !== null && at === fillAfter) filler = fillUp(fs); // something else takes the space
          yield bytes.subarray(at, at + (1 << 20));
        }
      })());
    const library = new ModelLibrary(new StateDir(state));
    const before = stateSnapshot(state);
    await assert.rejects(library.importStream(stream(4 << 20), { name: 'grows', size: bytes.length, source: { kind: 'upload', fileName: 'grows.img' } }), (err: unknown) => {
      assert.ok(isSnapbackError(err, 'NO_SPACE'), String(err));
      assert.match((err as Error).message, /no space left on the device/);
      return true;
    });
    assert.ok(filler && existsSync(filler), 'the disk did fill during the import');
    unlinkSync(filler);
    assert.equal(stateSnapshot(state), before, 'no model, nothing in the staging directory, log and config as they were');
    assert.deepEqual(readdirSync(join(state, 'models', '.staging')), []);
    const m = await library.importStream(stream(null), { name: 'grows', size: bytes.length, source: { kind: 'upload', fileName: 'grows.img' } });
    assert.deepEqual((await library.list()).map((x) => [x.record.name, x.record.complete]), [['base.img', true], ['grows', true]]);
    assert.equal(m.record.size, bytes.length);
  });
});
