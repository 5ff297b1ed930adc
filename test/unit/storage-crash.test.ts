/**
 * Power cuts: randomised workloads on fault-injecting devices, a power cut at a random write
 * or flush (some also tearing the write log inside a 512-byte sector, some finding a bitmap
 * sector with random bytes corrupted), then, after reopening from what the cut left:
 *   invariant 1 — every region where the working disk differs from the model has D set;
 *   invariant 2 — the host reads every byte it wrote and flushed (others: old or new bytes),
 *                 except in regions of a bitmap sector that failed its checksum: those are
 *                 pending and read the model (a corrupted sector is always detected);
 *   invariant 3 — after a session end, the host reads the model, and a full restore makes the
 *                 working disk equal to the model.
 * Seeded and reproducible: CRASH_SEED=N runs one seed; a failure names its seed.
 */
import { crashOnce, trace } from '../helpers/crash-workload.js';

const CRASH_POINTS = Number(process.env.CRASH_POINTS ?? 5200);

describe('storage engine under power cuts', function () {
  this.timeout(600_000);
  it(`keeps invariants 1-3 over ${CRASH_POINTS} injected crash points`, async () => {
    const only = process.env.CRASH_SEED;
    const seeds = only ? [Number(only)] : Array.from({ length: CRASH_POINTS }, (_, i) => Number(process.env.CRASH_SEED_BASE ?? 1000) + i);
    for (const seed of seeds) {
      trace.length = 0;
      try {
        await crashOnce(seed);
      } catch (err) {
        if (trace.length) console.error(trace.join('\n'));
        (err as Error).message = `seed ${seed} (rerun with CRASH_SEED=${seed}): ${(err as Error).message}`;
        throw err;
      }
    }
  });
});
