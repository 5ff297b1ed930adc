/**
 * The storage benchmark: the protected disk against plain positional
 * writes to the same file, the hydrator against `dd` of the same bytes, and session end at
 * 10^3, 10^5 and 10^6 changed regions — in one run, on the same files.
 *
 * Files (all under opts.dir):
 *   model.img (+ .manifest.json)  a 1 GiB model: a 16 MiB random pattern repeated, so that
 *                                 writing pattern bytes at any aligned offset leaves the disk
 *                                 equal to the model (see "fresh state" below)
 *   disk.img                      the working disk, a copy of the model
 *   state-<size>/                 one state directory per region size (`initEngine`, disk
 *                                 verified equal to the model, so every region starts clean)
 *   se-disk.img, se-model.img     4 GiB sparse files for the session-end workload
 *
 * A fresh state: the write workloads write the model's own bytes, so the disk still equals the
 * model afterwards and putting back the all-clean write log saved right after init is the
 * truth, not a shortcut. The restore workloads write other bytes, end the session and restore:
 * the disk equals the model again when they finish (spot-checked).
 *
 * Timing: process.hrtime.bigint() around the I/O only (engine open/close excluded), and the
 * process's CPU time beside it (a shared machine inflates it far less than wall time); every
 * write figure ends with a flush on both sides (durable throughput). Snapback and baseline
 * trials run in back-to-back pairs, alternating which goes first; a ratio is the median of
 * the pairs' ratios. Session end is timed after a full GC (the marks before it leave 10^6
 * settled promises), and its write-log I/O is counted: one header write and one flush at any
 * number of changed regions is the O(1) that timing on a busy machine can only suggest.
 */
import { copyFileSync, existsSync, mkdirSync, openSync, closeSync, ftruncateSync, writeSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join, dirname, basename } from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { cpus, release, loadavg } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FileDevice } from '../appliance/storage/file-device.js';
import { createManifest, manifestPathFor } from '../appliance/storage/manifest.js';
import { RegionLog, logFileSize } from '../appliance/storage/region-log.js';
import { ProtectedDisk } from '../appliance/storage/protected-disk.js';
import { initEngine, openEngine, verifiedDirOf, DEFAULT_REGION_SIZE, type Engine } from '../appliance/storage/engine.js';
import { StateDir } from '../appliance/storage/state-dir.js';
import { formatSize } from '../appliance/storage/sizes.js';
import type { BlockDevice, DeviceCapabilities, DirectWrite, WriteOptions, ZeroOptions } from '../appliance/storage/block-device.js';
import type { InlineIo } from '../appliance/storage/inline-io.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const PATTERN_BYTES = 16 * MiB;
/** Untimed rounds before the write figures: the protected disk's path takes two or three to reach steady speed. */
const WARMUP = 2;

// ---- options and results -------------------------------------------------------------------

export interface StorageBenchOptions {
  /** Where the files go (tmpfs recommended: /dev/shm). Created if missing; removed afterwards unless keepFiles. */
  dir: string;
  /** Size of the model and working disk (default 1 GiB). */
  diskBytes?: number;
  /** Region size of the main figures (default: engine's DEFAULT_REGION_SIZE). */
  regionSize?: number;
  /** Region sizes of the region-size study; [] skips it (default 4K, 16K, 64K, 256K, 1M). */
  studyRegionSizes?: number[];
  /** Changed-region counts of the session-end workload (default 10^3, 10^5, 10^6). */
  sessionEndCounts?: number[];
  /** Timed trials per write figure (default 7, after two untimed warm-up rounds; medians reported). */
  trials?: number;
  /** Free text naming the run (e.g. "tmpfs"). */
  label?: string;
  keepFiles?: boolean;
  /** Progress lines (default: stderr). */
  progress?: (line: string) => void;
  /** Only these workloads (default all): seq, first-touch, restore, session-end, study. */
  only?: readonly StorageWorkload[];
}

export const STORAGE_WORKLOADS = ['seq', 'first-touch', 'restore', 'session-end', 'study'] as const;
export type StorageWorkload = (typeof STORAGE_WORKLOADS)[number];

export interface Comparison {
  id: string;
  label: string;
  bytes: number;
  ops: number;
  /** Medians (ms). */
  snapbackMs: number;
  baselineMs: number;
  baseline: string;
  snapbackMiBps: number;
  baselineMiBps: number;
  /** Throughput ratio snapback / baseline: the median over trials of baselineMs / snapbackMs (each pair ran back to back). */
  ratio: number;
  /** The same ratio of CPU time (baseline CPU / snapback CPU): less sensitive to a busy machine. */
  cpuRatio: number;
  /** Fastest baseline trial / fastest snapback trial. */
  bestRatio: number;
  target: number | null;
  pass: boolean | null;
  samples: { snapbackMs: number[]; baselineMs: number[]; snapbackCpuMs: number[]; baselineCpuMs: number[] };
  extra?: Record<string, number | string>;
}

export interface SessionEndFigure {
  changedRegions: number;
  regionSize: number;
  diskBytes: number;
  medianMs: number;
  maxMs: number;
  samplesMs: number[];
  /** Writes, bytes and flushes the write log received during the last session end. */
  logIo: { writes: number; bytes: number; flushes: number };
}

export interface RegionSizeRow {
  regionSize: number;
  regionCount: number;
  seq: { ratio: number; cpuRatio: number; snapbackMiBps: number; plainMiBps: number; logCommits: number };
  firstTouch: { writes: number; ratio: number; cpuRatio: number; snapbackIops: number; plainIops: number; logCommits: number };
  restore10: { regions: number; bytes: number; ms: number; ddMs: number; ratio: number; cpuRatio: number; ddRuns: number };
  random4k: { writes: number; ratio: number; cpuRatio: number; regionsDirtied: number; restoreBytes: number; amplification: number; restoreMs: number };
  merge4k: { writes: number; snapbackMs: number; plainMs: number; ratio: number; usPerWrite: number };
  log256GiB: { regionCount: number; logBytes: number; memoryBytes: number; openMs: number };
}

