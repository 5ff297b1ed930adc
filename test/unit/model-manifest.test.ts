/**
 * Manifests: the streaming reader (one binary buffer of digests, the base64 never held whole)
 * against the plain JSON.parse reader and against manifests written the way they always were;
 * manifest creation on the hash workers against digests made inline; and damaged manifests
 * refused with a clear error.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../helpers/prng.js';
import { Manifest, MANIFEST_FORMAT, createManifest, loadManifestPlain, loadManifestStreaming, manifestPathFor, type HashName } from '../../appliance/storage/manifest.js';
import { digestOf, DIGEST_LENGTHS } from '../../appliance/storage/hash-functions.js';
import { HashPool } from '../../appliance/storage/hash-pool.js';
import { isSnapbackError } from '../../appliance/errors.js';

/** A manifest file exactly as the earlier code wrote it: JSON.stringify of the whole object, id over the base64 string. */
function writeOldStyleManifest(path: string, o: { name: string; size: number; regionSize: number; hash: HashName; digests: Buffer }): { id: string; text: string } {
  const hashes = o.digests.toString('base64');
  const id = createHash('sha256').update(JSON.stringify({ format: MANIFEST_FORMAT, size: o.size, regionSize: o.regionSize, hash: o.hash, hashes })).digest('hex');
  const json = { format: MANIFEST_FORMAT, id, name: o.name, size: o.size, regionSize: o.regionSize, hash: o.hash, hashes, createdAt: '2026-01-02T03:04:05.678Z', image: { size: o.size, mtimeMs: 1767322845678.123, ino: 4242 } };
  const text = JSON.stringify(json, null, 1) + '\n';
  writeFileSync(path, text);
  return { id, text };
}

function randomDigests(rng: Prng, count: number, hash: HashName): Buffer {
  return rng.bytes(count * DIGEST_LENGTHS[hash]);
}

