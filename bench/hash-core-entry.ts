/**
 * Hash throughput of one core, for bench/models.ts: the named hashes of 1 MiB regions on a hash
 * pool of ONE worker thread (as the appliance hashes), in a process of its own so that the
 * caller can mask OpenSSL's CPU features (OPENSSL_ia32cap) to see SHA-256 without SHA
 * instructions, as on a Pi 4. Prints one JSON line: [{ hash, MBps, wallMBps, cpuSecondsPerGiB, blake3 }]:
 * MBps per second of CPU time of the whole process (the worker's and the main thread's), so a
 * busy machine shows in the wall-clock figure rather than in the per-core one.
 *   node dist/bench/hash-core-entry.js MIB HASH...
 */
import { randomFillSync } from 'node:crypto';
import { isHashName, type HashName } from '../appliance/storage/hash-functions.js';
import { HashPool } from '../appliance/storage/hash-pool.js';
import { blake3Backend } from '../appliance/storage/blake3.js';

const MiB = 1 << 20;
const GiB = 1 << 30;

async function oneCore(hash: HashName, totalBytes: number): Promise<{ hash: HashName; MBps: number; wallMBps: number; cpuSecondsPerGiB: number }> {
  const pool = new HashPool({ threads: 1 });
  try {
    const chunk = 4 * MiB;
    // two chunks in flight: the worker always has the next one waiting
    const bufs = [0, 1].map(() => randomFillSync(Buffer.from(new SharedArrayBuffer(chunk))));
    for (let i = 0; i < 4; i++) await Promise.all(bufs.map((b) => pool.digestRegions(hash, b, MiB))); // start and warm the worker
    const n = Math.ceil(totalBytes / chunk);
    let next = 0;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await Promise.all(
      bufs.map(async (b) => {
        while (next < n) {
          next++;
          await pool.digestRegions(hash, b, MiB);
        }
      }),
    );
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    const bytes = n * chunk;
    const cpuS = (c.user + c.system) / 1e6;
    return { hash, MBps: bytes / 1e6 / cpuS, wallMBps: bytes / 1e6 / s, cpuSecondsPerGiB: (cpuS * GiB) / bytes };
  } finally {
    await pool.close();
  }
}

async function main(): Promise<void> {
  const [mib, ...hashes] = process.argv.slice(2);
  const total = Number(mib) * MiB;
  if (!(total > 0) || hashes.length === 0) throw new Error('usage: hash-core-entry.js MIB HASH...');
  const rows = [];
  for (const h of hashes) {
    if (!isHashName(h)) throw new Error(`unknown hash ${h}`);
    rows.push({ ...(await oneCore(h, total)), blake3: blake3Backend().name });
  }
  process.stdout.write(JSON.stringify(rows) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
