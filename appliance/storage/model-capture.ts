/**
 * Capturing a new model from what the host sees now (typically at the end of a thawed
 * maintenance session). The host's view differs from the model in force (the parent) only in
 * the regions written this session (S): pending regions read the model, clean ones equal it.
 * So the new image is the parent's image — a reflink where the filesystem can (instant, no
 * space), otherwise a copy with progress that leaves the parent's holes as holes — with the
 * written regions copied over it from the working disk, and its manifest is the parent's
 * digests with the manifest regions those writes touch hashed again.
 *
 * Regions of persistent areas are left out (the new model keeps the parent's bytes there) unless
 * `includePersistent` asks for the host's bytes there too.
 *
 * Host I/O is stopped while the written regions are copied, so the capture is one instant of
 * the host's disk; the parent's copy comes before, while the host goes on.
 */
import { constants as fsConstants } from 'node:fs';
import { copyFile, open, rm, stat } from 'node:fs/promises';
import type { ProtectedDisk } from './protected-disk.js';
import type { ModelImage } from './model-image.js';
import type { RemoteModel } from './remote-model.js';
import { Manifest } from './manifest.js';
import { isAllZero, readAll, writeAll } from './file-io.js';
import { sharedHashPool, type HashPool } from './hash-pool.js';
import { SnapbackError, fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('model-capture');

const COPY_CHUNK = 4 << 20;

export interface CaptureOptions {
  /** The new model's name (in its manifest). */
  name: string;
  /** Bytes done of the total: the parent's copy (none for a reflink), then the written regions. */
  onProgress?: (done: number, total: number) => void;
  /** Called before a plain copy of the parent with the bytes it needs (to refuse a full filesystem first). */
  ensureSpace?: (bytes: number) => Promise<void>;
  /**
   * Runs while host I/O is still stopped after the copy, with the captured model made: to put
   * it in force as the new baseline at that same instant (see captureAndActivate in the model
   * switcher). Host I/O resumes after it.
   */
  whileStopped?: (captured: CapturedModel) => Promise<void>;
  hashPool?: HashPool;
  /** Also copy the regions of persistent areas from the working disk (default: the parent's bytes stay there). */
  includePersistent?: boolean;
}

export interface CapturedModel {
  manifest: Manifest;
  /** How the parent's image was copied. */
  copy: 'reflink' | 'copy';
  /** Write-log regions copied from the working disk (one bit a region): where the new model may differ from the parent. */
  written: Uint8Array;
  writtenRegions: number;
  /** Manifest regions hashed again. */
  rehashedRegions: number;
  /** Bytes read from the working disk and written into the new image. */
  bytesCopied: number;
}

/**
 * Writes the host's current view of `pd` to `dest` (a new file) as a model whose parent is
 * `parent` (the model in force), and returns its manifest (region size and hash as the parent's).
 */
export async function captureModel(pd: ProtectedDisk, parent: ModelImage | RemoteModel, dest: string, options: CaptureOptions): Promise<CapturedModel> {
  if (pd.model !== parent) throw new SnapbackError('BUSY', 'the model in force changed: capture again');
  const pm = parent.manifest;
  const size = pm.size;
  const pool = options.hashPool ?? sharedHashPool();
  let copy: CapturedModel['copy'];
  try {
    copy = (await reflink(parent.imagePath, dest)) ? 'reflink' : 'copy';
    if (copy === 'copy') {
      const st = await stat(parent.imagePath);
      await options.ensureSpace?.(Math.min(size, st.blocks * 512));
      await copySparse(parent.imagePath, dest, size, (done) => options.onProgress?.(done, size));
    }
  } catch (err) {
    await rm(dest, { force: true }).catch(() => undefined);
    throw fromSystemError(err, `copying the model ${parent.imagePath}`);
  }
  log.info({ parent: pm.id, copy }, copy === 'reflink' ? 'the parent model was copied as a reflink' : 'the parent model was copied');
  const fh = await open(dest, 'r+');
  let resumed = false;
  await pd.quiesce();
  try {
    // the host's view, frozen from here: the written regions come from the working disk
    const rs = pd.regionSize;
    const n = pd.log.regionCount;
    const written = new Uint8Array(Math.ceil(n / 8));
    const runs: { first: number; last: number }[] = [];
    let writtenRegions = 0;
    const take = (r: number) => {
      written[r >> 3] = written[r >> 3]! | (1 << (r & 7));
      writtenRegions++;
      const last = runs[runs.length - 1];
      if (last && last.last + 1 === r) last.last = r;
      else runs.push({ first: r, last: r });
    };
    if (options.includePersistent && pd.log.persistentCount > 0) {
      for (let r = 0; r < n; r++) if (pd.log.isWritten(r) || pd.log.isPersistent(r)) take(r);
    } else {
      for (let r = pd.log.nextDirty(0); r >= 0; r = pd.log.nextDirty(r + 1)) if (pd.log.isWritten(r)) take(r);
    }
    const total = writtenRegions * rs;
    // the working disk's bytes durable: a baseline made of them must survive a power cut
    await pd.disk.flush();
    const buf = Buffer.allocUnsafe(Math.max(rs, COPY_CHUNK - (COPY_CHUNK % rs)));
    let bytesCopied = 0;
    for (const run of runs) {
      const end = Math.min(size, (run.last + 1) * rs);
      for (let off = run.first * rs; off < end; off += buf.length) {
        const view = buf.subarray(0, Math.min(buf.length, end - off));
        await pd.disk.readInto(view, off);
        await writeAll(fh, view, off);
        bytesCopied += view.length;
        options.onProgress?.(bytesCopied, total);
      }
    }
    await fh.sync();
    // the manifest: the parent's digests, the regions the writes touched hashed again
    const mrs = pm.regionSize;
    const digests = Buffer.from(pm.allDigests);
    const dl = pm.digestLength;
    const touched = new Set<number>();
    for (const run of runs) {
      const a = Math.floor((run.first * rs) / mrs);
      const b = Math.floor((Math.min(size, (run.last + 1) * rs) - 1) / mrs);
      for (let m = a; m <= b; m++) touched.add(m);
    }
    const region = Buffer.allocUnsafe(mrs);
    for (const m of [...touched].sort((x, y) => x - y)) {
      const off = m * mrs;
      const view = region.subarray(0, Math.min(mrs, size - off));
      await readAll(fh, view, off);
      (await pool.digest(pm.hash, view)).copy(digests, m * dl);
    }
    const st = await fh.stat();
    const manifest = Manifest.fromDigests(
      { name: options.name, size, regionSize: mrs, hash: pm.hash, createdAt: new Date().toISOString(), image: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } },
      digests,
    );
    const captured: CapturedModel = { manifest, copy, written, writtenRegions, rehashedRegions: touched.size, bytesCopied };
    log.info({ parent: pm.id, id: manifest.id, writtenRegions, rehashed: touched.size, copy }, 'the host disk was captured');
    if (options.whileStopped) await options.whileStopped(captured);
    return captured;
  } catch (err) {
    pd.resume();
    resumed = true;
    await fh.close().catch(() => undefined);
    await rm(dest, { force: true }).catch(() => undefined);
    throw fromSystemError(err, 'capturing the host disk');
  } finally {
    if (!resumed) {
      pd.resume();
      await fh.close().catch(() => undefined);
    }
  }
}

/** A copy sharing the source's blocks (btrfs, XFS): instant; false where the filesystem cannot. */
async function reflink(src: string, dest: string): Promise<boolean> {
  try {
    await copyFile(src, dest, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw err;
    await rm(dest, { force: true }).catch(() => undefined);
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'EINVAL' || code === 'ENOSYS' || code === 'EPERM' || code === 'ENOTTY') return false;
    throw err;
  }
}

/** Copies `size` bytes in chunks with progress; chunks of zeroes stay holes in the new file. */
async function copySparse(src: string, dest: string, size: number, onProgress: (done: number) => void): Promise<void> {
  const from = await open(src, 'r');
  try {
    const to = await open(dest, 'wx', 0o644);
    try {
      await to.truncate(size);
      const buf = Buffer.allocUnsafe(COPY_CHUNK);
      for (let off = 0; off < size; off += buf.length) {
        const view = buf.subarray(0, Math.min(buf.length, size - off));
        await readAll(from, view, off);
        if (!isAllZero(view)) await writeAll(to, view, off);
        onProgress(off + view.length);
      }
      await to.sync();
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}