describe('model manifests', function () {
  this.timeout(120_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-manifest-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads manifests written the old way with the same id and digests as the plain JSON.parse reader, and writes them back byte for byte', async () => {
    const rng = new Prng(11);
    const cases: { size: number; regionSize: number; hash: HashName }[] = [
      { size: 0, regionSize: 4096, hash: 'sha256' },
      { size: 1, regionSize: 4096, hash: 'sha256' },
      { size: 5 * 4096 + 17, regionSize: 4096, hash: 'sha1' },
      { size: 3 << 20, regionSize: 1 << 20, hash: 'blake2b512' },
      // 160 Ki regions: 5 MiB of digests, 6.7 MB of base64, read over several chunks
      { size: 160 * 1024 * 4096 - 100, regionSize: 4096, hash: 'sha256' },
    ];
    for (const c of cases) {
      const path = join(dir, `m-${c.size}-${c.hash}.json`);
      const digests = randomDigests(rng, Math.ceil(c.size / c.regionSize), c.hash);
      const old = writeOldStyleManifest(path, { name: 'lab "image" ✓', ...c, digests });
      const fast = await Manifest.load(path);
      assert.ok(await loadManifestStreaming(path), `${c.size}: our layout is read by the streaming reader`);
      const plain = await loadManifestPlain(path);
      assert.equal(fast.id, old.id, `${c.size}: the id is the one the old code computed`);
      assert.equal(plain.id, old.id);
      assert.ok(fast.allDigests.equals(digests), `${c.size}: the same digests`);
      assert.ok(plain.allDigests.equals(digests));
      assert.deepEqual(fast.json, plain.json);
      assert.equal('hashes' in fast.json, false, 'no base64 text kept in memory');
      assert.equal(fast.allDigests.length, fast.regionCount * fast.digestLength, 'one binary buffer, a digest per region');
      const copy = join(dir, 'copy.json');
      await fast.save(copy);
      assert.equal(readFileSync(copy, 'utf8'), old.text, `${c.size}: saved byte for byte as before`);
    }
  });

  it('reads the digests from the manifest file region by region when loaded with digests on demand, the same as held in memory', async () => {
    const rng = new Prng(15);
    for (const c of [
      { size: 1, regionSize: 4096, hash: 'sha256' as const },
      { size: 5 * 4096 + 17, regionSize: 4096, hash: 'sha1' as const },
      { size: 3 << 20, regionSize: 1 << 20, hash: 'blake2b512' as const },
      { size: 160 * 1024 * 4096 - 100, regionSize: 4096, hash: 'sha256' as const },
    ]) {
      const path = join(dir, `od-${c.size}-${c.hash}.json`);
      const count = Math.ceil(c.size / c.regionSize);
      const digests = randomDigests(rng, count, c.hash);
      const old = writeOldStyleManifest(path, { name: 'on demand', ...c, digests });
      const m = await Manifest.load(path, { digests: 'file' });
      try {
        assert.equal(m.id, old.id);
        const n = m.digestLength;
        const sample = count <= 64 ? Array.from({ length: count }, (_, r) => r) : [0, 1, 2, 3, 4, 5, count - 2, count - 1, ...Array.from({ length: 200 }, () => rng.int(count))];
        for (const r of sample) {
          assert.ok((await m.readDigest(r)).equals(digests.subarray(r * n, r * n + n)), `${c.size}: region ${r}`);
          assert.ok(m.digest(r).equals(digests.subarray(r * n, r * n + n)), `${c.size}: region ${r}, read synchronously`);
        }
        assert.ok(m.allDigests.equals(digests), `${c.size}: all digests`);
        // the path replaced by another manifest (as a save does, by rename): still the loaded file's digests
        const other = join(dir, 'other.json');
        writeOldStyleManifest(other, { name: 'other', ...c, digests: randomDigests(rng, count, c.hash) });
        renameSync(other, path);
        assert.ok((await m.readDigest(count - 1)).equals(digests.subarray((count - 1) * n)), `${c.size}: the loaded file, not the path`);
        const copy = join(dir, 'od-copy.json');
        await m.save(copy);
        assert.equal(readFileSync(copy, 'utf8'), old.text, `${c.size}: saved byte for byte`);
      } finally {
        await m.close();
      }
      await assert.rejects(m.readDigest(0), (err: unknown) => isSnapbackError(err, 'CLOSED'));
    }
  });

  it('reads a manifest laid out otherwise (another key order, whitespace) through the plain reader, with the same id', async () => {
    const rng = new Prng(12);
    const digests = randomDigests(rng, 8, 'sha256');
    const ref = join(dir, 'ref.json');
    const old = writeOldStyleManifest(ref, { name: 'x', size: 8 * 65536, regionSize: 65536, hash: 'sha256', digests });
    const o = JSON.parse(old.text) as Record<string, unknown>;
    const reordered = { hashes: o.hashes, image: o.image, createdAt: o.createdAt, hash: o.hash, regionSize: o.regionSize, size: o.size, name: o.name, id: o.id, format: o.format };
    const path = join(dir, 'reordered.json');
    writeFileSync(path, JSON.stringify(reordered));
    assert.equal(await loadManifestStreaming(path), null, 'not our layout: left to the plain reader');
    const m = await Manifest.load(path);
    assert.equal(m.id, old.id);
    assert.ok(m.allDigests.equals(digests));
    // escapes inside the digests' string (valid JSON): the plain reader unescapes them
    const escaped = join(dir, 'escaped.json');
    writeFileSync(escaped, old.text.replace(/"hashes": "(.)/, (_, c: string) => `"hashes": "\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
    assert.equal(await loadManifestStreaming(escaped), null, 'an escape among the digests: left to the plain reader');
    assert.equal((await Manifest.load(escaped)).id, old.id);
  });

  it('refuses a truncated or corrupt manifest with a clear error', async () => {
    const rng = new Prng(13);
    const digests = randomDigests(rng, 40_000, 'sha256');
    const path = join(dir, 'm.json');
    const old = writeOldStyleManifest(path, { name: 'm', size: 40_000 * 4096, regionSize: 4096, hash: 'sha256', digests });
    const refused = async (text: string | Buffer, pattern: RegExp) => {
      writeFileSync(path, text);
      await assert.rejects(Manifest.load(path), (err: unknown) => {
        assert.ok(isSnapbackError(err, 'MANIFEST_INVALID'), String(err));
        assert.match((err as Error).message, pattern);
        assert.ok((err as Error).message.includes(path), 'names the file');
        return true;
      });
    };
    const at = old.text.indexOf('"hashes": "') + 11;
    // cut inside the digests, inside the fields after them, before them
    await refused(old.text.slice(0, at + 1_000_000), /ends inside the region digests/);
    await refused(old.text.slice(0, old.text.length - 30), /not valid/);
    await refused(old.text.slice(0, 40), /not valid/);
    await refused('', /not valid/);
    // one digest character changed: the content no longer hashes to the id
    const flipped = old.text.slice(0, at + 5000) + (old.text[at + 5000] === 'A' ? 'B' : 'A') + old.text.slice(at + 5001);
    await refused(flipped, /content hashes to/);
    // a field changed
    await refused(old.text.replace(`"size": ${40_000 * 4096}`, `"size": ${40_000 * 4096 - 4096}`), /holds 1280000 bytes of digests, expected 1279968|content hashes to/);
    // digests missing with a consistent id: wrong count
    const shortPath = join(dir, 'short.json');
    writeOldStyleManifest(shortPath, { name: 'm', size: 40_000 * 4096, regionSize: 4096, hash: 'sha256', digests: digests.subarray(0, 32 * 39_999) });
    await assert.rejects(Manifest.load(shortPath), (err: unknown) => isSnapbackError(err, 'MANIFEST_INVALID') && /holds 1279968 bytes of digests, expected 1280000/.test((err as Error).message));
    // a stray character among the digests, and a file truncated on disk
    await refused(old.text.slice(0, at + 10) + '!' + old.text.slice(at + 11), /content hashes to|not valid|bytes of digests/);
    writeFileSync(path, old.text);
    truncateSync(path, statSync(path).size - 2);
    await assert.rejects(Manifest.load(path), (err: unknown) => isSnapbackError(err, 'MANIFEST_INVALID'));
    await assert.rejects(Manifest.load(join(dir, 'missing.json')), (err: unknown) => isSnapbackError(err, 'MANIFEST_INVALID') && /cannot read manifest/.test((err as Error).message));
  });

  it('makes manifests on the hash workers with the digests made inline, and reads them back', async () => {
    const pool = new HashPool({ threads: 2 });
    try {
      const rng = new Prng(14);
      for (const [size, regionSize, hash] of [
        [9 * 1024 * 1024 + 12345, 1 << 20, 'sha256'],
        [300 * 4096 + 1, 4096, 'sha1'],
        [5 << 20, 16 << 20, 'blake2b512'],
      ] as const) {
        const bytes = rng.bytes(size);
        const image = join(dir, `img-${size}`);
        writeFileSync(image, bytes);
        const progress: number[] = [];
        const m = await createManifest(image, { regionSize, hash, hashPool: pool, onProgress: (d) => progress.push(d) });
        for (let r = 0; r < m.regionCount; r++) {
          const want = digestOf(hash, bytes.subarray(r * regionSize, Math.min(size, (r + 1) * regionSize)));
          assert.ok(m.digest(r).equals(want), `region ${r} of ${size}`);
        }
        assert.equal(progress[progress.length - 1], size, 'progress reaches the whole image');
        await m.save(manifestPathFor(image));
        const back = await Manifest.load(manifestPathFor(image));
        assert.equal(back.id, m.id);
        assert.equal(back.id, (await loadManifestPlain(manifestPathFor(image))).id);
      }
      assert.ok(pool.stats().jobs > 0, 'the hashing went through the pool');
    } finally {
      await pool.close();
    }
  });
});