export interface StorageBenchResult {
  label: string;
  dir: string;
  filesystem: string;
  startedAt: string;
  durationS: number;
  env: { node: string; kernel: string; cpu: string; cpus: number; loadAvgAtStart: number[]; loadAvgAtEnd: number[] };
  diskBytes: number;
  regionSize: number;
  comparisons: Comparison[];
  sessionEnd: SessionEndFigure[];
  sessionEndPass: boolean;
  regionSizeStudy: RegionSizeRow[];
}

// ---- small tools -----------------------------------------------------------------------------

const now = (): bigint => process.hrtime.bigint();
const msSince = (t0: bigint): number => Number(now() - t0) / 1e6;

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** mulberry32: a small seeded PRNG, so region choices are the same in every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(n: number, rnd: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

/**
 * One timed run: wall time, and the CPU time of this process (every thread, user + system),
 * which a busy shared machine inflates far less than wall time.
 */
export interface Sample {
  ms: number;
  cpuMs: number;
}

async function measure(fn: () => Promise<void>): Promise<Sample> {
  const c0 = process.cpuUsage();
  const t0 = now();
  await fn();
  const ms = msSince(t0);
  const c = process.cpuUsage(c0);
  return { ms, cpuMs: (c.user + c.system) / 1000 };
}

/** Runs op(0..n-1) with `depth` in flight, then `after` (e.g. a flush), timed. */
function timed(n: number, depth: number, op: (i: number) => Promise<void>, after?: () => Promise<void>): Promise<Sample> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) await op(next++);
  };
  return measure(async () => {
    await Promise.all(Array.from({ length: Math.min(depth, n) }, worker));
    if (after) await after();
  });
}

function fsName(path: string): string {
  const t = statfsSync(path).type;
  if (t === 0x01021994) return 'tmpfs';
  if (t === 0xef53) return 'ext4';
  if (t === 0x58465342) return 'xfs';
  if (t === 0x9123683e) return 'btrfs';
  return `0x${t.toString(16)}`;
}

/**
 * A full GC, then a turn of the event loop: the garbage of the work before a timed step (10^6
 * region marks leave 10^6 settled promises) is collected before the step, not during it.
 */
let gcFn: (() => void) | null = null;
async function settle(): Promise<void> {
  if (!gcFn) {
    setFlagsFromString('--expose-gc');
    gcFn = runInNewContext('gc') as () => void;
  }
  gcFn();
  await new Promise<void>((res) => setTimeout(res, 50)); // lets concurrent sweeping finish too
}

/** Median of per-trial ratios baseline[i] / snapback[i]: each pair ran back to back, under the same load. */
function pairRatio(baseline: readonly Sample[], snapback: readonly Sample[], key: 'ms' | 'cpuMs' = 'ms'): number {
  const n = Math.min(baseline.length, snapback.length);
  return median(Array.from({ length: n }, (_, i) => baseline[i]![key] / snapback[i]![key]));
}
const medianMs = (xs: readonly Sample[]): number => median(xs.map((x) => x.ms));

const mibps = (bytes: number, ms: number): number => bytes / MiB / (ms / 1000);
const round = (x: number, d = 3): number => Math.round(x * 10 ** d) / 10 ** d;

/** Counts the write log's commits (FUA writes, and flushes: header writes) of an open engine. */
function countLogFlushes(log: RegionLog): { readonly count: number } {
  const dev = (log as unknown as { dev: BlockDevice }).dev;
  const counter = { count: 0 };
  const flush = dev.flush.bind(dev);
  const write = dev.write.bind(dev);
  dev.flush = async () => {
    counter.count++;
    await flush();
  };
  dev.write = async (offset: number, data: Buffer, options?: WriteOptions) => {
    if (options?.fua) counter.count++;
    await write(offset, data, options);
  };
  return counter;
}

// ---- the files -------------------------------------------------------------------------------

export interface Files {
  dir: string;
  model: string;
  disk: string;
  size: number;
  /** The model's repeating content; writing pattern bytes keeps the disk equal to the model. */
  pattern: Buffer;
  /** Other bytes (the "host's changes" that restores undo). */
  other: Buffer;
}

export interface State {
  dir: string;
  regionSize: number;
  regionCount: number;
  logPath: string;
  pristineLog: string;
}

function modelBytes(f: Files, offset: number, length: number): Buffer {
  const o = offset % PATTERN_BYTES;
  if (o + length > PATTERN_BYTES) throw new Error(`pattern slice ${offset}+${length} crosses the pattern's end`);
  return f.pattern.subarray(o, o + length);
}
function otherBytes(f: Files, offset: number, length: number): Buffer {
  const o = offset % PATTERN_BYTES;
  return f.other.subarray(o, o + length);
}

export async function makeFiles(dir: string, size: number): Promise<Files> {
  mkdirSync(dir, { recursive: true });
  const pattern = Buffer.allocUnsafe(PATTERN_BYTES);
  randomFillSync(pattern);
  const other = Buffer.allocUnsafe(PATTERN_BYTES);
  randomFillSync(other);
  const model = join(dir, 'model.img');
  const disk = join(dir, 'disk.img');
  for (const p of [model, disk]) {
    const fd = openSync(p, 'w', 0o600);
    for (let off = 0; off < size; off += PATTERN_BYTES) writeSync(fd, pattern, 0, Math.min(PATTERN_BYTES, size - off), off);
    closeSync(fd);
  }
  const manifest = await createManifest(model);
  await manifest.save(manifestPathFor(model));
  return { dir, model, disk, size, pattern, other };
}

export async function makeState(f: Files, regionSize: number): Promise<State> {
  const dir = join(f.dir, `state-${regionSize / KiB}K`);
  rmSync(dir, { recursive: true, force: true });
  const r = await initEngine({ stateDir: dir, model: f.model, disk: f.disk, regionSize, diskMatchesModel: true });
  if (r.pendingRegions !== 0) throw new Error(`state at ${regionSize}: ${r.pendingRegions} regions pending after init`);
  const logPath = new StateDir(dir).logPath;
  const pristineLog = join(dir, 'write-log.clean');
  copyFileSync(logPath, pristineLog);
  return { dir, regionSize, regionCount: r.regionCount, logPath, pristineLog };
}

