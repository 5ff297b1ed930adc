/**
 * `npm run bench` (node dist/bench/run.js): the benchmark, in parts.
 *
 *   node dist/bench/run.js [storage] [model] [models] [memory] [nbd] [fleet] [--quick] [--no-ext4] [--no-memory] [--no-study] [--only W,W] [--dir DIR]
 *   npm run bench -- storage --only first-touch
 *
 * With no part named, every part runs. Parts:
 *   storage  the storage benchmark (bench/storage.ts) on tmpfs, then a smaller run of it on the
 *            disk-backed filesystem of os.tmpdir() for the cost of fsync; `--only` picks its
 *            workloads (seq, first-touch, restore, session-end, study)
 *   model    hashing per core and the manifest of a 1 TiB model (bench/model.ts); the restore
 *            rows with model verification are the storage part's
 *   models   the model library (bench/models.ts): SHA-256 and BLAKE3 on one core, the manifest
 *            of a 64 GiB sparse image, import over HTTP against curl, the first read of a lazy
 *            model, a switch between models against a full copy
 *   memory   the daemon's memory on sparse 64 GiB and 1 TiB disks (bench/memory-scale.ts)
 *   nbd      the NBD benchmark (bench/nbd-peers.ts) if it is there, serving the protected disk
 *   fleet    the console with 1,000 simulated appliances over one mosquitto (bench/fleet.ts): a
 *            group command's round trip, the console's RSS, the fleet page's render time
 *
 * Each part writes its own results and latest.md/latest.json are assembled from every part's
 * latest (bench/results-files.ts), so a run of one part keeps the others' last figures. The
 * Markdown goes to stdout too; progress to stderr.
 *
 * Why tmpfs for the main figures: on this kernel, buffered overwrites of an ext4 file vary by
 * up to 10x from one run to the next (writeback and journal timing), which swamps the
 * differences being measured; tmpfs is steady, so the ratios are the engine's own overhead.
 * The ext4 run is reported for what tmpfs hides: the cost of the write log's fdatasync.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { parseArgs } from 'node:util';
import { writePartResults, writePartialRun } from './results-files.js';
import { isTmpfs } from './filesystem.js';

// Library code logs through pino to stdout; stdout here is the Markdown summary.
process.env.LOG_LEVEL ??= 'warn';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const PARTS = ['storage', 'model', 'models', 'memory', 'nbd', 'fleet'] as const;
type Part = (typeof PARTS)[number];

interface Args {
  quick: boolean;
  noExt4: boolean;
  noStudy: boolean;
  only: string[] | null;
  dir: string | undefined;
}

async function runStorage(a: Args, tag: string): Promise<string[]> {
  const storage = await import('./storage.js');
  const started = new Date();
  const only = a.only ? a.only.map((w) => {
    if (!(storage.STORAGE_WORKLOADS as readonly string[]).includes(w)) throw new Error(`--only ${w}: not a storage workload (${storage.STORAGE_WORKLOADS.join(', ')})`);
    return w as (typeof storage.STORAGE_WORKLOADS)[number];
  }) : undefined;
  const mainDir = a.dir ? resolve(a.dir, tag) : isTmpfs('/dev/shm') ? join('/dev/shm', tag) : join(tmpdir(), tag);
  const tmpfs = await storage.runStorageBench({
    dir: mainDir,
    label: isTmpfs(dirname(mainDir)) ? 'tmpfs (/dev/shm)' : dirname(mainDir),
    ...(a.quick ? { diskBytes: 256 << 20, trials: 3, sessionEndCounts: [1e3, 1e5], studyRegionSizes: [] } : {}),
    ...(a.noStudy ? { studyRegionSizes: [] } : {}),
    ...(only ? { only } : {}),
  });
  let disk: Awaited<ReturnType<typeof storage.runStorageBench>> | null = null;
  const diskDir = join(tmpdir(), tag);
  if (!a.noExt4 && !isTmpfs(tmpdir())) {
    try {
      disk = await storage.runStorageBench({
        dir: diskDir,
        label: `${tmpdir()} (fsync cost)`,
        diskBytes: 256 << 20,
        studyRegionSizes: [],
        trials: 3,
        sessionEndCounts: a.quick ? [1e3] : [1e3, 1e5, 1e6],
        ...(only ? { only } : {}),
      });
    } catch (err) {
      process.stderr.write(`disk-backed run failed: ${(err as Error).stack ?? String(err)}\n`);
    }
  }
  const durationS = Math.round((Date.now() - started.getTime()) / 100) / 10;
  const result = { startedAt: started.toISOString(), durationS, quick: a.quick, only: only ?? null, tmpfs, disk };
  const md = [`### Storage (${started.toISOString()}; Node ${process.version}, ${tmpfs.env.cpus} × ${tmpfs.env.cpu}, kernel ${tmpfs.env.kernel}; ${durationS} s${a.quick ? '; quick' : ''}${only ? `; only ${only.join(', ')}` : ''})`, ''];
  md.push(storage.storageMarkdown(tmpfs).replace(/^### /, '#### '));
  if (disk) md.push(storage.storageMarkdown(disk).replace(/^### /, '#### '));
  // a run of some workloads only must not replace the last full run's figures
  process.stdout.write(only ? writePartialRun('storage', result, md.join('\n')) : writePartResults('storage', result, md.join('\n')));
  return [tmpfs, ...(disk ? [disk] : [])].flatMap((r) => r.comparisons.filter((c) => c.pass === false).map((c) => `${r.label}: ${c.id}`));
}

async function runModel(a: Args): Promise<void> {
  const mb = await import('./model.js');
  const started = new Date();
  const dir = a.dir ? resolve(a.dir) : isTmpfs('/dev/shm') ? '/dev/shm' : tmpdir();
  try {
    const model = await mb.runModelBench({ dir, ...(a.quick ? { hashBytes: 128 << 20, regions: 1 << 18 } : {}) });
    process.stdout.write(writePartResults('model', { startedAt: started.toISOString(), ...model }, mb.modelMarkdown(model)));
  } catch (err) {
    process.stderr.write(`model bench failed: ${(err as Error).stack ?? String(err)}\n`);
  }
}

/** The model library (bench/models.ts), on the disk-backed temporary directory as on the appliance's disk. */
async function runModels(a: Args): Promise<void> {
  const mb = await import('./models.js');
  const started = new Date();
  const dir = a.dir ? resolve(a.dir) : isTmpfs(tmpdir()) ? '/var/tmp' : tmpdir();
  try {
    const r = await mb.runModelsBench({ dir, quick: a.quick });
    process.stdout.write(writePartResults('models', { startedAt: started.toISOString(), ...r }, mb.modelsMarkdown(r)));
  } catch (err) {
    process.stderr.write(`models bench failed: ${(err as Error).stack ?? String(err)}\n`);
  }
}

