/**
 * Model benchmark (called from bench/run.ts, or alone):
 *   - hash throughput per core of every manifest hash (SHA-256 first: a Pi 4 core has no SHA-2
 *     instructions), CPU seconds per GiB, and SHA-256 on the hash worker pool;
 *   - loading the manifest of a 1 TiB model (1 M regions of 1 MiB): the streaming reader
 *     against the plain JSON.parse reader, each in a process of its own (time, peak RSS, kept);
 *   - with --restore: bench/storage.ts's restore rows alone (model verification off, lazy with
 *     what an earlier start verified, lazy with nothing verified before) against dd.
 *
 *   node dist/bench/model.js [--restore] [--dir DIR] [--regions N] [--disk-mib N]
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { digestOf, SUPPORTED_HASHES, type HashName } from '../appliance/storage/hash-functions.js';
import { HashPool, DEFAULT_HASH_THREADS } from '../appliance/storage/hash-pool.js';
import { Manifest } from '../appliance/storage/manifest.js';
import type { Comparison } from './storage.js';
import { isTmpfs } from './filesystem.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const MiB = 1 << 20;
const GiB = 1 << 30;
const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

export interface HashRow {
  hash: HashName;
  /** One core, hashing 1 MiB buffers on the main thread: MB/s of CPU time (10^6 bytes). */
  perCoreMBps: number;
  cpuSecondsPerGiB: number;
}
export interface PoolRow {
  threads: number;
  /** SHA-256 of 1 MiB regions on the worker pool, wall clock: MB/s. */
  MBps: number;
  cpuSecondsPerGiB: number;
}
export interface ManifestLoadRow {
  mode: 'stream' | 'plain';
  regions: number;
  fileMB: number;
  ms: number;
  cpuMs: number;
  peakRssMB: number;
  rssBeforeMB: number;
  keptMB: number;
  error?: string;
}
export interface ModelBenchResult {
  cpu: string;
  cpus: number;
  hashes: HashRow[];
  pool: PoolRow;
  manifest: { regions: number; saveMs: number; fileMB: number; loads: ManifestLoadRow[] };
  restore: Comparison[] | null;
}

function hashPerCore(hash: HashName, totalBytes: number): HashRow {
  const buf = randomFillSync(Buffer.allocUnsafe(MiB));
  digestOf(hash, buf); // warm-up
  const c0 = process.cpuUsage();
  for (let done = 0; done < totalBytes; done += MiB) digestOf(hash, buf);
  const c = process.cpuUsage(c0);
  const s = (c.user + c.system) / 1e6;
  return { hash, perCoreMBps: round(totalBytes / 1e6 / s), cpuSecondsPerGiB: round((s * GiB) / totalBytes, 3) };
}

async function hashOnPool(totalBytes: number): Promise<PoolRow> {
  const pool = new HashPool();
  try {
    const chunk = 4 * MiB;
    const bufs = Array.from({ length: pool.threads * 2 }, () => randomFillSync(Buffer.from(new SharedArrayBuffer(chunk))));
    await Promise.all(bufs.map((b) => pool.digestRegions('sha256', b, MiB))); // start the workers
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    let next = 0;
    const n = Math.ceil(totalBytes / chunk);
    await Promise.all(
      bufs.map(async (b) => {
        while (next < n) {
          next++;
          await pool.digestRegions('sha256', b, MiB);
        }
      }),
    );
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    return { threads: pool.threads, MBps: round((n * chunk) / 1e6 / s), cpuSecondsPerGiB: round(((c.user + c.system) / 1e6) * (GiB / (n * chunk)), 3) };
  } finally {
    await pool.close();
  }
}

function lastLine(text: string | undefined): string | undefined {
  const lines = (text ?? '').split('\n').filter((l) => l.trim() !== '' && !/^\s+at /.test(l));
  return lines[lines.length - 1];
}

function loadInChild(path: string, mode: 'stream' | 'plain'): ManifestLoadRow {
  const fileMB = round(statSync(path).size / 1e6);
  try {
    const out = execFileSync(process.execPath, ['--expose-gc', join(here, 'manifest-load-entry.js'), path, mode], { encoding: 'utf8', maxBuffer: 1 << 20 });
    const r = JSON.parse(out.trim().split('\n').pop()!) as ManifestLoadRow;
    return { mode, regions: r.regions, fileMB, ms: round(r.ms), cpuMs: round(r.cpuMs), peakRssMB: round(r.peakRssMB), rssBeforeMB: round(r.rssBeforeMB), keptMB: round(r.keptMB) };
  } catch (err) {
    return { mode, regions: 0, fileMB, ms: NaN, cpuMs: NaN, peakRssMB: NaN, rssBeforeMB: NaN, keptMB: NaN, error: lastLine((err as { stderr?: string }).stderr) ?? (err as Error).message.split('\n')[0]! };
  }
}

export interface ModelBenchOptions {
  dir: string;
  /** Regions of the big manifest (default 1 M: a 1 TiB model at 1 MiB regions). */
  regions?: number;
  /** Bytes hashed per hash and core (default 512 MiB). */
  hashBytes?: number;
  /** Run the restore rows (bench/storage.ts) too, on a disk of this size. */
  restoreDiskBytes?: number | null;
  progress?: (line: string) => void;
}

