/**
 * One manifest load in a process of its own, for bench/model.ts: how long it takes and how much
 * memory it needs at its peak and keeps. Prints one JSON line.
 *   node --expose-gc dist/bench/manifest-load-entry.js MANIFEST stream|plain
 */
import { Manifest, loadManifestPlain } from '../appliance/storage/manifest.js';

const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

async function main(): Promise<void> {
  const [path, mode] = process.argv.slice(2);
  if (!path || (mode !== 'stream' && mode !== 'plain')) throw new Error('usage: manifest-load-entry.js MANIFEST stream|plain');
  gc();
  const before = process.memoryUsage();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const m = mode === 'stream' ? await Manifest.load(path) : await loadManifestPlain(path);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(c0);
  gc();
  const after = process.memoryUsage();
  const MB = 1e6;
  process.stdout.write(
    JSON.stringify({
      mode,
      regions: m.regionCount,
      id: m.id,
      ms,
      cpuMs: (cpu.user + cpu.system) / 1000,
      peakRssMB: (process.resourceUsage().maxRSS * 1024) / MB,
      rssBeforeMB: before.rss / MB,
      rssAfterMB: after.rss / MB,
      keptMB: (after.heapUsed + after.external - before.heapUsed - before.external) / MB,
    }) + '\n',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
