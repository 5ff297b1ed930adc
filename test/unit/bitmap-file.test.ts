/**
 * The checksummed bitmap file format that the present bitmap of a model from a URL and the
 * record of verified model regions share: files already on disk load and are written again
 * byte for byte the same, and a damaged file is refused with STATE_CORRUPT (which its owners
 * read as no file).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { isSnapbackError } from '../../appliance/errors.js';
import { loadBitmapFile } from '../../appliance/storage/bitmap-file.js';
import { loadPresent, savePresent } from '../../appliance/storage/present-bitmap.js';
import { loadVerified, saveVerified, type VerifiedKey } from '../../appliance/storage/verified-record.js';

/** Files as the daemon has written them since these formats exist: header line, bitmap, SHA-256. */
const file = (header: string, bitsHex: string, sumHex: string): Buffer => Buffer.concat([Buffer.from(header + '\n'), Buffer.from(bitsHex, 'hex'), Buffer.from(sumHex, 'hex')]);
const PRESENT_ON_DISK = file('{"format":"snapback-present/1","manifestId":"abc123","regionCount":12,"present":6}', 'a509', '7a70a81ee3fb37a4a457a3ed01672cc25145e4bb1c5d85ece223cc58d74ca153');
const IDENTITY = { dev: '2049', ino: '131', size: '49152', mtimeNs: '1764531000123456789', ctimeNs: '1764531000123456789' };
const VERIFIED_ON_DISK = file(
  `{"format":"snapback-verified/1","manifestId":"abc123","regionCount":12,"identity":${JSON.stringify(IDENTITY)},"verified":6}`,
  'f006',
  'a28e67ae9f2cf3c79a005b8c4c398a7c85e3063f1f3c3b665732d51ce4445c0e',
);
const KEY: VerifiedKey = { manifestId: 'abc123', regionCount: 12, identity: IDENTITY };

const anyHeader = z.object({ format: z.string(), regionCount: z.number().int().nonnegative() }).passthrough();

describe('bitmap files (present bitmap, verified record)', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapback-bitmap-file-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads a present bitmap written by earlier versions, and writes the same bytes again', async () => {
    const path = join(dir, 'old.present');
    await writeFile(path, PRESENT_ON_DISK);
    const bits = await loadPresent(path, 'abc123', 12);
    assert.deepEqual(bits, new Uint8Array([0xa5, 0x09]));
    const again = join(dir, 'again.present');
    await savePresent(again, 'abc123', 12, bits!);
    assert.deepEqual(await readFile(again), PRESENT_ON_DISK);
  });

  it('loads a verified record written by earlier versions, and writes the same bytes again', async () => {
    const path = join(dir, 'old.verified');
    await writeFile(path, VERIFIED_ON_DISK);
    const bits = await loadVerified(path, KEY);
    assert.deepEqual(bits, new Uint8Array([0xf0, 0x06]));
    const again = join(dir, 'records', 'again.verified');
    await saveVerified(again, KEY, bits!);
    assert.deepEqual(await readFile(again), VERIFIED_ON_DISK);
  });

  it('refuses a damaged file with STATE_CORRUPT (flipped bit, cut short, bitmap of the wrong length), and its owners read it as none', async () => {
    const flipped = Buffer.from(PRESENT_ON_DISK);
    flipped[flipped.indexOf(10) + 1]! ^= 0x10;
    const cut = PRESENT_ON_DISK.subarray(0, 20);
    // a correct checksum over a bitmap one byte longer than 12 regions take
    const longBody = Buffer.concat([PRESENT_ON_DISK.subarray(0, PRESENT_ON_DISK.indexOf(10) + 1), Buffer.from('a50900', 'hex')]);
    const wrongLength = Buffer.concat([longBody, createHash('sha256').update(longBody).digest()]);
    for (const [name, bytes] of [['flipped', flipped], ['cut', cut], ['wrong-length', wrongLength]] as const) {
      const path = join(dir, `${name}.present`);
      await writeFile(path, bytes);
      await assert.rejects(loadBitmapFile(path, anyHeader), (err) => isSnapbackError(err, 'STATE_CORRUPT') && err.message.includes(path), name);
      assert.equal(await loadPresent(path, 'abc123', 12), null, name);
    }
    const damagedRecord = Buffer.from(VERIFIED_ON_DISK);
    damagedRecord[damagedRecord.length - 1]! ^= 1;
    const path = join(dir, 'damaged.verified');
    await writeFile(path, damagedRecord);
    await assert.rejects(loadBitmapFile(path, anyHeader), (err) => isSnapbackError(err, 'STATE_CORRUPT'));
    assert.equal(await loadVerified(path, KEY), null);
  });

  it('reads a missing file as none, and another model\'s or another file state\'s as none', async () => {
    assert.equal(await loadBitmapFile(join(dir, 'missing.present'), anyHeader), null);
    const path = join(dir, 'other.present');
    await writeFile(path, PRESENT_ON_DISK);
    assert.equal(await loadPresent(path, 'def456', 12), null);
    assert.equal(await loadPresent(path, 'abc123', 13), null);
    const record = join(dir, 'other.verified');
    await writeFile(record, VERIFIED_ON_DISK);
    assert.equal(await loadVerified(record, { ...KEY, identity: { ...IDENTITY, ctimeNs: '1764531000123456790' } }), null);
  });
});
