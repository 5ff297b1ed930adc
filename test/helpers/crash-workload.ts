/** The crash-test workload and checks (see test/unit/storage-crash.test.ts). */
import assert from 'node:assert/strict';
import { Prng } from './prng.js';
import { buildStack, randomShape, reopenStack, HostReference, type Stack } from './storage-rig.js';
import { BITMAP_OFFSET, SECTOR, REGIONS_PER_SECTOR } from '../../appliance/storage/region-log.js';
import { isPowerLost } from './fault-device.js';


interface Outcome {
  sessionEndInFlight: boolean;
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
  const outcome: Outcome = { sessionEndInFlight: false };
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
      T(`session end (${mode})`);
      try {
        await pd.endSession({ keepWrites: mode === 'thawed' });
        if (mode === 'frozen') ref.reset(s.modelBytes);
        if (rng.chance(0.3)) await hydrator.runToCompletion(); // eager
        hydrator.kick();
      } catch (e) {
        if (!isPowerLost(e)) throw e;
        break;
      }
      outcome.sessionEndInFlight = false;
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
  const re = await reopenStack(s.modelBytes, diskImg, logImg);
  const rs = re.log.regionSize;
  const damaged = new Set(re.log.damage?.sectors ?? []);
  if (corrupted !== null) assert.ok(damaged.has(corrupted), `the corrupted bitmap sector ${corrupted} was not detected`);
  const inDamage = (region: number) => damaged.has(Math.floor(region / REGIONS_PER_SECTOR));
  // invariant 1
  for (let r = 0; r < re.log.regionCount; r++) {
    const a = r * rs;
    const b = Math.min(shape.size, a + rs);
    if (!diskImg.subarray(a, b).equals(s.modelBytes.subarray(a, b))) {
      assert.ok(re.log.isDirty(r), `invariant 1: region ${r} differs from the model without D`);
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
  if (bad >= 0 && !(outcome.sessionEndInFlight && seen.equals(s.modelBytes))) {
    assert.fail(`invariant 2: byte ${bad} (region ${Math.floor(bad / rs)}) reads ${seen[bad]}, expected ${ref.stable[bad]} or a recent write's byte`);
  }
  // invariant 3
  await re.pd.endSession({ keepWrites: false });
  assert.ok((await re.pd.read(0, shape.size)).equals(s.modelBytes), 'invariant 3: after the session end the host does not read the model');
  await re.hydrator.runToCompletion();
  assert.equal(re.log.pendingCount, 0);
  assert.ok(re.disk.snapshot().subarray(0, shape.size).equals(s.modelBytes), 'after a full restore the working disk differs from the model');
}

