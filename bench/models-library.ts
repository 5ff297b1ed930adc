/**
 * The model library's rows of bench/models.ts, each against its peer measured in the same run:
 *   - importing a model from nginx over loopback, against curl fetching the same file (≥ 0.9×),
 *     the two interleaved run by run (a loaded machine slows both alike), with the CPU time of
 *     each (ours includes verifying every region and an fsync; curl verifies nothing and leaves its
 *     writeback to the kernel: the fsync of its file after it is timed apart and reported), and
 *     a durable local copy of the same file with no network (dd with direct writes and an
 *     fsync, as the import writes): the floor the disk alone sets under the import;
 *   - the first read of a region of a lazily provisioned model not fetched yet while its
 *     background download runs (latency), against a read of a region already local and curl's
 *     Range request for the whole region;
 *   - a switch between two 1 GiB models that differ in 10 % of their regions (time and bytes
 *     moved: the switch planned from the manifests, then the restore of what differs), against
 *     a full copy of the image (dd, fdatasync).
 * A row whose feature is not in this build says so instead of a figure.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, copyFileSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createManifest, manifestPathFor } from '../appliance/storage/manifest.js';
import { initEngine, openEngine, verifiedDirOf } from '../appliance/storage/engine.js';
import { ModelImage } from '../appliance/storage/model-image.js';
import { planSwitch, switchEngineModel } from '../appliance/storage/model-switch.js';
import { ModelLibrary } from '../appliance/storage/model-library.js';
import { StateDir } from '../appliance/storage/state-dir.js';
import { importFromUrl } from '../appliance/storage/url-import.js';
import { Nginx } from '../test/helpers/nginx.js';

const MiB = 1 << 20;
const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

export interface LibraryRow {
  id: 'import-url' | 'lazy-first-read' | 'switch';
  label: string;
  measured: boolean;
  /** Why it was not measured. */
  why?: string;
  snapbackText?: string;
  peerText?: string;
  /** Peer's time over ours (higher is better for us). */
  ratio?: number;
  target?: string;
  pass?: boolean;
  figures?: Record<string, number | string>;
}

export interface LibraryBenchOptions {
  dir: string;
  quick: boolean;
  /** Only the URL rows (import against curl, lazy first read), not the switch. */
  urlOnly?: boolean;
  progress: (line: string) => void;
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** A file of `size` random bytes. */
function randomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  const buf = Buffer.allocUnsafe(16 * MiB);
  try {
    for (let at = 0; at < size; at += buf.length) writeSync(fd, randomFillSync(buf), 0, Math.min(buf.length, size - at), at);
  } finally {
    closeSync(fd);
  }
}

