/**
 * The model library on real files: imports from a file (with or without the manifest beside
 * it) and from a stream, each visible only once complete and verified; references by name, id
 * or id prefix; rename; remove (never the active model, the rollback target only when forced);
 * lazily provisioned models; and bad input of every kind leaving the library, the write log and
 * snapback.json exactly as they were, with nothing left behind.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isSnapbackError } from '../../appliance/errors.js';
import { initEngine, openEngine } from '../../appliance/storage/engine.js';
import { createManifest, Manifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { ModelImage } from '../../appliance/storage/model-image.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { patternBytes } from '../helpers/prng.js';
import { stateSnapshot } from '../helpers/state-snapshot.js';

const SIZE = 3 << 20;

/** A stream of `data` in pieces of awkward sizes (not region multiples). */
function piecewise(data: Buffer, piece = 300_001): Readable {
  return Readable.from((function* () {
    for (let i = 0; i < data.length; i += piece) yield data.subarray(i, Math.min(data.length, i + piece));
  })());
}

describe('model library', function () {
  this.timeout(60_000);
  let dir: string;
  let state: string;
  let library: ModelLibrary;
  let active: Buffer;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-lib-'));
    state = join(dir, 'state');
    active = patternBytes(SIZE, 1);
    writeFileSync(join(dir, 'active.img'), active);
    await initEngine({ stateDir: state, model: join(dir, 'active.img'), disk: join(dir, 'disk.img') });
    library = new ModelLibrary(new StateDir(state));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function image(name: string, seed: number, size = SIZE): { path: string; bytes: Buffer } {
    const bytes = patternBytes(size, seed);
    const path = join(dir, name);
    writeFileSync(path, bytes);
    return { path, bytes };
  }

  it('init registers its model in place (not copied) as the active model, with a manifest it made itself', async () => {
    const [m] = await library.list();
    assert.equal(m!.record.name, 'active.img');
    assert.equal(m!.imagePath, join(dir, 'active.img'), 'the image stays where it was');
    assert.equal(existsSync(join(m!.dir, 'image')), false);
    assert.equal(existsSync(manifestPathFor(join(dir, 'active.img'))), false, 'nothing is written beside the image');
    assert.equal(await library.activeModelId(), m!.record.id);
    assert.equal(m!.record.id, (await createManifest(join(dir, 'active.img'))).id);
  });

  it('imports a file without a manifest: copied into the library and hashed, its manifest describing the copy (opened without hashing again)', async () => {
    const src = image('b.img', 2);
    let last = 0;
    const m = await library.importFile(src.path, { name: 'b', onProgress: (d) => (last = d) });
    assert.equal(last, SIZE, 'progress reaches the whole size');
    assert.deepEqual([m.record.name, m.record.complete, m.record.image, m.record.parent, m.record.source], ['b', true, null, null, { kind: 'file', path: src.path }]);
    assert.equal(m.imagePath, join(library.dir, m.record.id, 'image'));
    assert.ok(readFileSync(m.imagePath).equals(src.bytes));
    assert.equal(m.record.id, (await createManifest(src.path)).id, 'the same id as a manifest of the source');
    const img = new ModelImage(m.imagePath, { manifestPath: m.manifestPath });
    await img.open();
    assert.equal(img.verificationStats().hashedRegions, 0, 'the manifest names the library copy: no full verification at open');
    assert.ok((await img.read(0, SIZE)).equals(src.bytes), 'and every region verifies on reading');
    await img.close();
    assert.deepEqual((await library.list()).map((x) => x.record.name), ['active.img', 'b']);
  });

  it("imports a file with the manifest beside it, keeping that manifest's region size, hash and id", async () => {
    const src = image('c.img', 3);
    const beside = await createManifest(src.path, { regionSize: 64 << 10 });
    await beside.save(manifestPathFor(src.path));
    const m = await library.importFile(src.path, { name: 'c' });
    assert.equal(m.record.id, beside.id);
    assert.equal(m.record.regionSize, 64 << 10);
  });

  it('keeps a copy sparse where the image is all zeroes', async () => {
    const bytes = Buffer.alloc(64 << 20);
    bytes.fill(7, 0, 1 << 20);
    writeFileSync(join(dir, 'sparse.img'), bytes);
    const m = await library.importFile(join(dir, 'sparse.img'), { name: 'sparse' });
    assert.ok(statSync(m.imagePath).blocks * 512 < 8 << 20, `the copy holds ${statSync(m.imagePath).blocks * 512} bytes on disk for 1 MiB of data`);
    assert.ok(readFileSync(m.imagePath).equals(bytes));
  });

  it('refuses a manifest whose size does not match the image, leaving the library, the log and the state untouched', async () => {
    const src = image('d.img', 4);
    await (await createManifest(src.path)).save(manifestPathFor(src.path));
    truncateSync(src.path, SIZE - 4096);
    const before = stateSnapshot(state);
    await assert.rejects(library.importFile(src.path, { name: 'd' }), (err: unknown) => isSnapbackError(err, 'MANIFEST_INVALID') && /is for 3145728 bytes but .* holds 3141632/.test((err as Error).message));
    assert.equal(stateSnapshot(state), before);
  });

  it('refuses an image whose hashes do not match its manifest, naming the region, and leaves nothing behind', async () => {
    const src = image('e.img', 5);
    await (await createManifest(src.path)).save(manifestPathFor(src.path));
    src.bytes[(2 << 20) + 5]! ^= 0xff;
    writeFileSync(src.path, src.bytes);
    const before = stateSnapshot(state);
    await assert.rejects(library.importFile(src.path, { name: 'e' }), (err: unknown) => isSnapbackError(err, 'MANIFEST_INVALID') && /does not match its manifest: region 2 /.test((err as Error).message));
    assert.equal(stateSnapshot(state), before, 'no model, no staging left, log and config as they were');
    assert.deepEqual((await library.list()).map((m) => m.record.name), ['active.img']);
  });

  it('refuses a duplicate name, the same image twice, and a source that does not exist, each untouched', async () => {
    await library.importFile(image('f.img', 6).path, { name: 'f' });
    const before = stateSnapshot(state);
    await assert.rejects(library.importFile(image('g.img', 7).path, { name: 'f' }), (err: unknown) => isSnapbackError(err, 'ALREADY_EXISTS') && /the name "f" is taken/.test((err as Error).message));
    await assert.rejects(library.importFile(join(dir, 'f.img'), { name: 'f again' }), (err: unknown) => isSnapbackError(err, 'ALREADY_EXISTS') && /already in the library as "f"/.test((err as Error).message));
    // with its manifest beside it, that is known before anything is copied
    await (await createManifest(join(dir, 'f.img'))).save(manifestPathFor(join(dir, 'f.img')));
    let copied = 0;
    await assert.rejects(library.importFile(join(dir, 'f.img'), { name: 'f again', onProgress: (d) => (copied = d) }), (err: unknown) => isSnapbackError(err, 'ALREADY_EXISTS'));
    assert.equal(copied, 0, 'refused before copying');
    await assert.rejects(library.importFile(join(dir, 'nope.img'), { name: 'nope' }), (err: unknown) => isSnapbackError(err, 'NOT_FOUND') && /nope\.img does not exist/.test((err as Error).message));
    await assert.rejects(library.importFile(dir, { name: 'a dir' }), (err: unknown) => isSnapbackError(err, 'BAD_ARGUMENT') && /not a file or a block device/.test((err as Error).message));
    await assert.rejects(library.importFile(join(dir, 'g.img'), { name: '  ' }), (err: unknown) => isSnapbackError(err, 'BAD_ARGUMENT') && /must not be empty/.test((err as Error).message));
    assert.equal(stateSnapshot(state), before);
  });

  it('finds a model by name, id or unique id prefix; an unknown or ambiguous reference is a clear error', async () => {
    const m = await library.importFile(image('h.img', 8).path, { name: 'h' });
    assert.equal((await library.resolve('h')).record.id, m.record.id);
    assert.equal((await library.resolve(m.record.id)).record.name, 'h');
    assert.equal((await library.resolve(m.record.id.slice(0, 6).toUpperCase())).record.name, 'h');
    await assert.rejects(library.resolve('zzz'), (err: unknown) => isSnapbackError(err, 'NOT_FOUND') && /no model named "zzz".*models: active\.img, h/.test((err as Error).message));
    await assert.rejects(library.resolve(m.record.id.slice(0, 3)), (err: unknown) => isSnapbackError(err, 'NOT_FOUND'), 'fewer than 4 digits are no prefix');
  });

  it('renames a model, keeping names unique', async () => {
    await library.importFile(image('i.img', 9).path, { name: 'i' });
    const r = await library.rename('i', 'the lab image');
    assert.equal(r.record.name, 'the lab image');
    assert.equal((await library.resolve('the lab image')).record.id, r.record.id);
    await assert.rejects(library.rename('the lab image', 'active.img'), (err: unknown) => isSnapbackError(err, 'ALREADY_EXISTS'));
    await assert.rejects(library.rename('missing', 'x'), (err: unknown) => isSnapbackError(err, 'NOT_FOUND'));
  });

  it('never removes the active model; the previous version only when forced; a model registered in place keeps its file', async () => {
    const [act] = await library.list();
    const before = stateSnapshot(state);
    await assert.rejects(library.remove('active.img'), (err: unknown) => isSnapbackError(err, 'IN_USE') && /is the active model/.test((err as Error).message));
    await assert.rejects(library.remove(act!.record.id, { force: true }), (err: unknown) => isSnapbackError(err, 'IN_USE'), 'not even forced');
    assert.equal(stateSnapshot(state), before);
    const prev = await library.importFile(image('j.img', 10).path, { name: 'j' });
    await library.setPrevious(prev.record.id);
    await assert.rejects(library.remove('j'), (err: unknown) => isSnapbackError(err, 'IN_USE') && /previous version.*--force/.test((err as Error).message));
    const gone = await library.remove('j', { force: true });
    assert.equal(existsSync(gone.dir), false);
    assert.equal(await library.previous(), null, 'the rollback target is gone with it');
    // a model registered in place: its record goes, its file stays
    const k = image('k.img', 11);
    await library.registerInPlace(k.path, await createManifest(k.path), { name: 'k', source: { kind: 'file', path: k.path } });
    await library.remove('k');
    assert.ok(readFileSync(k.path).equals(k.bytes));
    assert.deepEqual((await library.list()).map((m) => m.record.name), ['active.img']);
    assert.deepEqual(readdirSync(join(library.dir, '.staging')), [], 'nothing left in the staging directory');
  });

  it('imports from a stream, hashed on the way; a stream too short or too long fails and leaves nothing', async () => {
    const bytes = patternBytes(SIZE + 12345, 12); // not a whole number of regions
    const m = await library.importStream(piecewise(bytes), { name: 'up', size: bytes.length, source: { kind: 'upload', fileName: 'up.img' }, regionSize: 64 << 10 });
    assert.ok(readFileSync(m.imagePath).equals(bytes));
    const made = await createManifest(m.imagePath, { regionSize: 64 << 10 });
    assert.equal(m.record.id, made.id);
    const before = stateSnapshot(state);
    const other = patternBytes(SIZE, 13);
    await assert.rejects(library.importStream(piecewise(other.subarray(0, SIZE - 1000)), { name: 'short', size: SIZE, source: { kind: 'upload', fileName: null } }), (err: unknown) => isSnapbackError(err, 'BAD_ARGUMENT') && /ended after 3144728 of its 3145728 bytes/.test((err as Error).message));
    await assert.rejects(library.importStream(piecewise(other), { name: 'long', size: SIZE - 1, source: { kind: 'upload', fileName: null } }), (err: unknown) => isSnapbackError(err, 'BAD_ARGUMENT') && /longer than the 3145727 bytes/.test((err as Error).message));
    // with a manifest to match: a wrong byte is caught
    const manifest = await Manifest.load(m.manifestPath);
    const bad = Buffer.from(bytes);
    bad[100]! ^= 1;
    await library.remove('up');
    const before2 = stateSnapshot(state);
    await assert.rejects(library.importStream(piecewise(bad), { name: 'up2', size: bad.length, source: { kind: 'upload', fileName: null }, manifest }), (err: unknown) => isSnapbackError(err, 'MANIFEST_INVALID') && /region 0/.test((err as Error).message));
    assert.equal(stateSnapshot(state), before2);
    assert.notEqual(before, before2);
  });

  it('an aborted import leaves nothing; what an interrupted one left is removed, never listed', async () => {
    const before = stateSnapshot(state);
    const abort = new AbortController();
    const bytes = patternBytes(SIZE, 14);
    const slow = Readable.from((async function* () {
      yield bytes.subarray(0, 1 << 20);
      abort.abort();
      yield bytes.subarray(1 << 20);
    })());
    await assert.rejects(library.importStream(slow, { name: 'aborted', size: SIZE, source: { kind: 'upload', fileName: null }, signal: abort.signal }), (err: unknown) => isSnapbackError(err, 'CLOSED') && /cancelled/.test((err as Error).message));
    assert.equal(stateSnapshot(state), before);
    // a power cut mid-import: a staging directory of a process that is gone
    const left = join(library.dir, '.staging', '999999999-dead');
    mkdirSync(left, { recursive: true });
    writeFileSync(join(left, 'image'), 'half an image');
    assert.deepEqual((await new ModelLibrary(new StateDir(state)).list()).map((m) => m.record.name), ['active.img']);
    await new ModelLibrary(new StateDir(state)).importFile(image('l.img', 15).path, { name: 'l' });
    assert.equal(existsSync(left), false, 'removed at the next import');
  });

  it('lists a lazily provisioned model as incomplete until it is marked complete', async () => {
    const src = image('m.img', 16);
    const manifest = await createManifest(src.path);
    const m = await library.createIncomplete(manifest, { name: 'lazy', source: { kind: 'url', url: 'https://models.example/m.img' } });
    assert.equal(m.record.complete, false);
    assert.equal(statSync(m.imagePath).size, SIZE);
    assert.equal(statSync(m.imagePath).blocks, 0, 'sparse until regions arrive');
    writeFileSync(m.imagePath, src.bytes);
    assert.equal((await library.markComplete(m.record.id)).record.complete, true);
    assert.equal((await library.resolve('lazy')).record.complete, true);
  });

  it('the engine opens the model the write log names', async () => {
    await library.importFile(image('n.img', 17).path, { name: 'n' });
    const e = await openEngine(state);
    try {
      assert.equal(e.modelEntry.record.name, 'active.img');
      assert.ok((await e.model.read(0, SIZE)).equals(active));
    } finally {
      await e.close();
    }
  });
});
