/**
 * The read view: long random sequences of writes (through write() and the synchronous
 * writeNow()), zeroes, trims, flushes, session ends, hydration and mode changes, with reads
 * through the synchronous readNow() between the steps, checked after every step against a reference that is a
 * plain byte array, in every mode (frozen+instant, frozen+eager, thawed, and thawed→frozen).
 */
import assert from 'node:assert/strict';
import { Prng } from '../helpers/prng.js';
import { buildStack, randomShape } from '../helpers/storage-rig.js';

type Plan = 'instant' | 'eager' | 'thawed' | 'thawed-then-frozen';

/** Runs one sequence; returns how many writes and reads the synchronous paths took. */
async function runSequence(seed: number, plan: Plan): Promise<{ writtenNow: number; readNow: number }> {
  let writtenNow = 0;
  let readNow = 0;
  const rng = new Prng(seed);
  const s = await buildStack(rng, randomShape(rng));
  const { pd, hydrator, log } = s;
  let mode: 'frozen' | 'thawed' = plan.startsWith('thawed') ? 'thawed' : 'frozen';
  await log.setModes(mode, plan === 'eager' ? 'eager' : 'instant');
  const ref = Buffer.from(s.modelBytes);
  hydrator.start();
  const steps = 300;
  for (let i = 0; i < steps; i++) {
    const k = rng.next();
    if (k < 0.6) {
      const len = rng.range(1, 3 * pd.regionSize);
      const off = rng.int(pd.size - Math.min(len, pd.size) + 1);
      const n = Math.min(len, pd.size - off);
      if (rng.chance(0.2)) {
        await (rng.chance(0.5) ? pd.trim(off, n) : pd.writeZeroes(off, n, { fua: rng.chance(0.3) }));
        ref.fill(0, off, off + n);
      } else {
        const data = rng.bytes(n);
        // Half the plain writes try the synchronous path first (the NBD server's, for small
        // writes): it takes only regions already written this session, else write() must.
        const fua = rng.chance(0.2);
        if (!fua && rng.chance(0.5) && pd.writeNow(off, data)) writtenNow++;
        else await pd.write(off, data, { fua });
        data.copy(ref, off);
      }
    } else if (k < 0.7) {
      await pd.flush();
    } else if (k < 0.78) {
      await pd.endSession({ keepWrites: mode === 'thawed', keepQuiesced: plan === 'eager' });
      if (plan === 'eager') {
        await hydrator.runToCompletion();
        assert.equal(log.pendingCount, 0, 'eager: pending regions left before the medium came back');
        pd.resume();
      }
      if (mode === 'frozen') s.modelBytes.copy(ref);
      hydrator.kick();
    } else if (k < 0.8 && plan === 'thawed-then-frozen' && mode === 'thawed') {
      mode = 'frozen';
      await log.setModes('frozen', 'instant');
    }
    if (rng.chance(0.3)) {
      // a small read through the synchronous path, when it takes it (no pending region in range)
      const len = rng.range(1, 2 * pd.regionSize);
      const off = rng.int(pd.size - Math.min(len, pd.size) + 1);
      const buf = Buffer.alloc(Math.min(len, pd.size - off));
      if (pd.readNow(buf, off)) {
        readNow++;
        if (!buf.equals(ref.subarray(off, off + buf.length))) assert.fail(`seed ${seed} ${plan} step ${i}: readNow at ${off}+${buf.length} differs from the reference`);
      }
    }
    if (i % 10 === 0 || k >= 0.7) {
      const got = await pd.read(0, pd.size);
      if (!got.equals(ref)) {
        let b = 0;
        while (got[b] === ref[b]) b++;
        assert.fail(`seed ${seed} ${plan} step ${i}: byte ${b} reads ${got[b]}, expected ${ref[b]}`);
      }
    }
  }
  await hydrator.stop();
  return { writtenNow, readNow };
}

describe('protected disk read view against a reference byte array', function () {
  this.timeout(300_000);
  for (const plan of ['instant', 'eager', 'thawed', 'thawed-then-frozen'] as const) {
    it(`matches the reference in ${plan} mode over 40 random sequences`, async () => {
      let writtenNow = 0;
      let readNow = 0;
      for (let seed = 1; seed <= 40; seed++) {
        const n = await runSequence(seed * 7919 + plan.length, plan);
        writtenNow += n.writtenNow;
        readNow += n.readNow;
      }
      assert.ok(writtenNow > 100, `the synchronous write path was taken ${writtenNow} times`);
      assert.ok(readNow > 100, `the synchronous read path was taken ${readNow} times`);
    });
  }
});