/** The daemon's memory on sparse 64 GiB and 1 TiB disks (bench/memory-scale.ts). */
async function runMemory(a: Args, tag: string): Promise<void> {
  const started = new Date();
  const base = a.dir ? resolve(a.dir) : isTmpfs('/dev/shm') ? '/dev/shm' : tmpdir();
  try {
    const ms = await import('./memory-scale.js');
    const memory = await ms.runMemoryScale({ dir: join(base, `${tag}-memory`), ...(a.quick ? { sizes: [64 * 2 ** 30] } : {}) });
    process.stdout.write(writePartResults('memory', { startedAt: started.toISOString(), runs: memory.runs, parts: memory.parts }, memory.markdown));
  } catch (err) {
    process.stderr.write(`memory bench failed: ${(err as Error).stack ?? String(err)}\n`);
  }
}

/** The NBD benchmark is another module's (bench/nbd-peers.ts); it runs if it is there. */
async function runNbd(a: Args): Promise<void> {
  const peers = join(here, 'nbd-peers.js');
  if (!existsSync(peers)) {
    process.stderr.write('nbd: bench/nbd-peers.ts is not built; skipped\n');
    return;
  }
  const mod = (await import(pathToFileURL(peers).href)) as { runNbdBench?: unknown };
  if (typeof mod.runNbdBench !== 'function') return;
  // Our server runs in a child process, so the protected disk goes by module: storage.js
  // exports makeDevice(imagePath).
  const storage = await import('./storage.js');
  const runNbdBench = mod.runNbdBench as (opts: Record<string, unknown>) => Promise<{ markdown?: string }>;
  process.stderr.write('nbd bench (bench/nbd-peers.ts), our server serving the protected disk\n');
  const started = new Date();
  let nbd: Record<string, unknown>;
  let markdown = '';
  try {
    const r = await runNbdBench({
      makeDevice: storage.makeDevice,
      deviceModule: join(here, 'storage.js'),
      ...(a.quick ? { rounds: 1, imageBytes: 256 << 20, fioSeconds: 2 } : {}),
    });
    markdown = typeof r.markdown === 'string' ? r.markdown : '';
    nbd = { ...(r as Record<string, unknown>), markdown: undefined };
  } catch (err) {
    process.stderr.write(`nbd bench failed: ${(err as Error).stack ?? String(err)}\n`);
    nbd = { error: (err as Error).message };
    markdown = `### NBD server\n\nThe NBD benchmark failed: ${(err as Error).message}\n`;
  }
  const env = `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, kernel ${release()}`;
  process.stdout.write(writePartResults('nbd', { startedAt: started.toISOString(), env, ...nbd }, markdown || `### NBD server\n\n(no figures)\n`));
}

