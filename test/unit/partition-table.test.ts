/**
 * The partition table reader against tables made by the real sfdisk (util-linux) on sparse
 * files: what it reads must be what `sfdisk --json` reads (GPT, MBR with logical partitions);
 * a blank disk and a filesystem without a table are "none"; a damaged primary GPT is read from
 * its backup, and damaged tables (both GPT copies, entries beyond the disk, a looping chain of
 * logical partitions) give PARTITION_TABLE_CORRUPT.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, openSync, readSync, rmSync, truncateSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { findPartition, readPartitionTable } from '../../appliance/storage/partition-table.js';

const MIB = 1 << 20;

interface SfdiskTable {
  partitiontable: { label: string; id: string; partitions: { node: string; start: number; size: number; type: string; name?: string }[] };
}

function sparse(path: string, size: number): string {
  closeSync(openSync(path, 'w'));
  truncateSync(path, size);
  return path;
}

function sfdisk(path: string, script: string): void {
  execFileSync('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', path], { input: script });
}

function sfdiskJson(path: string): SfdiskTable['partitiontable'] {
  return (JSON.parse(execFileSync('sfdisk', ['--json', path], { encoding: 'utf8' })) as SfdiskTable).partitiontable;
}

async function readTable(path: string) {
  const dev = new FileDevice(path, { readOnly: true, batchedIo: null });
  await dev.open();
  try {
    return await readPartitionTable(dev);
  } finally {
    await dev.close();
  }
}

/** Flips one byte of a file at `offset`. */
function flipByte(path: string, offset: number): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b[0] = b[0]! ^ 0xff;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

async function rejectsCorrupt(path: string, message: RegExp): Promise<void> {
  await assert.rejects(readTable(path), (err: unknown) => {
    assert.ok(isSnapbackError(err, 'PARTITION_TABLE_CORRUPT'), `expected PARTITION_TABLE_CORRUPT, got ${String(err)}`);
    assert.match(err.message, message);
    return true;
  });
}

const GPT_SCRIPT = [
  'label: gpt',
  'start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="EFI"',
  'size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root fs"',
  'type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name="Données"',
  '',
].join('\n');

