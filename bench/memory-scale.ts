/**
 * Daemon memory on large disks (`npm run bench`, or `node dist/bench/memory-scale.js` alone):
 * the real `snapback serve`, started with the systemd unit's NODE_OPTIONS as on the Pi, on a
 * sparse all-zero model of 64 GiB and 1 TiB (1 M and 16 M regions of 64 KiB), its RSS after start, after a live-events client attached, after GET /api/regions
 * and after each of three session ends; and what each part costs at 16 M regions measured in
 * this process: the region log's bitmaps, the manifest, the model's verified map, the region
 * map on the wire.
 *
 *   node dist/bench/memory-scale.js [--sizes 64G,1T] [--dir DIR] [--json FILE]
 *
 * The state is built synthetically (test/helpers/sparse-state.ts): hashing a 1 TiB image would
 * take an hour and read nothing but zeroes.
 */
import { request } from 'node:http';
import { readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ChildProcess } from 'node:child_process';
import { makeSparseState } from '../test/helpers/sparse-state.js';
import { startServe, exited } from '../test/helpers/cli.js';
import { unitNodeOptions, withUnitNodeOptions } from '../test/helpers/unit-node-options.js';
import { callDaemon } from '../appliance/cli/control-client.js';
import { parseSize, formatSize } from '../appliance/storage/sizes.js';
import { FileDevice } from '../appliance/storage/file-device.js';
import { RegionLog } from '../appliance/storage/region-log.js';
import { Manifest, manifestPathFor } from '../appliance/storage/manifest.js';
import { ModelImage } from '../appliance/storage/model-image.js';
import { retainedBytes } from './retained-memory.js';
import { encodeRegionMapAsync, regionLogStates } from '../appliance/session/region-map-codec.js';

process.env.LOG_LEVEL ??= 'warn';

export interface DaemonMemoryRun {
  diskBytes: number;
  regions: number;
  pendingEvery: number | null;
  startMs: number;
  rssMB: Record<string, number>;
  peakRssMB: number;
  regionsResponseBytes: number;
  regionsResponseMs: number;
  eventBytesPerSessionEnd: number[];
  /** Steps that did not complete (the old daemon could not end a session at 1 TiB). */
  failures: string[];
}

export interface PartCost {
  part: string;
  regions: number;
  bytes: number;
  ms: number;
  note: string;
}

export interface MemoryScaleResult {
  runs: DaemonMemoryRun[];
  parts: PartCost[];
  markdown: string;
}

function procStatus(pid: number, key: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}
const mb = (b: number): number => Math.round((b / 2 ** 20) * 10) / 10;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** An /api/events client on the control socket that counts what it receives. */
function liveClient(socketPath: string): { bytes: () => number; close: () => void } {
  let bytes = 0;
  const req = request({ socketPath, path: '/api/events', method: 'GET' }, (res) => {
    res.on('data', (c: Buffer) => (bytes += c.length));
  });
  req.on('error', () => undefined);
  req.end();
  return { bytes: () => bytes, close: () => req.destroy() };
}

function getRaw(socketPath: string, path: string): Promise<{ bytes: number; ms: number }> {
  const t0 = performance.now();
  return new Promise((res, rej) => {
    const req = request({ socketPath, path, method: 'GET' }, (r) => {
      let bytes = 0;
      r.on('data', (c: Buffer) => (bytes += c.length));
      r.on('end', () => res({ bytes, ms: performance.now() - t0 }));
    });
    req.on('error', rej);
    req.end();
  });
}

/** Waits until the daemon's RSS stops moving (a GC and the event ticks have run). */
async function settledRss(pid: number): Promise<number> {
  let last = procStatus(pid, 'VmRSS');
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const now = procStatus(pid, 'VmRSS');
    if (Math.abs(now - last) < 256 * 1024 && i >= 3) return now;
    last = now;
  }
  return last;
}

