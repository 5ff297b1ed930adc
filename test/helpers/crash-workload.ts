/** The crash-test workload and checks (see test/unit/storage-crash.test.ts). */
import assert from 'node:assert/strict';
import { Prng } from './prng.js';
import { buildStack, randomShape, reopenStack, HostReference, type Stack } from './storage-rig.js';
import { BITMAP_OFFSET, SECTOR, REGIONS_PER_SECTOR } from '../../appliance/storage/region-log.js';
import { isPowerLost } from './fault-device.js';
import { isSnapbackError } from '../../appliance/errors.js';
import type { PersistentArea } from '../../appliance/api/persistent.js';


interface Outcome {
  sessionEndInFlight: boolean;
  /** What the host reads once the session end in flight is made (its persistent areas keep their bytes). */
  viewAfterEnd: Buffer | null;
  /** A change of the persistent areas in flight at the cut: the areas asked for before it, and the one added or removed. */
  areaChange: { before: PersistentArea[]; range: string } | null;
}

/** The areas that are (or will be, after the next session end) in force. */
const areasAfterEnd = (s: Stack): PersistentArea[] => s.areas.list().pending ?? s.areas.list().active;

/** `model` with the bytes of `view` in the regions of `areas`. */
function keepAreas(model: Buffer, view: Buffer, areas: readonly PersistentArea[]): Buffer {
  const b = Buffer.from(model);
  for (const a of areas) view.copy(b, a.offset, a.offset, Math.min(view.length, a.offset + a.length));
  return b;
}

/** No region of an area in force carries a write-log mark. */
function assertNoMarksInAreas(s: { log: Stack['log'] }, when: string): void {
  for (let r = 0; r < s.log.regionCount; r++) {
    if (s.log.isPersistent(r)) assert.ok(!s.log.isDirty(r), `${when}: region ${r} of a persistent area has its D bit set`);
  }
}

export const trace: string[] = [];
const T = (m: string) => {
  if (process.env.CRASH_TRACE) trace.push(m);
};

