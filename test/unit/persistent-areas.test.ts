/**
 * Persistent areas on a real state directory (files, fsync): what the host writes there survives
 * frozen session ends and reopening, while the rest of the disk is restored; the write log never
 * marks a region there; verify and capture leave them out; requests are narrowed to whole
 * regions; bad requests are refused with a clear error and change nothing.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Prng } from '../helpers/prng.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { initEngine, openEngine, type Engine } from '../../appliance/storage/engine.js';
import { PERSISTENT_AREAS_FILE } from '../../appliance/storage/persistent-areas.js';
import { verifyAgainstLog } from '../../appliance/storage/verify.js';
import { captureModel } from '../../appliance/storage/model-capture.js';
import { ModelImage } from '../../appliance/storage/model-image.js';
import { isSnapbackError } from '../../appliance/errors.js';

const KIB = 1024;
const MIB = 1 << 20;
const SIZE = 4 * MIB;
const RS = 64 * KIB;

describe('persistent areas (storage)', function () {
  this.timeout(60_000);
  let dir: string;
  let state: string;
  let model: Buffer;
  let e: Engine;
  const rng = new Prng(31);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-persistent-'));
    state = join(dir, 'state');
    model = rng.bytes(SIZE);
    // an MBR: partition 1 at 1 MiB (1 MiB, FAT), partition 2 at 3 MiB (1 MiB, Linux)
    model.fill(0, 0, 512);
    for (const [i, type, lba] of [[0, 0x0c, 2048], [1, 0x83, 6144]] as const) {
      const e = 446 + 16 * i;
      model[e + 4] = type;
      model.writeUInt32LE(lba, e + 8);
      model.writeUInt32LE(2048, e + 12);
    }
    model[510] = 0x55;
    model[511] = 0xaa;
    writeFileSync(join(dir, 'model.img'), model);
    await (await createManifest(join(dir, 'model.img'), { regionSize: RS })).save(manifestPathFor(join(dir, 'model.img')));
    await initEngine({ stateDir: state, model: join(dir, 'model.img'), disk: join(dir, 'disk.img'), regionSize: RS });
    e = await openEngine(state);
    await e.hydrator.runToCompletion();
  });
  after(async () => {
    await e.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const areasFile = () => join(state, PERSISTENT_AREAS_FILE);
  const fileText = () => (existsSync(areasFile()) ? readFileSync(areasFile(), 'utf8') : null);
  const endFrozen = () => e.pd.endSession({ keepWrites: false });
  const regionsOf = (offset: number, length: number) => Array.from({ length: Math.ceil(length / RS) }, (_, i) => Math.floor(offset / RS) + i);

  it('an unaligned range is narrowed inward to whole regions, and the reply says which bytes stay protected', async () => {
    const c = await e.persistent.add({ range: '100K:200K' });
    assert.equal(c.area.offset, 128 * KIB);
    assert.equal(c.area.length, 128 * KIB);
    assert.deepEqual(c.area.requested, { offset: 100 * KIB, length: 200 * KIB });
    assert.match(c.adjustment ?? '', /narrowed to whole regions of 64 KiB: bytes 131072–262143 are persistent; bytes 102400–131071 and bytes 262144–307199 stay protected/);
    assert.equal(c.takesEffect, 'next-session-end');
    assert.deepEqual(e.persistent.list().active, [], 'in force only from the next session end');
    await e.persistent.remove({ id: c.area.id });
    assert.deepEqual(e.persistent.list().pending, []);
  });

  it('a partition is added as the bytes the model\'s partition table gives it, and removed by its number', async () => {
    const c = await e.persistent.add({ partition: 2 });
    assert.deepEqual([c.area.offset, c.area.length, c.area.partition, c.adjustment], [3 * MIB, MIB, 2, null]);
    const r = await e.persistent.remove({ partition: '2' });
    assert.equal(r.area.id, c.area.id);
    assert.deepEqual(e.persistent.list().pending, []);
  });

  it('bad requests (overlap, beyond the disk, zero or negative length, malformed, no whole region, a partition that does not exist) are refused with a clear error and change nothing', async () => {
    await e.persistent.add({ range: '1M:1M' });
    const before = fileText();
    const list = JSON.stringify(e.persistent.list());
    const refused = async (req: Parameters<Engine['persistent']['add']>[0], code: string, message: RegExp) => {
      await assert.rejects(e.persistent.add(req), (err: unknown) => isSnapbackError(err) && err.code === code && message.test(err.message));
      assert.equal(fileText(), before, `${JSON.stringify(req)} changed the areas file`);
      assert.equal(JSON.stringify(e.persistent.list()), list);
    };
    await refused({ range: '1536K:1M' }, 'BAD_ARGUMENT', /overlaps persistent area \d+ \(bytes 1048576–2097151\): remove that one first/);
    await refused({ range: '3M:2M' }, 'BAD_ARGUMENT', /ends at byte 5242880, beyond the end of the disk \(4194304 bytes, 4 MiB\)/);
    await refused({ range: '3M:0' }, 'BAD_ARGUMENT', /the length is zero/);
    await refused({ range: '3M:-64K' }, 'BAD_ARGUMENT', /the length is negative/);
    await refused({ range: '-1M:64K' }, 'BAD_ARGUMENT', /the offset is negative/);
    await refused({ range: '3M+64K' }, 'BAD_ARGUMENT', /is not OFFSET:LENGTH/);
    await refused({ range: '3M:lots' }, 'BAD_ARGUMENT', /length "lots" is not a size/);
    await refused({ range: '3M:4000' }, 'BAD_ARGUMENT', /holds no whole region of 64 KiB/);
    await refused({ partition: 0 }, 'BAD_ARGUMENT', /partition numbers start at 1/);
    await refused({ partition: 5 }, 'NOT_FOUND', /partition 5 does not exist \(the disk's MBR has partitions 1, 2\)/);
    await refused({ partition: 1 }, 'BAD_ARGUMENT', /partition 1 overlaps persistent area/);
    await assert.rejects(e.persistent.remove({ id: '99' }), /no persistent area is id 99 \(the areas are: \d+ \(1048576:1048576\)\)/);
    assert.equal(fileText(), before);
  });

  it('a frozen session end keeps what the host wrote in a persistent area and restores the rest; the log never marks a region there', async () => {
    await endFrozen(); // puts 1M:1M in force
    await e.hydrator.runToCompletion();
    assert.equal(e.persistent.list().active.length, 1);
    assert.equal(e.persistent.list().pending, null);
    const inside = rng.bytes(300 * KIB);
    const outside = rng.bytes(100 * KIB);
    const edge = rng.bytes(8 * KIB); // straddles the area's end: half kept, half restored
    await e.pd.write(MIB + 5000, inside);
    await e.pd.write(3 * MIB, outside);
    await e.pd.write(2 * MIB - 4 * KIB, edge);
    await e.pd.flush();
    for (const r of regionsOf(MIB, MIB)) assert.ok(!e.log.isDirty(r) && !e.log.isPending(r), `region ${r} of the area is marked`);
    assert.ok(e.log.isWritten(3 * MIB / RS));
    const report = await verifyAgainstLog(e.disk, e.model, e.log);
    assert.ok(report.ok, `verify reports unlogged differences: ${report.unlogged.join(', ')}`);
    assert.equal(report.differing, 3, 'the three regions written outside the area differ (two, and the edge write\'s half), none inside');
    await endFrozen();
    assert.equal(e.log.pendingCount, 3, 'only the regions outside the area are pending');
    const seen = await e.pd.read(0, SIZE);
    const expect = Buffer.from(model);
    inside.copy(expect, MIB + 5000);
    edge.copy(expect, 2 * MIB - 4 * KIB, 0, 4 * KIB);
    assert.ok(seen.equals(expect), 'the host reads its writes in the area and the model elsewhere');
    await e.hydrator.runToCompletion();
    // reopened (a daemon restart): the area is in force, its bytes are there
    await e.close();
    e = await openEngine(state);
    assert.ok((await e.pd.read(0, SIZE)).equals(expect));
    assert.ok(e.log.isPersistent(MIB / RS));
  });

  it('a region pending when it enters an area reads the model, not the bytes a lapsed session left on the disk', async () => {
    const stale = rng.bytes(RS);
    await e.pd.write(3 * MIB, stale);
    await e.pd.flush();
    await endFrozen(); // the region is pending; the working disk still holds the lapsed bytes
    assert.ok(e.log.isPending(3 * MIB / RS));
    assert.ok((await e.disk.read(3 * MIB, RS)).equals(stale));
    await e.persistent.add({ range: '3M:64K' });
    await endFrozen();
    assert.ok(e.log.isPersistent(3 * MIB / RS) && !e.log.isDirty(3 * MIB / RS));
    assert.ok((await e.pd.read(3 * MIB, RS)).equals(model.subarray(3 * MIB, 3 * MIB + RS)));
  });

  it('a capture leaves the persistent areas out (the parent model\'s bytes stay there) unless asked to include them', async () => {
    const host = rng.bytes(RS);
    await e.pd.write(3 * MIB, host); // in the 3M:64K area
    await e.pd.write(0, rng.bytes(512)); // something outside to capture
    const parent = e.model as ModelImage;
    const capture = async (name: string, includePersistent: boolean) => {
      const dest = join(dir, `${name}.img`);
      await captureModel(e.pd, parent, dest, { name, includePersistent });
      return readFileSync(dest).subarray(3 * MIB, 3 * MIB + RS);
    };
    assert.ok((await capture('without', false)).equals(model.subarray(3 * MIB, 3 * MIB + RS)));
    assert.ok((await capture('with', true)).equals(host));
  });

  it('removing an area makes the next frozen session end restore it from the model; a switch to another model never marks an area', async () => {
    const every = new Uint8Array(Math.ceil(e.log.regionCount / 8)).fill(0xff);
    await e.pd.quiesce();
    await e.log.switchModel(e.log.info.modelId, every, { newSession: false }); // every region differs
    e.pd.resume();
    for (const r of regionsOf(MIB, MIB)) assert.ok(!e.log.isPending(r), `a switch made region ${r} of the area pending`);
    await e.hydrator.runToCompletion();
    const c = await e.persistent.remove({ range: '1M:1M' });
    assert.equal(c.area.offset, MIB);
    // reopened before the session end: the change waits durably
    await e.close();
    e = await openEngine(state);
    assert.deepEqual(e.persistent.list().pending?.map((a) => a.offset), [3 * MIB]);
    await endFrozen();
    assert.ok(!e.log.isPersistent(MIB / RS));
    assert.ok((await e.pd.read(MIB, MIB)).equals(model.subarray(MIB, 2 * MIB)), 'the removed area reads the model again');
  });
});