export async function runDaemonMemory(dir: string, diskBytes: number, pendingEvery: number | null): Promise<DaemonMemoryRun> {
  rmSync(dir, { recursive: true, force: true });
  const st = await makeSparseState({
    dir,
    diskBytes,
    ...(pendingEvery ? { pending: (r: number) => r % pendingEvery === 0, hydrationRateBytesPerSecond: 65536 } : {}),
  });
  const ctl = join(st.stateDir, 'control.sock');
  const t0 = Date.now();
  let child: ChildProcess | null = null;
  const rss: Record<string, number> = {};
  try {
    child = await withUnitNodeOptions(() => startServe(st.stateDir));
    const startMs = Date.now() - t0;
    const pid = child.pid!;
    rss['after start'] = mb(await settledRss(pid));
    const live = liveClient(ctl);
    await sleep(500);
    rss['live client attached'] = mb(await settledRss(pid));
    const got = await getRaw(ctl, '/api/regions');
    rss['after GET /api/regions'] = mb(await settledRss(pid));
    const eventBytes: number[] = [];
    const failures: string[] = [];
    for (let i = 1; i <= 3; i++) {
      const before = live.bytes();
      try {
        await callDaemon(ctl, 'POST', '/api/session/end', { wait: true }, 180_000);
      } catch (err) {
        failures.push(`session end ${i}: ${(err as Error).message}`);
        rss[`after session end ${i}`] = mb(procStatus(pid, 'VmRSS'));
        break;
      }
      rss[`after session end ${i}`] = mb(await settledRss(pid));
      eventBytes.push(live.bytes() - before);
    }
    live.close();
    const peak = procStatus(pid, 'VmHWM');
    child.kill('SIGTERM');
    await exited(child);
    return { diskBytes, regions: st.regionCount, pendingEvery, startMs, rssMB: rss, peakRssMB: mb(peak), regionsResponseBytes: got.bytes, regionsResponseMs: Math.round(got.ms), eventBytesPerSessionEnd: eventBytes, failures };
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** What each in-memory part of the daemon costs at `diskBytes` (measured in this process). */
export async function measureParts(dir: string, diskBytes: number): Promise<PartCost[]> {
  rmSync(dir, { recursive: true, force: true });
  const parts: PartCost[] = [];
  const st = await makeSparseState({ dir, diskBytes, pending: (r) => r % 64 === 0 });
  try {
    let base = retainedBytes();
    let t = performance.now();
    const opened = await RegionLog.open(new FileDevice(join(st.stateDir, 'write-log.bin')));
    parts.push({ part: 'region log (bitmaps, open)', regions: st.regionCount, bytes: retainedBytes() - base, ms: Math.round(performance.now() - t), note: 'D and S bits, sector stamps' });
    base = retainedBytes();
    t = performance.now();
    const manifest = await Manifest.load(manifestPathFor(st.modelPath));
    parts.push({ part: `manifest (${formatSize(manifest.regionSize)} regions, load)`, regions: manifest.regionCount, bytes: retainedBytes() - base, ms: Math.round(performance.now() - t), note: 'digests kept in memory' });
    base = retainedBytes();
    t = performance.now();
    const model = new ModelImage(st.modelPath);
    await model.open();
    parts.push({ part: 'model image (manifest + verified map, open)', regions: model.manifest.regionCount, bytes: retainedBytes() - base, ms: Math.round(performance.now() - t), note: 'what the daemon holds for the model (loads its own manifest)' });
    const rlog = opened.log;
    // the region map as the daemon emits it at a session end: one object per region
    base = retainedBytes();
    t = performance.now();
    const objs = Array.from({ length: rlog.regionCount }, (_v, region) => ({ region, state: rlog.isWritten(region) ? 1 : rlog.isDirty(region) ? 2 : 0 }));
    parts.push({ part: 'region map as one object per region', regions: objs.length, bytes: retainedBytes() - base, ms: Math.round(performance.now() - t), note: 'what a session end emitted' });
    objs.length = 0;
    base = retainedBytes();
    t = performance.now();
    const enc = await encodeRegionMapAsync(regionLogStates(rlog));
    parts.push({ part: `region map, compact (${enc.encoding}; 1 region in 64 pending)`, regions: enc.count, bytes: enc.data.length, ms: Math.round(performance.now() - t), note: 'GET /api/regions payload before base64' });
    await model.close();
    await rlog.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return parts;
}

export function memoryMarkdown(r: Omit<MemoryScaleResult, 'markdown'>): string {
  const lines = ['### Daemon memory on large disks (sparse all-zero model, 64 KiB regions)', '', `The daemon runs with the systemd unit's NODE_OPTIONS (\`${unitNodeOptions()}\`).`, ''];
  const phases = [...new Set(r.runs.flatMap((x) => Object.keys(x.rssMB)))];
  lines.push(`| disk | regions | pending | start | ${phases.map((p) => `RSS ${p}`).join(' | ')} | peak RSS | GET /api/regions | live events per session end |`);
  lines.push(`|---|---|---|---|${phases.map(() => '---').join('|')}|---|---|---|`);
  for (const x of r.runs) {
    lines.push(
      `| ${formatSize(x.diskBytes)} | ${x.regions.toLocaleString('en')} | ${x.pendingEvery ? `1 in ${x.pendingEvery}` : 'none'} | ${(x.startMs / 1000).toFixed(1)} s | ${phases.map((p) => (x.rssMB[p] === undefined ? '–' : `${x.rssMB[p]} MB`)).join(' | ')} | ${x.peakRssMB} MB | ${x.regionsResponseBytes.toLocaleString('en')} B, ${x.regionsResponseMs} ms | ${x.eventBytesPerSessionEnd.map((b) => b.toLocaleString('en')).join(' / ')} B |`,
    );
  }
  for (const x of r.runs) for (const f of x.failures) lines.push('', `${formatSize(x.diskBytes)}: **${f}**`);
  if (r.parts.length) {
    lines.push('', '| part (in one process) | regions | memory | time | note |', '|---|---|---|---|---|');
    for (const p of r.parts) lines.push(`| ${p.part} | ${p.regions.toLocaleString('en')} | ${mb(p.bytes)} MB | ${p.ms} ms | ${p.note} |`);
  }
  return lines.join('\n') + '\n';
}

export async function runMemoryScale(opts: { dir?: string; sizes?: number[] } = {}): Promise<MemoryScaleResult> {
  const dir = opts.dir ?? join(tmpdir(), `snapback-memory-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const sizes = opts.sizes ?? [parseSize('64G'), parseSize('1T')];
  const runs: DaemonMemoryRun[] = [];
  try {
    for (const size of sizes) {
      for (const pendingEvery of [null, 64]) {
        process.stderr.write(`memory: daemon on ${formatSize(size)}${pendingEvery ? `, 1 region in ${pendingEvery} pending` : ''}\n`);
        try {
          runs.push(await runDaemonMemory(join(dir, 'run'), size, pendingEvery));
        } catch (err) {
          runs.push({ diskBytes: size, regions: Math.ceil(size / 65536), pendingEvery, startMs: NaN, rssMB: {}, peakRssMB: NaN, regionsResponseBytes: 0, regionsResponseMs: 0, eventBytesPerSessionEnd: [], failures: [(err as Error).message.split('\n')[0]!.slice(0, 200)] });
        }
        process.stderr.write(memoryMarkdown({ runs: runs.slice(-1), parts: [] }));
      }
    }
    const largest = Math.max(...sizes);
    process.stderr.write(`memory: parts at ${formatSize(largest)}\n`);
    const parts = await measureParts(join(dir, 'parts'), largest);
    const res = { runs, parts };
    return { ...res, markdown: memoryMarkdown(res) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { sizes: { type: 'string' }, dir: { type: 'string' }, json: { type: 'string' } } });
  runMemoryScale({ ...(values.dir ? { dir: values.dir } : {}), ...(values.sizes ? { sizes: values.sizes.split(',').map((s) => parseSize(s)) } : {}) }).then(
    (r) => {
      process.stdout.write(r.markdown);
      if (values.json) writeFileSync(values.json, JSON.stringify({ runs: r.runs, parts: r.parts }, null, 2) + '\n');
    },
    (err: unknown) => {
      process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