/** Whether two files hold the same bytes. */
function sameBytes(a: string, b: string, size: number): boolean {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  const ba = Buffer.allocUnsafe(16 * MiB);
  const bb = Buffer.allocUnsafe(16 * MiB);
  try {
    for (let at = 0; at < size; at += ba.length) {
      const n = Math.min(ba.length, size - at);
      readSync(fa, ba, 0, n, at);
      readSync(fb, bb, 0, n, at);
      if (!ba.subarray(0, n).equals(bb.subarray(0, n))) return false;
    }
    return true;
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

/** dd of the whole image over a copy of the disk (bs=1M, fdatasync): the full copy a switch avoids. */
function ddWhole(from: string, to: string): number {
  const t0 = process.hrtime.bigint();
  const res = spawnSync('dd', [`if=${from}`, `of=${to}`, 'bs=1M', 'conv=notrunc,fdatasync', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (res.status !== 0) throw new Error(`dd failed: ${res.stderr.toString()}`);
  return ms(t0);
}

/**
 * Two models of `size` bytes differing in every tenth 1 MiB region; a state directory on the
 * first with the disk holding it; then the switch to the second (planned from the manifests,
 * the differing regions restored from the second model, verified on the way) against dd.
 */
async function switchRow(dir: string, size: number, progress: (line: string) => void): Promise<LibraryRow> {
  mkdirSync(dir, { recursive: true });
  const a = join(dir, 'a.img');
  const b = join(dir, 'b.img');
  const disk = join(dir, 'disk.img');
  randomFile(a, size);
  copyFileSync(a, b);
  const fd = openSync(b, 'r+');
  const chunk = Buffer.allocUnsafe(MiB);
  let changed = 0;
  for (let r = 3; r * MiB < size; r += 10, changed++) writeSync(fd, randomFillSync(chunk), 0, Math.min(MiB, size - r * MiB), r * MiB);
  closeSync(fd);
  for (const m of [a, b]) await (await createManifest(m)).save(manifestPathFor(m));
  copyFileSync(a, disk);
  const state = join(dir, 'state');
  await initEngine({ stateDir: state, model: a, disk, diskMatchesModel: true });
  progress(`    switch: ${size / MiB} MiB models, ${changed} of ${Math.ceil(size / MiB)} regions of 1 MiB differ`);
  const e = await openEngine(state);
  let switchMs: number;
  let bytesMoved: number;
  try {
    await e.hydrator.runToCompletion();
    const t0 = process.hrtime.bigint();
    const to = new ModelImage(b, { verifiedDir: verifiedDirOf(e.state) });
    await to.open();
    const plan = planSwitch(e.model.manifest, to.manifest, { regionSize: e.log.regionSize, regionCount: e.log.regionCount, diskSize: e.log.info.diskSize });
    await switchEngineModel(e, to, plan);
    await e.hydrator.runToCompletion();
    await e.disk.flush();
    switchMs = ms(t0);
    bytesMoved = plan.regions * e.log.regionSize;
  } finally {
    await e.close();
  }
  if (!sameBytes(disk, b, size)) throw new Error('after the switch the disk does not hold the new model');
  const ddDisk = join(dir, 'dd-disk.img');
  copyFileSync(a, ddDisk);
  const ddMs = ddWhole(b, ddDisk);
  const ratio = ddMs / switchMs;
  return {
    id: 'switch',
    label: `switch between two ${size / MiB} MiB models differing in 10 % of regions (plan from the manifests, restore what differs, verified), against a full copy`,
    measured: true,
    snapbackText: `${round(switchMs, 0)} ms, ${round(bytesMoved / MiB, 1)} MiB moved`,
    peerText: `${round(ddMs, 0)} ms, ${round(size / MiB, 0)} MiB moved: dd of the whole image (bs=1M, fdatasync)`,
    ratio: round(ratio, 2),
    figures: { switchMs: round(switchMs, 1), bytesMoved, ddMs: round(ddMs, 1), ddBytes: size, differingRegions: changed },
  };
}

/** curl of a URL (optionally a byte range) to a file: its own time_total, and its CPU seconds (user + system, from time(1)). */
function curl(url: string, out: string, range?: string): { ms: number; cpuS: number } {
  const args = ['-f', '%U %S', 'curl', '-s', '-f', '-o', out, '-w', '%{time_total}\\n', ...(range ? ['-r', range] : []), url];
  const res = spawnSync('/usr/bin/time', args, { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`curl failed (${res.status}): ${res.stderr}`);
  const [user, sys] = res.stderr.trim().split('\n').pop()!.split(' ').map(Number);
  return { ms: Number(res.stdout.trim()) * 1000, cpuS: (user ?? NaN) + (sys ?? NaN) };
}

/** fsync(2) of a file written without one (curl's output): the writeback curl leaves for later. */
function fsyncMs(path: string): number {
  const t0 = process.hrtime.bigint();
  const fd = openSync(path, 'r+');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return ms(t0);
}

/**
 * A durable copy of a local file (in the page cache) to `out`: dd with direct writes of 1 MiB
 * and an fsync at the end, as the import writes its regions. No network: what the disk alone
 * asks of a durable copy of those bytes.
 */
function durableCopyMs(from: string, out: string): number {
  const t0 = process.hrtime.bigint();
  const res = spawnSync('dd', [`if=${from}`, `of=${out}`, 'bs=1M', 'oflag=direct', 'conv=fsync', 'status=none'], { encoding: 'utf8' });
  if (res.status !== 0) throw new Error(`dd failed (${res.status}): ${res.stderr}`);
  return ms(t0);
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

const loadAverage = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/**
 * A model served by nginx on loopback (image and manifest beside it): imported through the
 * library (regions fetched several to a request, each verified on arrival) against curl of the
 * image, interleaved `runs` times; then imported lazily, its background download started, and
 * the first 4 KiB read of regions ahead of the download timed against a read of a region
 * already local and curl's Range request for a whole region.
 */
async function urlRows(dir: string, size: number, runs: number, progress: (line: string) => void): Promise<LibraryRow[]> {
  const root = join(dir, 'www');
  mkdirSync(root, { recursive: true });
  const image = join(root, 'model.img');
  randomFile(image, size);
  await (await createManifest(image)).save(manifestPathFor(image));
  const nginx = await Nginx.start(join(dir, 'nginx'), { root });
  const rows: LibraryRow[] = [];
  try {
    const url = nginx.url('files', 'model.img');
    const loadBefore = loadAverage();
    progress(`    import from nginx: ${size / MiB} MiB, ${runs} runs interleaved with curl (load ${loadBefore})`);
    const curlOut = join(dir, 'curl.img');
    const ours: number[] = [];
    const theirs: number[] = [];
    const ratios: number[] = [];
    const ourCpu: number[] = [];
    const curlCpu: number[] = [];
    const curlSync: number[] = [];
    const durableCopies: number[] = [];
    for (let i = 0; i < runs; i++) {
      const c = curl(url, curlOut);
      // The import is durable when it returns (fsync); curl -o leaves its writeback to the kernel.
      curlSync.push(fsyncMs(curlOut));
      rmSync(curlOut, { force: true });
      // What a durable copy of the same bytes costs this disk with no network at all: the floor under the import.
      durableCopies.push(durableCopyMs(image, curlOut));
      rmSync(curlOut, { force: true });
      const library = new ModelLibrary(new StateDir(join(dir, `state-${i}`)));
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const imported = await importFromUrl(library, { url, name: 'bench' });
      const t = ms(t0);
      const cpu = process.cpuUsage(cpu0);
      if (i === 0 && !sameBytes(imported.model.imagePath, image, size)) throw new Error('the imported model differs from the served image');
      rmSync(join(dir, `state-${i}`), { recursive: true, force: true });
      ours.push(t);
      theirs.push(c.ms);
      ratios.push(c.ms / t);
      ourCpu.push((cpu.user + cpu.system) / 1e6);
      curlCpu.push(c.cpuS);
      progress(`      run ${i + 1}: curl ${round(c.ms, 0)} ms (then fsync ${round(curlSync.at(-1)!, 0)} ms), durable local copy ${round(durableCopies.at(-1)!, 0)} ms, import ${round(t, 0)} ms`);
    }
    const ratio = median(ratios);
    const gib = size / (1 << 30);
    const load = `${loadBefore} → ${loadAverage()}`;
    rows.push({
      id: 'import-url',
      label: `import of a ${size / MiB} MiB model from nginx over loopback (manifest beside it: regions verified on arrival), against curl of the same file; median of ${runs} interleaved runs, load ${load}`,
      measured: true,
      snapbackText: `${round(median(ours), 0)} ms (${round(size / 1e6 / (median(ours) / 1000), 0)} MB/s), ${round(median(ourCpu) / gib, 2)} CPU s per GiB`,
      peerText: `${round(median(theirs), 0)} ms (${round(size / 1e6 / (median(theirs) / 1000), 0)} MB/s), ${round(median(curlCpu) / gib, 2)} CPU s per GiB: curl -o (an fsync of its file after it: ${round(median(curlSync), 0)} ms more; a durable local copy of the same file, no network, dd oflag=direct conv=fsync: ${round(median(durableCopies), 0)} ms)`,
      ratio: round(ratio, 2),
      target: '≥ 0.9×',
      pass: ratio >= 0.9,
      figures: { importMs: round(median(ours), 1), curlMs: round(median(theirs), 1), curlFsyncMs: round(median(curlSync), 1), durableCopyMs: round(median(durableCopies), 1), importCpuS: round(median(ourCpu), 2), curlCpuS: round(median(curlCpu), 2), bytes: size, runs, load },
    });

    progress('    lazy model: first reads of regions not fetched yet, the background download running');
    const library = new ModelLibrary(new StateDir(join(dir, 'state-lazy')));
    const lazy = await importFromUrl(library, { url, name: 'bench-lazy', lazy: true, rateLimit: 16 * MiB });
    const remote = lazy.remote!;
    const firsts: number[] = [];
    const locals: number[] = [];
    const regionSize = remote.manifest.regionSize;
    const count = remote.manifest.regionCount;
    try {
      remote.startDownload();
      for (let i = 1; i <= 9; i++) {
        const r = Math.floor((i * count) / 10);
        if (remote.isPresent(r)) continue;
        let t = process.hrtime.bigint();
        await remote.read(r * regionSize + 4096, 4096);
        firsts.push(ms(t));
        t = process.hrtime.bigint();
        await remote.read(r * regionSize + 8192, 4096);
        locals.push(ms(t));
      }
    } finally {
      await remote.close();
    }
    const out = join(dir, 'range.bin');
    const cRegion = median([1, 2, 3, 4, 5].map((i) => curl(url, out, `${i * regionSize}-${(i + 1) * regionSize - 1}`).ms));
    rmSync(out, { force: true });
    const first = median(firsts);
    rows.push({
      id: 'lazy-first-read',
      label: `first 4 KiB read of a region of a lazy model not fetched yet, the background download running at 16 MiB/s (fetches and verifies its ${regionSize / MiB} MiB region; median of ${firsts.length}), against a read of a region already local`,
      measured: firsts.length > 0,
      ...(firsts.length ? {} : { why: 'every sampled region was already there' }),
      snapbackText: `${round(first, 1)} ms (max ${round(Math.max(...firsts), 1)}); a local region ${round(median(locals), 2)} ms`,
      peerText: `curl Range of the whole region ${round(cRegion, 1)} ms`,
      ratio: round(cRegion / first, 2),
      figures: { firstReadMedianMs: round(first, 2), firstReadMaxMs: round(Math.max(...firsts), 2), localReadMedianMs: round(median(locals), 3), curlRegionMs: round(cRegion, 2), samples: firsts.length },
    });
  } finally {
    await nginx.stop();
  }
  return rows;
}

export async function libraryRows(opts: LibraryBenchOptions): Promise<LibraryRow[]> {
  const rows: LibraryRow[] = [];
  try {
    rows.push(...(await urlRows(join(opts.dir, 'url'), (opts.quick ? 256 : 1024) * MiB, opts.quick ? 3 : 5, opts.progress)));
  } catch (err) {
    rows.push({ id: 'import-url', label: 'import of a model from nginx over loopback, against curl of the same file', measured: false, why: `failed: ${(err as Error).message}`, target: '≥ 0.9×' });
  } finally {
    rmSync(join(opts.dir, 'url'), { recursive: true, force: true });
  }
  if (opts.urlOnly) return rows;
  try {
    rows.push(await switchRow(join(opts.dir, 'switch'), 1024 * MiB, opts.progress));
  } catch (err) {
    rows.push({ id: 'switch', label: 'switch between two models differing in 10 % of regions, against a full copy', measured: false, why: `failed: ${(err as Error).message}` });
  } finally {
    rmSync(join(opts.dir, 'switch'), { recursive: true, force: true });
  }
  return rows;
}