export async function runModelBench(opts: ModelBenchOptions): Promise<ModelBenchResult> {
  const progress = opts.progress ?? ((s: string) => process.stderr.write(`${s}\n`));
  const dir = join(opts.dir, `model-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    const hashBytes = opts.hashBytes ?? 512 * MiB;
    progress('model bench: hash throughput per core');
    const hashes = SUPPORTED_HASHES.map((h) => hashPerCore(h, hashBytes));
    progress(`  SHA-256 on the hash worker pool (${DEFAULT_HASH_THREADS} threads)`);
    const pool = await hashOnPool(2 * hashBytes);

    const regions = opts.regions ?? 1 << 20;
    progress(`  a manifest of ${regions.toLocaleString('en')} regions: save, then load streamed and plain`);
    const manifestPath = join(dir, 'big.manifest.json');
    const digests = randomFillSync(Buffer.allocUnsafe(regions * 32));
    const m = Manifest.fromDigests({ name: 'bench', size: regions * MiB, regionSize: MiB, hash: 'sha256', createdAt: new Date().toISOString(), image: { size: regions * MiB, mtimeMs: 0, ino: 0 } }, digests);
    const t0 = process.hrtime.bigint();
    await m.save(manifestPath);
    const saveMs = round(Number(process.hrtime.bigint() - t0) / 1e6);
    const loads = [loadInChild(manifestPath, 'stream'), loadInChild(manifestPath, 'plain')];
    for (const l of loads) if (!l.error && l.regions !== regions) l.error = `loaded ${l.regions} regions`;

    let restore: Comparison[] | null = null;
    if (opts.restoreDiskBytes) {
      const storage = await import('./storage.js');
      progress(`  restores with model verification against dd (${opts.restoreDiskBytes / MiB} MiB disk)`);
      const f = await storage.makeFiles(join(dir, 'restore'), opts.restoreDiskBytes);
      const st = await storage.makeState(f, 64 * 1024);
      restore = await storage.restoreFigures(f, st, [1, 10, 100], 3, (s) => progress(s));
    }
    return { cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length, hashes, pool, manifest: { regions, saveMs, fileMB: round(statSync(manifestPath).size / 1e6), loads }, restore };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '–');

export function modelMarkdown(r: ModelBenchResult): string {
  const L: string[] = [];
  L.push(`### Model: hashing and manifests (${r.cpus} × ${r.cpu})`);
  L.push('');
  L.push('| hash | one core, MB/s | CPU s per GiB |');
  L.push('|---|---|---|');
  for (const h of r.hashes) L.push(`| ${h.hash} | ${fmt(h.perCoreMBps, 0)} | ${fmt(h.cpuSecondsPerGiB, 2)} |`);
  L.push(`| sha256 on the hash worker pool (${r.pool.threads} threads, wall clock) | ${fmt(r.pool.MBps, 0)} | ${fmt(r.pool.cpuSecondsPerGiB, 2)} |`);
  L.push('');
  L.push(`Manifest of ${r.manifest.regions.toLocaleString('en')} regions (a ${fmt((r.manifest.regions * MiB) / 2 ** 40, 2)} TiB model at 1 MiB regions; ${fmt(r.manifest.fileMB)} MB file, saved in ${fmt(r.manifest.saveMs, 0)} ms), each load in a process of its own:`);
  L.push('');
  L.push('| reader | load ms | CPU ms | peak RSS MB (before) | kept MB |');
  L.push('|---|---|---|---|---|');
  for (const l of r.manifest.loads) {
    L.push(l.error ? `| ${l.mode} | failed: ${l.error} | | | |` : `| ${l.mode === 'stream' ? 'streaming (Manifest.load)' : 'plain JSON.parse (the earlier reader)'} | ${fmt(l.ms, 0)} | ${fmt(l.cpuMs, 0)} | ${fmt(l.peakRssMB, 0)} (${fmt(l.rssBeforeMB, 0)}) | ${fmt(l.keptMB, 1)} |`);
  }
  if (r.restore) {
    L.push('');
    L.push('| restore | snapback | dd | ratio | CPU | target | |');
    L.push('|---|---|---|---|---|---|---|');
    for (const c of r.restore) {
      const hashed = c.extra?.hashedMiB !== undefined ? ` (${c.extra.hashedMiB} MiB of model hashed)` : '';
      const one = c.extra?.ratioVsDdOneRun;
      const oneText = one !== undefined && one !== '' ? ` (${fmt(Number(one), 2)}× against one dd)` : '';
      L.push(`| ${c.label}${hashed} | ${fmt(c.snapbackMs)} ms | ${fmt(c.baselineMs)} ms: ${c.baseline} | **${fmt(c.ratio, 2)}×**${oneText} | ${fmt(c.cpuRatio, 2)}× | ≥ ${c.target ?? '–'} | ${c.pass === null ? '' : c.pass ? 'pass' : '**MISS**'} |`);
    }
  }
  L.push('');
  return L.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.env.LOG_LEVEL ??= 'warn';
  const { values } = parseArgs({ options: { restore: { type: 'boolean', default: false }, dir: { type: 'string' }, regions: { type: 'string' }, 'disk-mib': { type: 'string' } } });
  const dir = values.dir ?? (isTmpfs('/dev/shm') ? '/dev/shm' : tmpdir());
  runModelBench({
    dir,
    ...(values.regions ? { regions: Number(values.regions) } : {}),
    restoreDiskBytes: values.restore ? Number(values['disk-mib'] ?? 1024) * MiB : null,
  })
    .then((r) => process.stdout.write(modelMarkdown(r) + '\n' + JSON.stringify(r) + '\n'))
    .catch((err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
}