async function workload(s: Stack, rng: Prng, ref: HostReference, steps: number): Promise<Outcome> {
  const { pd, hydrator } = s;
  const size = pd.size;
  const rs = pd.regionSize;
  const inflight = new Set<Promise<void>>();
  const busy: { a: number; b: number }[] = [];
  const outcome: Outcome = { sessionEndInFlight: false, viewAfterEnd: null, areaChange: null };
  let failed: unknown = null;
  const track = (p: Promise<void>) => {
    const q = p.catch((e) => {
      if (!isPowerLost(e)) failed ??= e;
    });
    inflight.add(q);
    void q.finally(() => inflight.delete(q));
  };
  const drain = async () => {
    while (inflight.size) await Promise.all([...inflight]);
  };
  let mode: 'frozen' | 'thawed' = 'frozen';
  if (rng.chance(0.5)) hydrator.start();
  for (let step = 0; step < steps && !s.domain.lost; step++) {
    const kind = rng.next();
    if (kind < 0.55) {
      // write or zero a range that overlaps nothing in flight
      let offset = 0;
      let length = 0;
      for (let tries = 0; tries < 8; tries++) {
        const aligned = rng.chance(0.5);
        length = aligned ? rng.pick([512, 4096, rs, 2 * rs]) : rng.range(1, 2 * rs + 700);
        length = Math.min(length, size);
        offset = aligned ? Math.floor(rng.int(size - length + 1) / 512) * 512 : rng.int(size - length + 1);
        if (!busy.some((r) => offset < r.b && r.a < offset + length)) break;
        length = 0;
      }
      if (length === 0) {
        await Promise.race(inflight);
        continue;
      }
      const zero = rng.chance(0.15);
      const data = zero ? Buffer.alloc(length) : rng.bytes(length);
      const fua = rng.chance(0.2);
      const w = ref.issue(offset, data);
      const range = { a: offset, b: offset + length };
      busy.push(range);
      T(`${zero ? 'zero' : 'write'} ${offset}+${length} fua=${fua} regions ${Math.floor(offset / rs)}..${Math.floor((offset + length - 1) / rs)} pending=${s.log.isPending(Math.floor(offset / rs))}`);
      const op = zero ? (rng.chance(0.5) ? pd.trim(offset, length, { fua }) : pd.writeZeroes(offset, length, { fua })) : pd.write(offset, data, { fua });
      track(
        op
          .then(() => {
            w.acked = true;
            T(`ack ${offset}+${length}`);
            if (fua) w.durable = true;
          })
          .finally(() => busy.splice(busy.indexOf(range), 1)),
      );
    } else if (kind < 0.7) {
      const done0 = ref.flushIssued();
      const done = () => {
        T('flush done');
        done0();
      };
      T('flush');
      track(pd.flush().then(done));
    } else if (kind < 0.8) {
      // reads during the workload must see every acknowledged write
      const offset = rng.int(size);
      const length = Math.min(size - offset, rng.range(1, 3 * rs));
      if (!busy.some((r) => offset < r.b && r.a < offset + length)) {
        const expect = ref.current().subarray(offset, offset + length);
        const range = { a: offset, b: offset + length };
        busy.push(range);
        track(
          pd
            .read(offset, length)
            .then((got) => {
              if (!got.equals(expect)) failed ??= new Error(`read at ${offset}+${length} during the workload did not return the acknowledged bytes`);
            })
            .finally(() => busy.splice(busy.indexOf(range), 1)),
        );
      }
    } else if (kind < 0.86) {
      await drain();
      if (s.domain.lost) break;
      outcome.sessionEndInFlight = true;
      const after = areasAfterEnd(s);
      outcome.viewAfterEnd = mode === 'frozen' ? keepAreas(s.modelBytes, ref.current(), after) : null;
      T(`session end (${mode}), areas after it ${after.map((a) => `${a.offset}+${a.length}`).join(' ')}`);
      try {
        await pd.endSession({ keepWrites: mode === 'thawed' });
        if (mode === 'frozen') ref.reset(outcome.viewAfterEnd!);
        assertNoMarksInAreas(s, 'after a session end');
        if (rng.chance(0.3)) await hydrator.runToCompletion(); // eager
        hydrator.kick();
      } catch (e) {
        if (!isPowerLost(e)) throw e;
        break;
      }
      outcome.sessionEndInFlight = false;
      outcome.viewAfterEnd = null;
    } else if (kind < 0.9) {
      await drain();
      if (s.domain.lost) break;
      mode = mode === 'frozen' ? 'thawed' : 'frozen';
      T(`mode ${mode}`);
      try {
        await s.log.setModes(mode, 'instant');
      } catch (e) {
        if (!isPowerLost(e)) throw e;
        break;
      }
    } else if (kind < 0.95) {
      hydrator.start();
    } else if (kind < 0.98) {
      // a persistent area added (some not region-aligned, some refused: overlapping) or removed
      const target = areasAfterEnd(s);
      const remove = target.length > 0 && rng.chance(0.4);
      const victim = remove ? target[rng.int(target.length)]! : null;
      const range = victim ? `${victim.requested.offset}:${victim.requested.length}` : `${rng.chance(0.5) ? rng.int(size - rs) : rng.int(Math.floor(size / rs)) * rs}:${rng.range(1, 3) * rs + (rng.chance(0.3) ? rng.range(1, 700) : 0)}`;
      outcome.areaChange = { before: target, range };
      T(`persistent ${remove ? 'remove' : 'add'} ${range}`);
      try {
        await (remove ? s.areas.remove({ range }) : s.areas.add({ range }));
      } catch (e) {
        if (isPowerLost(e)) break;
        if (!isSnapbackError(e, 'BAD_ARGUMENT')) throw e; // overlapping, beyond the disk, no whole region
      }
      outcome.areaChange = null;
    } else {
      await Promise.race([...inflight, new Promise((r) => setImmediate(r))]);
    }
    if (inflight.size >= 4) await Promise.race(inflight);
  }
  await drain();
  await hydrator.stop().catch(() => undefined);
  if (failed) throw failed;
  return outcome;
}

