/**
 * The model library's benchmark (`npm run bench -- models`, from bench/run.ts, or alone):
 *   - hash throughput of one core (one hash worker thread) for SHA-256 and BLAKE3, SHA-256 also
 *     without the CPU's SHA instructions where it has them (a Pi 4 has none), and what that
 *     implies on a Pi 4 (a core about a fifth of one of this machine's);
 *   - the manifest of a 64 GiB sparse image holding a few data extents: holes skipped, and (not
 *     with --quick) read whole as before;
 *   - the library's rows against their peers (import over HTTP against curl, the first read of
 *     a lazily provisioned region, a switch between models against a full copy): each measured
 *     by bench/models-library.ts when the feature is there, otherwise reported as not measured.
 *
 *   node dist/bench/models.js [--quick] [--only library|url] [--dir DIR]
 */
import { execFileSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statfsSync, ftruncateSync, writeSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { HashName } from '../appliance/storage/hash-functions.js';
import { HashPool } from '../appliance/storage/hash-pool.js';
import { createManifest } from '../appliance/storage/manifest.js';
import { libraryRows, type LibraryRow } from './models-library.js';
import { isTmpfs } from './filesystem.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const MiB = 1 << 20;
const GiB = 1 << 30;
/** A Pi 4 core against one of this machine's (the performance issue's figure). */
const PI4_CORE_FRACTION = 1 / 5;
const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

export interface HashCoreRow {
  hash: HashName;
  /** false: OpenSSL told not to use the CPU's SHA instructions (as a Pi 4, which has none). */
  shaInstructions: boolean;
  /** For BLAKE3: which implementation (appliance/storage/blake3.ts). */
  blake3?: 'native' | 'wasm';
  /** Per second of CPU time (one core's throughput). */
  MBps: number;
  /** Per second of wall-clock time, one worker thread: lower than MBps on a busy machine. */
  wallMBps: number;
  cpuSecondsPerGiB: number;
  /** MBps × PI4_CORE_FRACTION: an estimate, not a measurement. */
  pi4EstimateMBps: number;
}

export interface SparseRow {
  hash: HashName;
  skipHoles: boolean;
  imageBytes: number;
  dataBytes: number;
  bytesRead: number;
  ms: number;
  cpuMs: number;
}

export interface ModelsBenchResult {
  cpu: string;
  cpus: number;
  quick: boolean;
  hashes: HashCoreRow[];
  sparse: { dir: string; fs: string; rows: SparseRow[] };
  library: LibraryRow[];
}

export interface ModelsBenchOptions {
  /** Where the sparse image and the library's files go (a disk-backed file system, as on the appliance). */
  dir: string;
  quick?: boolean;
  /** Only the library's rows against their peers ('library'), or only the URL rows ('url': import against curl, lazy first read). */
  only?: 'library' | 'url';
  progress?: (line: string) => void;
}

function hasShaInstructions(): boolean {
  try {
    return /^flags\s*:.*\bsha_ni\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

/** One core's throughput of each hash, in a child process (bench/hash-core-entry.ts). */
function hashCores(mib: number, hashes: HashName[], maskSha: boolean, blake3Wasm = false): HashCoreRow[] {
  // bit 29 of CPUID(7).EBX is SHA; OPENSSL_ia32cap's second word masks those bits
  const env = { ...process.env, ...(maskSha ? { OPENSSL_ia32cap: ':~0x20000000' } : {}), ...(blake3Wasm ? { SNAPBACK_BLAKE3: 'wasm' } : {}) };
  const out = execFileSync(process.execPath, [join(here, 'hash-core-entry.js'), String(mib), ...hashes], { encoding: 'utf8', env });
  const rows = JSON.parse(out.trim().split('\n').pop()!) as Array<{ hash: HashName; MBps: number; wallMBps: number; cpuSecondsPerGiB: number; blake3: 'native' | 'wasm' }>;
  return rows.map((r) => ({ hash: r.hash, shaInstructions: !maskSha && hasShaInstructions(), ...(r.hash === 'blake3' ? { blake3: r.blake3 } : {}), MBps: round(r.MBps, 0), wallMBps: round(r.wallMBps, 0), cpuSecondsPerGiB: round(r.cpuSecondsPerGiB, 3), pi4EstimateMBps: round(r.MBps * PI4_CORE_FRACTION, 0) }));
}

function fsName(path: string): string {
  try {
    const t = statfsSync(path).type;
    return ({ 0xef53: 'ext4', 0x01021994: 'tmpfs', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x794c7630: 'overlayfs' } as Record<number, string>)[t] ?? `0x${t.toString(16)}`;
  } catch {
    return '?';
  }
}

/** A 64 GiB sparse image with `extents` data extents of `extentBytes` random bytes, spread over it. */
function makeSparseImage(path: string, size: number, extents: number, extentBytes: number): number {
  const fd = openSync(path, 'w');
  const buf = Buffer.allocUnsafe(Math.min(extentBytes, 16 * MiB));
  try {
    ftruncateSync(fd, size);
    for (let e = 0; e < extents; e++) {
      const at = Math.floor((size / extents) * e) + 12345 * e; // not region-aligned
      for (let done = 0; done < extentBytes; done += buf.length) writeSync(fd, randomFillSync(buf), 0, Math.min(buf.length, extentBytes - done), at + done);
    }
  } finally {
    closeSync(fd);
  }
  return extents * extentBytes;
}

async function manifestRow(path: string, hash: HashName, skipHoles: boolean, imageBytes: number, dataBytes: number): Promise<SparseRow> {
  const pool = new HashPool();
  try {
    let bytesRead = 0;
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await createManifest(path, { hash, skipHoles, hashPool: pool, onRead: (n) => (bytesRead += n) });
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    const c = process.cpuUsage(c0);
    return { hash, skipHoles, imageBytes, dataBytes, bytesRead, ms: round(ms, 0), cpuMs: round((c.user + c.system) / 1000, 0) };
  } finally {
    await pool.close();
  }
}

export async function runModelsBench(opts: ModelsBenchOptions): Promise<ModelsBenchResult> {
  const progress = opts.progress ?? ((s: string) => process.stderr.write(`${s}\n`));
  const quick = opts.quick === true;
  const dir = join(opts.dir, `models-bench-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  try {
    const hashes: HashCoreRow[] = [];
    const rows: SparseRow[] = [];
    if (opts.only) {
      progress(`models bench: only the ${opts.only === 'url' ? 'URL rows' : "library's rows"}`);
      const library = await libraryRows({ dir: join(dir, 'library'), quick, progress, ...(opts.only === 'url' ? { urlOnly: true } : {}) });
      return { cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length, quick, hashes, sparse: { dir: opts.dir, fs: fsName(opts.dir), rows }, library };
    }
    progress('models bench: hash throughput of one core (one hash worker thread)');
    const mib = quick ? 256 : 1024;
    hashes.push(...hashCores(mib, ['sha256', 'blake3'], false));
    if (hashes.some((h) => h.blake3 === 'native')) hashes.push(...hashCores(mib, ['blake3'], false, true));
    if (hasShaInstructions()) hashes.push(...hashCores(mib, ['sha256'], true));

    progress('  the manifest of a 64 GiB sparse image');
    const image = join(dir, 'sparse-64g.img');
    const size = 64 * GiB;
    const dataBytes = makeSparseImage(image, size, 4, (quick ? 16 : 64) * MiB);
    rows.push(await manifestRow(image, 'blake3', true, size, dataBytes));
    rows.push(await manifestRow(image, 'sha256', true, size, dataBytes));
    if (!quick) {
      progress('  the same image read whole (as before holes were skipped)');
      rows.push(await manifestRow(image, 'blake3', false, size, dataBytes));
    }
    rmSync(image, { force: true });

    progress('  the library against its peers');
    const library = await libraryRows({ dir: join(dir, 'library'), quick, progress });
    return { cpu: cpus()[0]?.model ?? 'unknown', cpus: cpus().length, quick, hashes, sparse: { dir: opts.dir, fs: fsName(opts.dir), rows }, library };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const fmt = (x: number | undefined, d = 1): string => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '–');
const bytesText = (b: number): string => (b >= GiB ? `${fmt(b / GiB, b % GiB ? 2 : 0)} GiB` : `${fmt(b / MiB, b % MiB ? 1 : 0)} MiB`);

export function modelsMarkdown(r: ModelsBenchResult): string {
  const L: string[] = [];
  L.push(`### Model library: hashing, sparse manifests, import, lazy reads, switch (${r.cpus} × ${r.cpu}${r.quick ? '; quick' : ''})`);
  L.push('');
  L.push('| hash, one core (one hash worker thread, 1 MiB regions) | MB/s per CPU second | MB/s wall clock | CPU s per GiB | a Pi 4 core (÷ 5, estimate) |');
  L.push('|---|---|---|---|---|');
  for (const h of r.hashes) L.push(`| ${h.hash}${h.blake3 ? ` (${h.blake3 === 'native' ? 'native SIMD' : 'WebAssembly'})` : ''}${h.hash === 'sha256' ? (h.shaInstructions ? ' (with the CPU\'s SHA instructions)' : ' (without SHA instructions, as a Pi 4)') : ''} | ${fmt(h.MBps, 0)} | ${fmt(h.wallMBps, 0)} | ${fmt(h.cpuSecondsPerGiB, 2)} | ${fmt(h.pi4EstimateMBps, 0)} MB/s |`);
  L.push('');
  L.push(`Manifest of a 64 GiB sparse image with 4 data extents (${r.sparse.fs}, all hash worker threads):`);
  L.push('');
  L.push('| hash | holes | data | read | time | CPU |');
  L.push('|---|---|---|---|---|---|');
  for (const s of r.sparse.rows) L.push(`| ${s.hash} | ${s.skipHoles ? 'skipped' : 'read'} | ${bytesText(s.dataBytes)} | ${bytesText(s.bytesRead)} | ${fmt(s.ms / 1000, 2)} s | ${fmt(s.cpuMs / 1000, 2)} s |`);
  L.push('');
  L.push('| library | snapback | peer | ratio | target | |');
  L.push('|---|---|---|---|---|---|');
  for (const l of r.library) {
    if (!l.measured) {
      L.push(`| ${l.label} | not measured: ${l.why} | ${l.peerText ?? ''} | | ${l.target ?? ''} | |`);
      continue;
    }
    L.push(`| ${l.label} | ${l.snapbackText} | ${l.peerText ?? ''} | ${l.ratio !== undefined ? `**${fmt(l.ratio, 2)}×**` : ''} | ${l.target ?? ''} | ${l.pass === undefined ? '' : l.pass ? 'pass' : '**MISS**'} |`);
  }
  L.push('');
  return L.join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.env.LOG_LEVEL ??= 'warn';
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, dir: { type: 'string' }, only: { type: 'string' } } });
  const dir = values.dir ?? (isTmpfs(tmpdir()) ? '/var/tmp' : tmpdir());
  if (values.only !== undefined && values.only !== 'library' && values.only !== 'url') throw new Error(`--only ${values.only}: library or url`);
  runModelsBench({ dir, quick: values.quick === true, ...(values.only ? { only: values.only } : {}) })
    .then((r) => process.stdout.write(modelsMarkdown(r) + '\n' + JSON.stringify(r) + '\n'))
    .catch((err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    });
}