describe('partition table reader', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-parts-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a GPT made by sfdisk exactly as sfdisk reads it, with type names and labels', async () => {
    const disk = sparse(join(dir, 'gpt.img'), 64 * MIB);
    sfdisk(disk, GPT_SCRIPT);
    const expected = sfdiskJson(disk);
    const t = await readTable(disk);
    assert.equal(t.scheme, 'gpt');
    assert.equal(t.sectorSize, 512);
    assert.equal(t.diskId, expected.id);
    assert.deepEqual(t.warnings, []);
    assert.deepEqual(
      t.partitions.map((p) => ({ number: p.number, start: p.start, size: p.size, type: p.type, label: p.label })),
      expected.partitions.map((p, i) => ({ number: i + 1, start: p.start * 512, size: p.size * 512, type: p.type, label: p.name ?? '' })),
    );
    assert.deepEqual(t.partitions.map((p) => p.typeName), ['EFI system', 'Linux filesystem', 'Microsoft basic data']);
    assert.equal(t.partitions[2]!.label, 'Données');
  });

  it('reads an MBR with an extended partition and its logical partitions as sfdisk does', async () => {
    const disk = sparse(join(dir, 'mbr.img'), 64 * MIB);
    sfdisk(disk, ['label: dos', 'start=2048,size=8192,type=6,bootable', 'start=10240,size=40960,type=5', 'start=51200,size=8192,type=83', ',,', 'start=12288,size=8192,type=83', 'start=22528,size=4096,type=c', ''].join('\n'));
    const expected = sfdiskJson(disk);
    const t = await readTable(disk);
    assert.equal(t.scheme, 'mbr');
    assert.equal(t.diskId, expected.id);
    const byNumber = new Map(t.partitions.map((p) => [p.number, p]));
    assert.equal(t.partitions.length, expected.partitions.length);
    for (const e of expected.partitions) {
      const number = Number(/(\d+)$/.exec(e.node)![1]);
      const got = byNumber.get(number);
      assert.ok(got, `partition ${number} missing`);
      assert.deepEqual({ start: got.start, size: got.size, type: got.type }, { start: e.start * 512, size: e.size * 512, type: `0x${e.type.padStart(2, '0')}` });
    }
    assert.deepEqual(t.partitions.map((p) => [p.number, p.typeName]), [
      [1, 'FAT16'],
      [2, 'Extended'],
      [3, 'Linux'],
      [4, 'Linux'],
      [5, 'Linux'],
      [6, 'FAT32 (LBA)'],
    ]);
  });

  it('says "none" for a blank disk and for a filesystem written without a table', async () => {
    const blank = sparse(join(dir, 'blank.img'), 8 * MIB);
    assert.deepEqual((await readTable(blank)).partitions, []);
    assert.equal((await readTable(blank)).scheme, 'none');
    const fat = sparse(join(dir, 'fat.img'), 8 * MIB);
    execFileSync('mkfs.vfat', ['-n', 'SUPERFLOPPY', fat], { stdio: 'ignore' });
    assert.equal((await readTable(fat)).scheme, 'none');
  });

  it('reads a GPT whose primary copy fails its CRC32 from the backup, and says so', async () => {
    const disk = sparse(join(dir, 'gpt-primary.img'), 64 * MIB);
    sfdisk(disk, GPT_SCRIPT);
    flipByte(disk, 2 * 512 + 60); // in entry 1's name: the primary entry array's CRC no longer matches
    const t = await readTable(disk);
    assert.equal(t.scheme, 'gpt');
    assert.equal(t.partitions.length, 3);
    assert.equal(t.partitions[0]!.label, 'EFI');
    assert.equal(t.warnings.length, 1);
    assert.match(t.warnings[0]!, /primary GPT is damaged \(entry array CRC32 mismatch\)/);
  });

  it('refuses a GPT whose both copies fail their CRC32 with PARTITION_TABLE_CORRUPT', async () => {
    const disk = sparse(join(dir, 'gpt-both.img'), 64 * MIB);
    sfdisk(disk, GPT_SCRIPT);
    flipByte(disk, 512 + 40); // primary header: first usable LBA
    flipByte(disk, 64 * MIB - 512 + 40); // backup header
    await rejectsCorrupt(disk, /GPT is damaged: primary: header CRC32 mismatch; backup \(sector 131071\): header CRC32 mismatch/);
  });

  it('refuses an MBR whose partition runs beyond the end of the disk', async () => {
    const disk = sparse(join(dir, 'mbr-short.img'), 64 * MIB);
    sfdisk(disk, 'label: dos\nstart=2048,type=83\n');
    truncateSync(disk, 16 * MIB);
    await rejectsCorrupt(disk, /MBR partition 1 \(sectors 2048\+129024\) lies outside the disk \(32768 sectors\)/);
  });

  it('refuses a chain of logical partitions that loops back on itself', async () => {
    const disk = sparse(join(dir, 'mbr-loop.img'), 64 * MIB);
    sfdisk(disk, ['label: dos', 'start=2048,size=40960,type=5', 'start=4096,size=4096,type=83', 'start=10240,size=4096,type=83', ''].join('\n'));
    // Follow the first EBR (at the extended partition's start) to the second, and point the
    // second's link back at the first (0: relative to the extended partition).
    const fd = openSync(disk, 'r+');
    const first = Buffer.alloc(512);
    readSync(fd, first, 0, 512, 2048 * 512);
    const secondEbr = (2048 + first.readUInt32LE(446 + 16 + 8)) * 512;
    assert.notEqual(secondEbr, 2048 * 512);
    const link = Buffer.alloc(16);
    link.writeUInt8(0x05, 4);
    link.writeUInt32LE(0, 8);
    link.writeUInt32LE(4096, 12);
    writeSync(fd, link, 0, 16, secondEbr + 446 + 16);
    closeSync(fd);
    await rejectsCorrupt(disk, /loops back on itself/);
  });

  it('finds a partition by number, and names the ones there are when it does not exist', async () => {
    const t = await readTable(join(dir, 'gpt.img'));
    assert.equal(findPartition(t, 2).label, 'root fs');
    assert.throws(() => findPartition(t, 7), (err: unknown) => isSnapbackError(err, 'NOT_FOUND') && /partition 7 does not exist \(the disk's GPT has partitions 1, 2, 3\)/.test(err.message));
  });
});