/** Puts back the all-clean log (truthful: the disk equals the model, see the header) and opens. */
async function freshEngine(st: State, verifyModel: 'lazy' | 'off' = 'lazy'): Promise<Engine> {
  copyFileSync(st.pristineLog, st.logPath);
  return openEngine(st.dir, { verifyModel });
}

async function withPlain<T>(f: Files, fn: (dev: FileDevice) => Promise<T>): Promise<T> {
  const dev = new FileDevice(f.disk);
  await dev.open();
  try {
    return await fn(dev);
  } finally {
    await dev.close();
  }
}

/** Checks a sample of regions: the disk must equal the model there. */
async function spotCheck(f: Files, regions: readonly number[], regionSize: number): Promise<void> {
  const step = Math.max(1, Math.floor(regions.length / 32));
  await withPlain(f, async (dev) => {
    for (let i = 0; i < regions.length; i += step) {
      const off = regions[i]! * regionSize;
      const got = await dev.read(off, regionSize);
      if (!got.equals(modelBytes(f, off, regionSize))) throw new Error(`restore check: region ${regions[i]} (${regionSize} B) differs from the model`);
    }
  });
}

/**
 * The write comparisons' trials: each writes once through a plain FileDevice and once through
 * ProtectedDisk on a fresh engine, alternating which goes first. The first WARMUP trials warm up
 * (JIT, heap, page cache) and are not counted; `commits` is the last trial's log commits.
 */
async function writeTrials(
  f: Files,
  st: State,
  trials: number,
  plainRun: (dev: FileDevice) => Promise<Sample>,
  pdRun: (e: Engine) => Promise<Sample>,
): Promise<{ pd: Sample[]; plain: Sample[]; commits: number }> {
  const pd: Sample[] = [];
  const plain: Sample[] = [];
  let commits = 0;
  for (let t = 0; t < trials + WARMUP; t++) {
    const plainFirst = t % 2 === 0;
    const runPlain = async () => {
      const x = await withPlain(f, plainRun);
      if (t >= WARMUP) plain.push(x);
    };
    if (plainFirst) await runPlain();
    const e = await freshEngine(st);
    const c = countLogFlushes(e.log);
    try {
      const x = await pdRun(e);
      if (t >= WARMUP) pd.push(x);
      commits = c.count;
    } finally {
      await e.close();
    }
    if (!plainFirst) await runPlain();
  }
  return { pd, plain, commits };
}

// ---- (a) sequential 1 MiB writes ------------------------------------------------------------

async function seqWrites(f: Files, st: State, trials: number, depth = 8, io = MiB): Promise<Comparison & { logCommits: number }> {
  const n = Math.floor(f.size / io);
  const { pd, plain, commits } = await writeTrials(
    f,
    st,
    trials,
    (dev) => timed(n, depth, (i) => dev.write(i * io, modelBytes(f, i * io, io)), () => dev.flush()),
    (e) => timed(n, depth, (i) => e.pd.write(i * io, modelBytes(f, i * io, io)), () => e.pd.flush()),
  );
  return comparison({
    id: `seq-${io / MiB}M-qd${depth}`,
    label: `sequential ${formatSize(io)} writes, QD ${depth}, whole disk, + flush`,
    bytes: n * io,
    ops: n,
    pd,
    plain,
    baseline: 'FileDevice positional writes, same file, same QD',
    target: 0.9,
    extra: { logCommits: commits, regionSize: st.regionSize },
  }) as Comparison & { logCommits: number };
}

// ---- (b) 4 KiB random first-touch writes ----------------------------------------------------

async function firstTouch(f: Files, st: State, trials: number, maxWrites: number, depth = 32): Promise<Comparison> {
  const rnd = prng(0xf1257 + st.regionSize);
  const n = Math.min(maxWrites, st.regionCount);
  const regions = shuffled(st.regionCount, rnd).slice(0, n);
  const per = st.regionSize / (4 * KiB);
  const offsets = regions.map((r) => r * st.regionSize + Math.floor(rnd() * per) * 4 * KiB);
  const { pd, plain, commits } = await writeTrials(
    f,
    st,
    trials,
    (dev) => timed(n, depth, (i) => dev.write(offsets[i]!, modelBytes(f, offsets[i]!, 4 * KiB)), () => dev.flush()),
    async (e) => {
      const x = await timed(n, depth, (i) => e.pd.write(offsets[i]!, modelBytes(f, offsets[i]!, 4 * KiB)), () => e.pd.flush());
      if (e.log.writtenCount !== n) throw new Error(`first-touch: ${e.log.writtenCount} regions written, expected ${n}`);
      return x;
    },
  );
  return comparison({
    id: `first-touch-4K-qd${depth}`,
    label: `4 KiB random first-touch writes (each to a different clean region), QD ${depth}, + flush`,
    bytes: n * 4 * KiB,
    ops: n,
    pd,
    plain,
    baseline: 'FileDevice positional 4 KiB writes, same offsets, same QD',
    target: 0.5,
    extra: { logCommits: commits, writesPerCommit: round(n / Math.max(1, commits), 1), regionSize: st.regionSize },
  });
}

// ---- (c) restore against dd ------------------------------------------------------------------

interface Run {
  off: number;
  len: number;
}
function runsOf(regions: readonly number[], regionSize: number, size: number): Run[] {
  const sorted = [...regions].sort((a, b) => a - b);
  const runs: Run[] = [];
  for (const r of sorted) {
    const off = r * regionSize;
    const len = Math.min(regionSize, size - off);
    const last = runs[runs.length - 1];
    if (last && last.off + last.len === off) last.len += len;
    else runs.push({ off, len });
  }
  return runs;
}

