/**
 * The model library's rows of bench/models.ts, each against its peer measured in the same run:
 *   - importing a model from nginx over loopback, against curl fetching the same file (≥ 0.9×);
 *   - the first read of a region of a lazily provisioned model not fetched yet (latency), against
 *     curl's Range request for the same bytes;
 *   - a switch between two 1 GiB models that differ in 10 % of their regions (time and bytes
 *     moved: the switch planned from the manifests, then the restore of what differs), against
 *     a full copy of the image (dd, fdatasync).
 * A row whose feature is not in this build says so instead of a figure.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createManifest, manifestPathFor } from '../appliance/storage/manifest.js';
import { initEngine, openEngine, verifiedDirOf } from '../appliance/storage/engine.js';
import { ModelImage } from '../appliance/storage/model-image.js';
import { planSwitch, switchEngineModel } from '../appliance/storage/model-switch.js';

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
  figures?: Record<string, number>;
}

export interface LibraryBenchOptions {
  dir: string;
  quick: boolean;
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

export async function libraryRows(opts: LibraryBenchOptions): Promise<LibraryRow[]> {
  const rows: LibraryRow[] = [
    { id: 'import-url', label: 'import of a model from nginx over loopback, against curl of the same file', measured: false, why: 'the URL import is not in this build', target: '≥ 0.9×' },
    { id: 'lazy-first-read', label: 'first read of a region of a lazy model not fetched yet (latency)', measured: false, why: 'lazy provisioning is not in this build' },
  ];
  try {
    rows.push(await switchRow(join(opts.dir, 'switch'), (opts.quick ? 256 : 1024) * MiB, opts.progress));
  } catch (err) {
    rows.push({ id: 'switch', label: 'switch between two models differing in 10 % of regions, against a full copy', measured: false, why: `failed: ${(err as Error).message}` });
  } finally {
    rmSync(join(opts.dir, 'switch'), { recursive: true, force: true });
  }
  return rows;
}