export async function crashOnce(seed: number, instrument?: (s: Stack) => void): Promise<void> {
  const rng = new Prng(seed);
  const shape = randomShape(rng);
  const s = await buildStack(rng, shape);
  instrument?.(s);
  const ref = new HostReference(s.modelBytes);
  // the power goes out at a random write or flush from here on (or after the workload)
  s.domain.crashAt = s.domain.ops + rng.range(1, 160);
  const outcome = await workload(s, rng, ref, rng.range(10, 80));
  s.domain.lost = true;
  const diskImg = s.disk.crashImage();
  // Some cuts also tear the log inside a sector, and some find a bitmap sector corrupted by
  // the medium (random bytes changed): either way the sector fails its checksum.
  const logImg = s.logDev.crashImage({ tearInsideSectors: rng.chance(0.2) });
  let corrupted: number | null = null;
  if (rng.chance(0.2)) {
    corrupted = rng.int((logImg.length - BITMAP_OFFSET) / SECTOR);
    for (let k = rng.range(1, 6); k > 0; k--) {
      const i = BITMAP_OFFSET + corrupted * SECTOR + rng.int(SECTOR);
      logImg[i] = logImg[i]! ^ rng.range(1, 255);
    }
    T(`corrupted bitmap sector ${corrupted}`);
  }
  const re = await reopenStack(s.modelBytes, diskImg, logImg, s.areasFile.text);
  const rs = re.log.regionSize;
  assertNoMarksInAreas(re, 'after the power cut');
  if (outcome.areaChange) {
    // an area added or removed as the power went out: the change was made whole or not at all
    const now = re.areas.list().pending ?? re.areas.list().active;
    const key = (l: PersistentArea[]) => JSON.stringify(l.map((a) => [a.id, a.offset, a.length]));
    const others = now.filter((a) => outcome.areaChange!.before.some((b) => b.id === a.id));
    const added = now.filter((a) => !outcome.areaChange!.before.some((b) => b.id === a.id));
    assert.ok(added.length <= 1 && (added.length === 0 || `${added[0]!.requested.offset}:${added[0]!.requested.length}` === outcome.areaChange.range), `an area change cut by the power left ${key(now)}`);
    assert.ok(others.length === outcome.areaChange.before.length || others.length === outcome.areaChange.before.length - 1, `an area change cut by the power left ${key(now)}`);
  }
  const damaged = new Set(re.log.damage?.sectors ?? []);
  if (corrupted !== null) assert.ok(damaged.has(corrupted), `the corrupted bitmap sector ${corrupted} was not detected`);
  // persistent regions read the working disk whatever the bitmap says: never counted as damaged
  const inDamage = (region: number) => damaged.has(Math.floor(region / REGIONS_PER_SECTOR)) && !re.log.isPersistent(region);
  // invariant 1 (persistent areas: the working disk is authoritative, no mark)
  for (let r = 0; r < re.log.regionCount; r++) {
    const a = r * rs;
    const b = Math.min(shape.size, a + rs);
    if (!diskImg.subarray(a, b).equals(s.modelBytes.subarray(a, b))) {
      assert.ok(re.log.isDirty(r) || re.log.isPersistent(r), `invariant 1: region ${r} differs from the model without D`);
    }
  }
  // invariant 2, except in regions of a damaged sector: those read the model
  const seen = await re.pd.read(0, shape.size);
  for (let r = 0; r < re.log.regionCount; r++) {
    if (!inDamage(r)) continue;
    const a = r * rs;
    const b = Math.min(shape.size, a + rs);
    assert.ok(seen.subarray(a, b).equals(s.modelBytes.subarray(a, b)), `region ${r} of a damaged bitmap sector does not read the model`);
  }
  const bad = ref.firstViolation(seen, (i) => inDamage(Math.floor(i / rs)));
  if (bad >= 0 && !(outcome.sessionEndInFlight && outcome.viewAfterEnd && seen.equals(outcome.viewAfterEnd))) {
    assert.fail(`invariant 2: byte ${bad} (region ${Math.floor(bad / rs)}) reads ${seen[bad]}, expected ${ref.stable[bad]} or a recent write's byte`);
  }
  // invariant 3, outside persistent areas; inside them the host's bytes stay
  const kept = keepAreas(s.modelBytes, seen, re.areas.list().pending ?? re.areas.list().active);
  await re.pd.endSession({ keepWrites: false });
  assertNoMarksInAreas(re, 'after the session end that followed the cut');
  assert.ok((await re.pd.read(0, shape.size)).equals(kept), 'invariant 3: after the session end the host does not read the model (and its bytes in persistent areas)');
  await re.hydrator.runToCompletion();
  assert.equal(re.log.pendingCount, 0);
  assert.ok(re.disk.snapshot().subarray(0, shape.size).equals(kept), 'after a full restore the working disk differs from the model outside persistent areas');
}