/** dd of the same bytes: one dd per contiguous run (or the whole file), all in one shell script. */
function ddRun(f: Files, runs: readonly Run[] | 'whole'): Sample {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines =
    runs === 'whole'
      ? [`dd if=${q(f.model)} of=${q(f.disk)} bs=1M conv=notrunc,fdatasync status=none`]
      : runs.map((r) => `dd if=${q(f.model)} of=${q(f.disk)} bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes skip=${r.off} seek=${r.off} count=${r.len} conv=notrunc,fdatasync status=none`);
  const script = join(f.dir, 'dd.sh');
  // `times` prints the CPU time of the shell and then of its children (the dd processes)
  writeFileSync(script, `set -e\n${lines.join('\n')}\ntimes\n`);
  const t0 = now();
  const res = spawnSync('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = msSince(t0);
  if (res.status !== 0) throw new Error(`dd failed: ${res.stderr?.toString() ?? res.status}`);
  const secs = [...res.stdout.toString().matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
  const cpuMs = secs.reduce((a, b) => a + b, 0) * 1000;
  return { ms, cpuMs };
}

/** Writes the host's changes (other bytes) to the regions through the protected disk. */
async function dirtyRegions(f: Files, e: Engine, regions: readonly number[], regionSize: number): Promise<void> {
  const all = regions.length === e.log.regionCount;
  if (all) {
    const n = Math.ceil(f.size / MiB);
    await timed(n, 8, (i) => e.pd.write(i * MiB, otherBytes(f, i * MiB, Math.min(MiB, f.size - i * MiB))));
  } else {
    // descending: a random order may now and then write region r+1 right after r, which the
    // protected disk takes for a sequential stream and marks clean regions ahead (by design:
    // over-marking costs restore work only); the figures compare the same bytes as dd's
    const desc = [...regions].sort((a, b) => b - a);
    const chunk = Math.min(regionSize, MiB);
    const per = regionSize / chunk;
    await timed(desc.length * per, 32, (i) => {
      const off = desc[Math.floor(i / per)]! * regionSize + (i % per) * chunk;
      return e.pd.write(off, otherBytes(f, off, chunk));
    });
  }
  await e.pd.flush();
}

async function dirtyPlain(f: Files, runs: readonly Run[]): Promise<void> {
  await withPlain(f, async (dev) => {
    for (const r of runs) for (let o = r.off; o < r.off + r.len; o += MiB) await dev.write(o, otherBytes(f, o, Math.min(MiB, r.off + r.len - o)));
    await dev.flush();
  });
}

/**
 * Model verification in a restore: 'off'; 'lazy' with what an earlier start verified kept in the
 * state directory (init verified the whole model: a daemon start after it); 'cold', the same
 * with that record removed first, so every region the restore touches is hashed.
 */
type RestoreVerify = 'off' | 'lazy' | 'cold';

async function restoreOnce(f: Files, st: State, regions: readonly number[], verify: RestoreVerify, hashed?: number[]): Promise<Sample> {
  if (verify === 'cold') rmSync(verifiedDirOf(new StateDir(st.dir)), { recursive: true, force: true });
  const e = await freshEngine(st, verify === 'off' ? 'off' : 'lazy');
  try {
    await dirtyRegions(f, e, regions, st.regionSize);
    await e.pd.endSession({ keepWrites: false });
    if (e.log.pendingCount !== regions.length) throw new Error(`restore: ${e.log.pendingCount} pending, expected ${regions.length}`);
    const sample = await measure(() => e.hydrator.runToCompletion());
    if (e.log.pendingCount !== 0 || e.log.dirtyCount !== 0) throw new Error(`restore left ${e.log.pendingCount} pending, ${e.log.dirtyCount} dirty`);
    hashed?.push(e.model.verificationStats().hashedBytes);
    return sample;
  } finally {
    await e.close();
  }
}

export async function restoreFigures(f: Files, st: State, percents: readonly number[], trials: number, progress: (s: string) => void): Promise<Comparison[]> {
  const out: Comparison[] = [];
  for (const pct of percents) {
    const rnd = prng(0x5e570 + pct);
    const count = Math.max(1, Math.round((st.regionCount * pct) / 100));
    const regions = pct >= 100 ? Array.from({ length: st.regionCount }, (_, i) => i) : shuffled(st.regionCount, rnd).slice(0, count);
    const runs = runsOf(regions, st.regionSize, f.size);
    const bytes = runs.reduce((s, r) => s + r.len, 0);
    const n = trials;
    const lazy: Sample[] = [];
    const cold: Sample[] = [];
    const hashedLazy: number[] = [];
    const hashedCold: number[] = [];
    const off: Sample[] = [];
    const dd: Sample[] = [];
    const ddContig: Sample[] = [];
    for (let t = 0; t < n; t++) {
      progress(`  restore ${pct}% trial ${t + 1}/${n}`);
      off.push(await restoreOnce(f, st, regions, 'off'));
      cold.push(await restoreOnce(f, st, regions, 'cold', hashedCold));
      lazy.push(await restoreOnce(f, st, regions, 'lazy', hashedLazy));
      // a dd process per run: over a thousand of them at 10 %; two trials of that are enough
      if (t < 2 || runs.length < 500) {
        await dirtyPlain(f, runs);
        dd.push(ddRun(f, pct >= 100 ? 'whole' : runs));
      }
      if (pct < 100) {
        await dirtyPlain(f, [{ off: 0, len: bytes }]);
        ddContig.push(ddRun(f, [{ off: 0, len: bytes }]));
      }
    }
    await spotCheck(f, regions, st.regionSize);
    const ddLabel = pct >= 100 ? 'dd of the whole file (bs=1M, fdatasync)' : `dd per contiguous run (${runs.length} dd processes, bs=1M, fdatasync)`;
    const extra: Record<string, number | string> = { regions: regions.length, ddRuns: pct >= 100 ? 1 : runs.length, regionSize: st.regionSize };
    if (ddContig.length) {
      extra.ddOneRunMs = round(median(ddContig.map((x) => x.ms)));
      extra.ratioVsDdOneRun = round(pairRatio(ddContig, off));
    }
    for (const [mode, samples, hashed, what] of [
      ['off', off, [] as number[], 'off'],
      ['lazy', lazy, hashedLazy, 'lazy, regions verified at an earlier start'],
      ['lazy-cold', cold, hashedCold, 'lazy, nothing verified before'],
    ] as const) {
      out.push(
        comparison({
          id: `restore-${pct}pct-verify-${mode}`,
          label: `restore ${pct}% changed regions of ${formatSize(f.size)}, model verification ${what}`,
          bytes,
          ops: regions.length,
          pd: samples,
          plain: dd,
          baseline: ddLabel,
          // cold: every touched 1 MiB model region hashed (SHA-256 costs more CPU than the copy): reported, no target
          target: mode === 'lazy-cold' ? null : 0.9,
          extra: mode === 'off' ? extra : { ...extra, ratioVsDdOneRun: ddContig.length ? round(pairRatio(ddContig, samples)) : '', hashedMiB: round(median(hashed) / MiB, 1) },
        }),
      );
    }
  }
  return out;
}

// ---- (d) session end -------------------------------------------------------------------------

function sparseFile(path: string, size: number): void {
  const fd = openSync(path, 'w', 0o600);
  ftruncateSync(fd, size);
  closeSync(fd);
}

async function sessionEndFigures(dir: string, counts: readonly number[], trials: number, progress: (s: string) => void): Promise<SessionEndFigure[]> {
  const rs = 4 * KiB;
  const regionCount = 1 << 20; // 4 GiB at 4 KiB: room for 10^6 changed regions
  const size = regionCount * rs;
  const diskPath = join(dir, 'se-disk.img');
  const modelPath = join(dir, 'se-model.img');
  const logPath = join(dir, 'se-log.bin');
  sparseFile(diskPath, size);
  sparseFile(modelPath, size);
  const out: SessionEndFigure[] = [];
  for (const n of counts) {
    progress(`  session end at ${n} changed regions`);
    sparseFile(logPath, logFileSize(regionCount));
    const logDev = new FileDevice(logPath);
    const log = await RegionLog.create(logDev, { modelId: '5b'.repeat(32), regionSize: rs, diskSize: size, sessionNumber: 1, sessionStartedAt: Date.now(), mode: 'frozen', restoreMode: 'instant' }, false);
    const disk = new FileDevice(diskPath);
    const model = new FileDevice(modelPath, { readOnly: true });
    await disk.open();
    await model.open();
    const pd = new ProtectedDisk({ disk, model, log });
    const regions = Array.from({ length: n }, (_, i) => Math.floor((i * regionCount) / n));
    const samples: number[] = [];
    // what session end writes to the log: the proof of O(1) that timing on a shared machine is not
    const io = { writes: 0, bytes: 0, flushes: 0 };
    const devWrite = logDev.write.bind(logDev);
    const devFlush = logDev.flush.bind(logDev);
    logDev.write = (offset: number, data: Buffer, options?: WriteOptions) => {
      io.writes++;
      io.bytes += data.length;
      return devWrite(offset, data, options);
    };
    logDev.flush = () => {
      io.flushes++;
      return devFlush();
    };
    let ioAtEnd = { writes: 0, bytes: 0, flushes: 0 };
    try {
      // marking 10^6 regions takes seconds: fewer trials there
      for (let t = 0; t < (n >= 1e6 ? Math.min(trials, 5) : trials); t++) {
        for (const r of regions) log.markForWrite(r);
        await log.commit();
        if (log.writtenCount !== n) throw new Error(`session end: ${log.writtenCount} written, expected ${n}`);
        await settle();
        const before = { ...io };
        const t0 = now();
        await pd.endSession({ keepWrites: false });
        samples.push(msSince(t0));
        ioAtEnd = { writes: io.writes - before.writes, bytes: io.bytes - before.bytes, flushes: io.flushes - before.flushes };
        if (log.writtenCount !== 0 || log.pendingCount !== n) throw new Error(`session end: ${log.pendingCount} pending, expected ${n}`);
        // as the hydrator would: the regions are clean again, ready for the next trial
        for (const r of regions) log.clearRestored(r);
        await log.sync();
      }
    } finally {
      await pd.close();
      await log.close();
      await disk.close();
      await model.close();
    }
    out.push({ changedRegions: n, regionSize: rs, diskBytes: size, medianMs: round(median(samples), 4), maxMs: round(Math.max(...samples), 4), samplesMs: samples.map((x) => round(x, 4)), logIo: ioAtEnd });
  }
  return out;
}

// ---- region-size study -----------------------------------------------------------------------

/** Opens the (all-clean) write log of a 256 GiB disk: what a daemon start costs. */
async function bigLogOpen(dir: string, regionSize: number): Promise<RegionSizeRow['log256GiB']> {
  const diskSize = 256 * GiB;
  const regionCount = Math.ceil(diskSize / regionSize);
  const path = join(dir, `log256-${regionSize}.bin`);
  const bytes = logFileSize(regionCount);
  sparseFile(path, bytes);
  // every bitmap sector carries its checksum: the log is made as init makes it
  await (await RegionLog.create(new FileDevice(path), { modelId: '5b'.repeat(32), regionSize, diskSize, sessionNumber: 1, sessionStartedAt: 0, mode: 'frozen', restoreMode: 'instant' }, false)).close();
  const samples: number[] = [];
  let memoryBytes = 0;
  for (let t = 0; t < 3; t++) {
    const t0 = now();
    const { log } = await RegionLog.open(new FileDevice(path));
    samples.push(msSince(t0));
    memoryBytes = log.memoryBytes;
    await log.close();
  }
  rmSync(path, { force: true });
  return { regionCount, logBytes: bytes, memoryBytes, openMs: round(median(samples), 2) };
}

async function regionSizeRow(f: Files, st: State, trials: number, progress: (s: string) => void): Promise<RegionSizeRow> {
  const rs = st.regionSize;
  progress(`  region size ${formatSize(rs)}: sequential`);
  const seq = (await seqWrites(f, st, trials)) as Comparison;
  progress(`  region size ${formatSize(rs)}: first touch`);
  const ft = await firstTouch(f, st, trials, 4096);
  progress(`  region size ${formatSize(rs)}: restore 10%`);
  const rnd = prng(0x10 + rs);
  const regions10 = shuffled(st.regionCount, rnd).slice(0, Math.round(st.regionCount / 10));
  const runs10 = runsOf(regions10, rs, f.size);
  const bytes10 = runs10.reduce((s, r) => s + r.len, 0);
  const r10: Sample[] = [];
  const dd10: Sample[] = [];
  for (let t = 0; t < Math.max(2, trials - 2); t++) {
    r10.push(await restoreOnce(f, st, regions10, 'off'));
    await dirtyPlain(f, [{ off: 0, len: bytes10 }]);
    dd10.push(ddRun(f, [{ off: 0, len: bytes10 }]));
  }
  await spotCheck(f, regions10, rs);

  // 4096 random 4 KiB writes anywhere (some regions twice, some sequential neighbours: the
  // protected disk then marks ahead), session end, restore: what a region size costs in
  // restore work. Then the same writes again, session end, and a 4 KiB write into each of up
  // to 1024 pending regions: each merges the model's region in first.
  progress(`  region size ${formatSize(rs)}: random 4K writes, restore, merges`);
  const nRand = 4096;
  const rr = prng(0x4a4d + rs);
  const pages = f.size / (4 * KiB);
  const randOffsets = Array.from({ length: nRand }, () => Math.floor(rr() * pages) * 4 * KiB);
  const write4k = (dev: BlockDevice, offs: readonly number[]) => (i: number) => dev.write(offs[i]!, modelBytes(f, offs[i]!, 4 * KiB));
  const randPd: Sample[] = [];
  const randPlain: Sample[] = [];
  const restoreMsList: Sample[] = [];
  let dirtied = 0;
  let restored = 0;
  const mergePd: Sample[] = [];
  const mergePlain: Sample[] = [];
  let merges = 0;
  for (let t = 0; t < 2; t++) {
    randPlain.push(await withPlain(f, (dev) => timed(nRand, 32, write4k(dev, randOffsets), () => dev.flush())));
    const e = await freshEngine(st, 'off');
    let mergeOffsets: number[] = [];
    try {
      randPd.push(await timed(nRand, 32, write4k(e.pd, randOffsets), () => e.pd.flush()));
      dirtied = e.log.writtenCount;
      await e.pd.endSession({ keepWrites: false });
      restored = e.log.pendingCount;
      restoreMsList.push(await measure(() => e.hydrator.runToCompletion()));
      await timed(nRand, 32, write4k(e.pd, randOffsets), () => e.pd.flush());
      await e.pd.endSession({ keepWrites: false });
      const pending: number[] = [];
      for (let r = e.log.nextPending(0); r >= 0 && pending.length < 1024; r = e.log.nextPending(r + 1)) pending.push(r);
      mergeOffsets = pending.map((r) => r * rs + Math.floor(rr() * (rs / (4 * KiB))) * 4 * KiB);
      merges = mergeOffsets.length;
      mergePd.push(await timed(merges, 32, write4k(e.pd, mergeOffsets), () => e.pd.flush()));
    } finally {
      await e.close();
    }
    const mo = mergeOffsets;
    mergePlain.push(await withPlain(f, (dev) => timed(mo.length, 32, write4k(dev, mo), () => dev.flush())));
  }
  const random4k: RegionSizeRow['random4k'] = {
    writes: nRand,
    ratio: round(pairRatio(randPlain, randPd)),
    cpuRatio: round(pairRatio(randPlain, randPd, 'cpuMs')),
    regionsDirtied: dirtied,
    restoreBytes: restored * rs,
    amplification: round((restored * rs) / (nRand * 4 * KiB), 2),
    restoreMs: round(medianMs(restoreMsList)),
  };
  const merge4k: RegionSizeRow['merge4k'] = {
    writes: merges,
    snapbackMs: round(medianMs(mergePd)),
    plainMs: round(medianMs(mergePlain)),
    ratio: round(pairRatio(mergePlain, mergePd)),
    usPerWrite: round((medianMs(mergePd) * 1000) / Math.max(1, merges), 1),
  };
  const log256GiB = await bigLogOpen(f.dir, rs);
  return {
    regionSize: rs,
    regionCount: st.regionCount,
    seq: { ratio: seq.ratio, cpuRatio: seq.cpuRatio, snapbackMiBps: seq.snapbackMiBps, plainMiBps: seq.baselineMiBps, logCommits: Number(seq.extra?.logCommits ?? 0) },
    firstTouch: { writes: ft.ops, ratio: ft.ratio, cpuRatio: ft.cpuRatio, snapbackIops: Math.round(ft.ops / (ft.snapbackMs / 1000)), plainIops: Math.round(ft.ops / (ft.baselineMs / 1000)), logCommits: Number(ft.extra?.logCommits ?? 0) },
    restore10: { regions: regions10.length, bytes: bytes10, ms: round(medianMs(r10)), ddMs: round(medianMs(dd10)), ratio: round(pairRatio(dd10, r10)), cpuRatio: round(pairRatio(dd10, r10, 'cpuMs')), ddRuns: 1 },
    random4k,
    merge4k,
    log256GiB,
  };
}

// ---- assembling ------------------------------------------------------------------------------

function comparison(c: { id: string; label: string; bytes: number; ops: number; pd: Sample[]; plain: Sample[]; baseline: string; target: number | null; extra?: Record<string, number | string> }): Comparison {
  const s = medianMs(c.pd);
  const b = medianMs(c.plain);
  const ratio = pairRatio(c.plain, c.pd);
  return {
    id: c.id,
    label: c.label,
    bytes: c.bytes,
    ops: c.ops,
    snapbackMs: round(s),
    baselineMs: round(b),
    baseline: c.baseline,
    snapbackMiBps: round(mibps(c.bytes, s), 1),
    baselineMiBps: round(mibps(c.bytes, b), 1),
    ratio: round(ratio),
    target: c.target,
    pass: c.target === null ? null : ratio >= c.target,
    cpuRatio: round(pairRatio(c.plain, c.pd, 'cpuMs')),
    bestRatio: round(Math.min(...c.plain.map((x) => x.ms)) / Math.min(...c.pd.map((x) => x.ms))),
    samples: { snapbackMs: c.pd.map((x) => round(x.ms)), baselineMs: c.plain.map((x) => round(x.ms)), snapbackCpuMs: c.pd.map((x) => round(x.cpuMs)), baselineCpuMs: c.plain.map((x) => round(x.cpuMs)) },
    ...(c.extra ? { extra: c.extra } : {}),
  };
}

export async function runStorageBench(opts: StorageBenchOptions): Promise<StorageBenchResult> {
  const t0 = now();
  const loadAvgAtStart = loadavg().map((x) => round(x, 2));
  const startedAt = new Date().toISOString();
  const log = opts.progress ?? ((s: string) => process.stderr.write(`${s}\n`));
  const progress = (s: string): void => log(`[${(msSince(t0) / 1000).toFixed(1).padStart(6)} s] ${s}`);
  const size = opts.diskBytes ?? GiB;
  if (size % PATTERN_BYTES !== 0) throw new Error(`diskBytes must be a multiple of ${PATTERN_BYTES}`);
  const regionSize = opts.regionSize ?? DEFAULT_REGION_SIZE;
  const studySizes = opts.studyRegionSizes ?? [4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB];
  const counts = opts.sessionEndCounts ?? [1e3, 1e5, 1e6];
  const trials = opts.trials ?? 7;
  const dir = opts.dir;
  const label = opts.label ?? basename(dir);
  mkdirSync(dir, { recursive: true });
  const filesystem = fsName(dir);
  progress(`storage bench "${label}" in ${dir} (${filesystem}), ${formatSize(size)} disk, region size ${formatSize(regionSize)}`);
  try {
    progress('  making the model, its manifest and the working disk');
    const f = await makeFiles(dir, size);
    const st = await makeState(f, regionSize);
    const comparisons: Comparison[] = [];
    const want = (w: StorageWorkload): boolean => !opts.only || opts.only.includes(w);
    if (want('seq')) {
      progress('  (a) sequential 1 MiB writes');
      comparisons.push(await seqWrites(f, st, trials));
    }
    if (want('first-touch')) {
      progress('  (b) 4 KiB random first-touch writes');
      comparisons.push(await firstTouch(f, st, trials, 16384));
    }
    if (want('restore')) {
      progress('  (c) restores');
      comparisons.push(...(await restoreFigures(f, st, [1, 10, 100], 3, progress)));
    }
    if (want('session-end')) progress('  (d) session end');
    const sessionEnd = want('session-end') ? await sessionEndFigures(dir, counts, 9, progress) : [];
    const medians = sessionEnd.map((s) => s.medianMs);
    // flat: the same log I/O whatever the count (the proof), and medians within 2 ms or 2x of
    // each other (a shared machine's scheduling noise is of the order of a millisecond)
    const sameIo = sessionEnd.every((x) => JSON.stringify(x.logIo) === JSON.stringify(sessionEnd[0]?.logIo));
    const flat = sameIo && (medians.length === 0 || Math.max(...medians) - Math.min(...medians) < 2 || Math.max(...medians) / Math.min(...medians) < 2);
    const sessionEndPass = sessionEnd.length > 0 && flat && medians.every((m) => m < 10);
    const regionSizeStudy: RegionSizeRow[] = [];
    for (const rs of want('study') ? studySizes : []) {
      const sst = rs === regionSize ? st : await makeState(f, rs);
      regionSizeStudy.push(await regionSizeRow(f, sst, Math.min(trials, 3), progress));
      if (sst !== st) rmSync(sst.dir, { recursive: true, force: true });
    }
    return {
      label,
      dir,
      filesystem,
      startedAt,
      durationS: round(msSince(t0) / 1000, 1),
      env: { node: process.version, kernel: release(), cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length, loadAvgAtStart, loadAvgAtEnd: loadavg().map((x) => round(x, 2)) },
      diskBytes: size,
      regionSize,
      comparisons,
      sessionEnd,
      sessionEndPass,
      regionSizeStudy,
    };
  } finally {
    if (!opts.keepFiles) rmSync(dir, { recursive: true, force: true });
  }
}

// ---- Markdown --------------------------------------------------------------------------------

const fmt = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : '–');
const verdict = (pass: boolean | null): string => (pass === null ? '' : pass ? 'pass' : '**MISS**');

export function storageMarkdown(r: StorageBenchResult): string {
  const L: string[] = [];
  const load = `load average ${r.env.loadAvgAtStart[0] ?? '?'} → ${r.env.loadAvgAtEnd[0] ?? '?'} on ${r.env.cpus} CPUs`;
  L.push(`### Storage on ${r.label}: ${r.filesystem}, ${formatSize(r.diskBytes)} disk, ${formatSize(r.regionSize)} regions (${load}, ${r.durationS} s)`);
  L.push('');
  L.push('Ratio: snapback throughput / baseline throughput, the median over trials of each back-to-back pair; CPU: the same ratio of CPU time (less sensitive to a busy machine).');
  L.push('');
  L.push('| workload | snapback | baseline | ratio | CPU | target | |');
  L.push('|---|---|---|---|---|---|---|');
  for (const c of r.comparisons) {
    const isRestore = c.id.startsWith('restore');
    const sb = isRestore ? `${fmt(c.snapbackMs)} ms (${fmt(c.snapbackMiBps, 0)} MiB/s)` : `${fmt(c.snapbackMiBps, 0)} MiB/s`;
    const bl = isRestore ? `${fmt(c.baselineMs)} ms: ${c.baseline}` : `${fmt(c.baselineMiBps, 0)} MiB/s: ${c.baseline}`;
    // two decimals, or three where two would round across the target
    const two = fmt(c.ratio, 2);
    let ratio = `**${c.target !== null && Number(two) >= c.target !== c.pass ? fmt(c.ratio, 3) : two}×**`;
    const one = c.extra?.ratioVsDdOneRun;
    if (one !== undefined && one !== '') ratio += ` (${fmt(Number(one), 2)}× against one dd of the same ${formatSize(c.bytes)}, ${fmt(Number(c.extra?.ddOneRunMs))} ms)`;
    const extra = c.extra?.logCommits !== undefined ? ` (${c.extra.logCommits} log commits)` : c.extra?.hashedMiB !== undefined ? ` (${c.extra.hashedMiB} MiB of model hashed)` : '';
    L.push(`| ${c.label}${extra} | ${sb} | ${bl} | ${ratio} | ${fmt(c.cpuRatio, 2)}× | ≥ ${c.target ?? '–'} | ${verdict(c.pass)} |`);
  }
  for (const s of r.sessionEnd) {
    L.push(
      `| session end (pd.endSession) at ${s.changedRegions.toLocaleString('en')} changed regions of ${formatSize(s.diskBytes)} (${formatSize(s.regionSize)} regions) | ${fmt(s.medianMs, 2)} ms median of ${s.samplesMs.length} (max ${fmt(s.maxMs, 1)}); log I/O: ${s.logIo.writes} write of ${s.logIo.bytes} B, ${s.logIo.flushes} flush | | | | flat, < 10 ms | ${s === r.sessionEnd[r.sessionEnd.length - 1] ? verdict(r.sessionEndPass) : ''} |`,
    );
  }
  if (r.sessionEnd.length) {
    L.push('');
    L.push('Session end: "flat" = the same write-log I/O at every count of changed regions, and medians within 2 ms or 2× of each other; each is timed after a full GC.');
  }
  if (r.regionSizeStudy.length) {
    L.push('');
    L.push(`#### Region size (${r.filesystem}, ${formatSize(r.diskBytes)} disk; restores with model verification off; ratio (CPU ratio))`);
    L.push('');
    L.push('| region | seq 1 MiB writes | 4 KiB first touch (writes / log commits) | restore 10 % against one dd of the same bytes (ms / dd ms) | 4096 random 4 KiB writes | … regions dirtied, bytes to restore (× written), restore ms | 4 KiB write into a pending region (merge), µs (plain) | log of a 256 GiB disk: size, open ms |');
    L.push('|---|---|---|---|---|---|---|---|');
    for (const s of r.regionSizeStudy) {
      L.push(
        `| ${formatSize(s.regionSize)} | ${fmt(s.seq.ratio, 2)}× (${fmt(s.seq.cpuRatio, 2)}×) | ${fmt(s.firstTouch.ratio, 2)}× (${fmt(s.firstTouch.cpuRatio, 2)}×) ${s.firstTouch.writes} / ${s.firstTouch.logCommits} | ${fmt(s.restore10.ratio, 2)}× (${fmt(s.restore10.cpuRatio, 2)}×) ${fmt(s.restore10.ms, 0)} / ${fmt(s.restore10.ddMs, 0)} | ${fmt(s.random4k.ratio, 2)}× (${fmt(s.random4k.cpuRatio, 2)}×) | ${s.random4k.regionsDirtied}, ${formatSize(s.random4k.restoreBytes)} (${fmt(s.random4k.amplification, 1)}×), ${fmt(s.random4k.restoreMs, 0)} | ${fmt(s.merge4k.usPerWrite, 0)} (${fmt((s.merge4k.plainMs * 1000) / Math.max(1, s.merge4k.writes), 0)}) | ${formatSize(s.log256GiB.logBytes)}, ${fmt(s.log256GiB.openMs, 0)} |`,
      );
    }
  }
  return L.join('\n') + '\n';
}

// ---- a device module for the NBD benchmark ---------------------------------------------------

/**
 * `makeDevice(imagePath)` for bench/nbd-serve-entry.ts (`--device-module dist/bench/storage.js`):
 * serves `imagePath` as the working disk of a protected disk whose model is a copy of the image
 * (made once beside it, with a manifest), so every region starts clean and the write log is
 * on. Closing the device closes the whole engine.
 */
export async function makeDevice(imagePath: string): Promise<BlockDevice> {
  const base = join(dirname(imagePath), `${basename(imagePath)}.snapback`);
  const model = join(base, 'model.img');
  const state = join(base, 'state');
  if (!existsSync(join(state, 'snapback.json'))) {
    mkdirSync(base, { recursive: true });
    copyFileSync(imagePath, model);
    await (await createManifest(model)).save(manifestPathFor(model));
    await initEngine({ stateDir: state, model, disk: imagePath, diskMatchesModel: true, regionSize: Number(process.env.SNAPBACK_BENCH_REGION_SIZE ?? DEFAULT_REGION_SIZE) });
  }
  const e = await openEngine(state, { verifyModel: process.env.SNAPBACK_BENCH_VERIFY_MODEL === 'off' ? 'off' : 'lazy' });
  return new EngineDevice(e);
}

/** The protected disk of an engine as a BlockDevice whose close() closes the engine. */
class EngineDevice implements BlockDevice {
  constructor(readonly engine: Engine) {}
  /** The working disk's inline I/O counters (bench/nbd-serve-entry.ts reports them). */
  get inlineIoStats(): InlineIo['stats'] | undefined {
    return this.engine.disk.inlineIo?.stats;
  }
  get size(): number {
    return this.engine.pd.size;
  }
  get capabilities(): DeviceCapabilities {
    return this.engine.pd.capabilities;
  }
  async open(): Promise<void> {}
  read(offset: number, length: number): Promise<Buffer> {
    return this.engine.pd.read(offset, length);
  }
  readInto(buf: Buffer, offset: number): Promise<void> {
    return this.engine.pd.readInto(buf, offset);
  }
  write(offset: number, data: Buffer, options?: WriteOptions): Promise<void> {
    return this.engine.pd.write(offset, data, options);
  }
  readNow(buf: Buffer, offset: number): boolean {
    return this.engine.pd.readNow(buf, offset);
  }
  writeNow(offset: number, data: Buffer): boolean {
    return this.engine.pd.writeNow(offset, data);
  }
  readToPipe(pipeFd: number, offset: number, length: number): boolean {
    return this.engine.pd.readToPipe(pipeFd, offset, length);
  }
  directWrite(offset: number, length: number, reach?: number): DirectWrite | null {
    return this.engine.pd.directWrite(offset, length, reach);
  }
  flush(): Promise<void> {
    return this.engine.pd.flush();
  }
  trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.engine.pd.trim(offset, length, options);
  }
  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.engine.pd.writeZeroes(offset, length, options);
  }
  close(): Promise<void> {
    return this.engine.close();
  }
}