/** The console with 1,000 simulated appliances (bench/fleet.ts); `--quick`: 200 of them. */
async function runFleet(a: Args): Promise<void> {
  const fb = await import('./fleet.js');
  const started = new Date();
  const load = loadavg().map((l) => l.toFixed(2)).join(' ');
  try {
    const r = await fb.runFleetBench(a.quick ? { appliances: 200, processes: 2, trials: 2 } : {});
    process.stdout.write(writePartResults('fleet', { startedAt: started.toISOString(), loadBefore: load, ...r }, fb.fleetMarkdown(r, load)));
  } catch (err) {
    process.stderr.write(`fleet bench failed: ${(err as Error).stack ?? String(err)}\n`);
  }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      'no-ext4': { type: 'boolean', default: false },
      'no-nbd': { type: 'boolean', default: false },
      'no-memory': { type: 'boolean', default: false },
      'no-study': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      dir: { type: 'string' },
    },
  });
  for (const p of positionals) if (!(PARTS as readonly string[]).includes(p)) throw new Error(`unknown part "${p}" (parts: ${PARTS.join(', ')})`);
  let parts: Part[] = positionals.length ? (positionals as Part[]) : [...PARTS];
  if (values['no-nbd']) parts = parts.filter((p) => p !== 'nbd');
  if (values['no-memory']) parts = parts.filter((p) => p !== 'memory');
  const a: Args = { quick: values.quick === true, noExt4: values['no-ext4'] === true, noStudy: values['no-study'] === true, only: values.only ? values.only.split(',').map((x) => x.trim()).filter(Boolean) : null, dir: values.dir };
  const tag = `snapback-bench-${process.pid}`;
  const missed: string[] = [];
  if (parts.includes('storage')) missed.push(...(await runStorage(a, tag)));
  if (parts.includes('model')) await runModel(a);
  if (parts.includes('models')) await runModels(a);
  if (parts.includes('memory')) await runMemory(a, tag);
  if (parts.includes('nbd')) await runNbd(a);
  if (parts.includes('fleet')) await runFleet(a);
  if (missed.length) process.stderr.write(`targets missed: ${missed.join(', ')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
