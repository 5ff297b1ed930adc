/**
 * The region log on logs of many bitmap sectors (the crash tests' small disks fit in one):
 * commits that span gaps of clean sectors, O(1) session ends, reopening from what is on disk,
 * checksummed bitmap sectors, and logs of format 1 (release 0.1.0) read and migrated.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Prng } from '../helpers/prng.js';
import { FaultDevice, PowerDomain, memoryDevice, isPowerLost } from '../helpers/fault-device.js';
import { RegionLog, logFileSize, REGIONS_PER_SECTOR, BITMAP_OFFSET, SECTOR, type LogHeader } from '../../appliance/storage/region-log.js';

// dist/test/unit -> test/fixtures (fixtures are not copied by the build)
const fixtures = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures');

describe('region log across many bitmap sectors', () => {
  const regionCount = REGIONS_PER_SECTOR * 40 + 77;
  const init = { modelId: 'cd'.repeat(32), regionSize: 4096, diskSize: regionCount * 4096, sessionNumber: 1, sessionStartedAt: 0, mode: 'frozen' as const, restoreMode: 'instant' as const };

  it('persists marks spread over sectors with gaps, and only those', async () => {
    const rng = new Prng(11);
    const dev = memoryDevice('log', Buffer.alloc(logFileSize(regionCount)));
    const log = await RegionLog.create(dev, init, false);
    const marked = new Set<number>();
    for (let round = 0; round < 20; round++) {
      const waits: Promise<void>[] = [];
      for (let i = 0; i < 50; i++) {
        // clusters of sectors with gaps between them
        const sector = rng.pick([0, 1, 5, 9, 10, 17, 30, 39, 40]);
        const r = Math.min(regionCount - 1, sector * REGIONS_PER_SECTOR + rng.int(REGIONS_PER_SECTOR));
        const p = log.markForWrite(r);
        marked.add(r);
        if (p) waits.push(p);
      }
      await Promise.all(waits);
    }
    const devB = memoryDevice('log', dev.snapshot());
    const { log: re } = await RegionLog.open(devB);
    for (let r = 0; r < regionCount; r++) {
      assert.equal(re.isDirty(r), marked.has(r), `D of region ${r}`);
      assert.equal(re.isWritten(r), marked.has(r), `S of region ${r}`);
    }
    assert.equal(re.writtenCount, marked.size);
    // a session end lapses every S bit at once, in one header write
    devB.keepJournal = true;
    await re.endSession(false);
    assert.deepEqual(devB.journal, ['write 4096+512', 'flush'], 'one header write (to the other slot, B) and one flush');
    const { log: re2 } = await RegionLog.open(memoryDevice('log', devB.snapshot()));
    for (const r of marked) assert.ok(re2.isPending(r));
    assert.equal(re2.pendingCount, marked.size);
  });
});

describe('region log bitmap checksums', () => {
  const regionCount = REGIONS_PER_SECTOR * 6 + 123;
  const init = { modelId: 'ef'.repeat(32), regionSize: 4096, diskSize: regionCount * 4096, sessionNumber: 1, sessionStartedAt: 0, mode: 'thawed' as const, restoreMode: 'instant' as const };

  async function logWithMarks(seed: number): Promise<{ bytes: Buffer; written: Set<number> }> {
    const rng = new Prng(seed);
    const dev = memoryDevice('log', Buffer.alloc(logFileSize(regionCount)));
    const log = await RegionLog.create(dev, init, false);
    const written = new Set<number>();
    for (let i = 0; i < 600; i++) {
      const r = rng.int(regionCount);
      written.add(r);
      void log.markForWrite(r);
    }
    await log.commit();
    return { bytes: dev.snapshot(), written };
  }

  it('makes every region of a sector that fails its checksum pending, reports it until the sector is written, then writes it sound', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const rng = new Prng(seed);
      const { bytes, written } = await logWithMarks(seed);
      const bad = rng.int(7); // the last sector is partly used
      // corrupt 1–8 random bytes of that sector (each really changed)
      for (let k = rng.range(1, 8); k > 0; k--) {
        const i = BITMAP_OFFSET + bad * SECTOR + rng.int(SECTOR);
        bytes[i] = bytes[i]! ^ rng.range(1, 255);
      }
      const dev = memoryDevice('log', bytes);
      const opened = await RegionLog.open(dev);
      const log = opened.log;
      const first = bad * REGIONS_PER_SECTOR;
      const count = Math.min(REGIONS_PER_SECTOR, regionCount - first);
      assert.deepEqual(opened.bitmapDamage, { sectors: [bad], regions: count, ranges: [{ first, last: first + count - 1 }] }, `seed ${seed}`);
      assert.equal(log.damage, opened.bitmapDamage);
      assert.ok(dev.snapshot().equals(bytes), 'opening writes nothing');
      for (let r = 0; r < regionCount; r++) {
        if (r >= first && r < first + count) assert.ok(log.isPending(r), `region ${r} of the damaged sector is pending`);
        else {
          assert.equal(log.isWritten(r), written.has(r), `S of region ${r} outside the damaged sector`);
          assert.equal(log.isDirty(r), written.has(r), `D of region ${r} outside the damaged sector`);
        }
      }
      await log.sync();
      const still = await RegionLog.open(memoryDevice('log', dev.snapshot()));
      assert.deepEqual(still.bitmapDamage?.sectors, [bad], 'reported at every open until the sector is written');
      log.clearRestored(first); // the restore of one of its regions writes the sector
      await log.sync();
      const again = await RegionLog.open(memoryDevice('log', dev.snapshot()));
      assert.equal(again.bitmapDamage, null, 'the commit wrote the sector back with a good checksum');
      assert.equal(again.log.isDirty(first), false);
      for (let r = first + 1; r < first + count; r++) assert.ok(again.log.isPending(r));
    }
  });

  it('detects a sector written to the wrong place (the checksum covers the sector index)', async () => {
    const { bytes } = await logWithMarks(9);
    bytes.copy(bytes, BITMAP_OFFSET + 2 * SECTOR, BITMAP_OFFSET + 1 * SECTOR, BITMAP_OFFSET + 2 * SECTOR);
    const opened = await RegionLog.open(memoryDevice('log', bytes));
    assert.deepEqual(opened.bitmapDamage?.sectors, [2]);
  });
});

describe('region log of format 1 (release 0.1.0)', () => {
  const v1 = readFileSync(join(fixtures, 'write-log-v1', 'write-log.bin'));
  const expected = JSON.parse(readFileSync(join(fixtures, 'write-log-v1', 'expected.json'), 'utf8')) as { header: LogHeader; dirty: number[]; written: number[] };

  function assertBits(log: RegionLog, extraWritten: readonly number[] = []): void {
    const dirty = new Set([...expected.dirty, ...extraWritten]);
    const written = new Set([...expected.written, ...extraWritten]);
    for (let r = 0; r < log.regionCount; r++) {
      assert.equal(log.isDirty(r), dirty.has(r), `D of region ${r}`);
      assert.equal(log.isWritten(r), written.has(r), `S of region ${r}`);
    }
  }

  it('reads it as it is, and writes nothing at open', async () => {
    const dev = memoryDevice('log', v1);
    const opened = await RegionLog.open(dev);
    assert.equal(opened.formatVersion, 1);
    assert.equal(opened.bitmapDamage, null);
    assert.deepEqual({ ...opened.log.info }, expected.header);
    assertBits(opened.log);
    assert.ok(dev.snapshot().equals(v1));
  });

  it('migrates it to format 2 at its first write, keeping every bit', async () => {
    const dev = memoryDevice('log', v1);
    const { log } = await RegionLog.open(dev);
    const fresh = [1, 2, 2500, 4999].filter((r) => !log.isDirty(r));
    for (const r of fresh) await log.markForWrite(r);
    const after = dev.snapshot();
    assert.ok(after.length > v1.length, 'the format-2 bitmap went after the old one');
    const re = await RegionLog.open(memoryDevice('log', after));
    assert.equal(re.formatVersion, 2);
    assert.equal(re.bitmapDamage, null);
    assert.equal(re.log.info.sessionNumber, expected.header.sessionNumber);
    assert.equal(re.log.info.mode, 'thawed');
    assertBits(re.log, fresh);
    // and it goes on as a format-2 log: a session end, a reopen
    await re.log.endSession(false);
    const re2 = await RegionLog.open(memoryDevice('log', (re.log as unknown as { dev: FaultDevice }).dev.snapshot()));
    assert.equal(re2.formatVersion, 2);
    assert.equal(re2.log.pendingCount, new Set([...expected.dirty, ...fresh]).size);
  });

  it('leaves the old log or the new one after a power cut at any point of the migration', async () => {
    let sawOld = 0;
    let sawNew = 0;
    for (let crashAt = 1; crashAt <= 8; crashAt++) {
      for (let seed = 1; seed <= 12; seed++) {
        const domain = new PowerDomain(new Prng(seed * 100 + crashAt));
        const dev = new FaultDevice('log', v1, domain);
        const { log } = await RegionLog.open(dev);
        domain.crashAt = domain.ops + crashAt;
        const r = 3; // clean in the fixture
        assert.equal(log.isDirty(r), false);
        const acked = await (log.markForWrite(r) ?? Promise.resolve()).then(
          () => true,
          (e: unknown) => {
            assert.ok(isPowerLost(e), String(e));
            return false;
          },
        );
        domain.lost = true;
        const img = dev.crashImage();
        const opened = await RegionLog.open(memoryDevice('log', img));
        assert.equal(opened.bitmapDamage, null, `crash at ${crashAt}, seed ${seed}: no damaged sector`);
        if (opened.formatVersion === 1) sawOld++;
        else sawNew++;
        if (acked) assertBits(opened.log, [3]);
        else {
          // the mark may or may not have reached the log; nothing else changed
          const extra = opened.log.isDirty(3) ? [3] : [];
          assertBits(opened.log, extra);
        }
      }
    }
    assert.ok(sawOld > 0 && sawNew > 0, `both outcomes seen (old ${sawOld}, new ${sawNew})`);
  });
});
