/**
 * Partition models: a model made from the image of one partition. The library keeps it as a
 * whole-disk model composed of the active model (the base) with partition N's byte range taken
 * from the partition image, and records which partition it protects (`partition` in its record,
 * `parent`: the base). Activating it restores that partition from the image and the rest of
 * the disk from the base, and every other operation (restore, verify, switch, capture) works on
 * it as on any model. Its manifest reuses the base's digests outside the partition: only the
 * partition's regions are hashed. docs/partitions.md says more.
 */
import { constants as fsConstants, copyFile, open, stat } from 'node:fs/promises';
import { SnapbackError, fromSystemError } from '../errors.js';
import type { HashPool } from './hash-pool.js';
import { sharedHashPool } from './hash-pool.js';
import { Manifest } from './manifest.js';
import { ModelImage } from './model-image.js';
import type { ModelLibrary, StoredModel } from './model-library.js';
import { findPartition, readPartitionTable } from './partition-table.js';
import { formatSize } from './sizes.js';

const CHUNK = 4 << 20;

export interface PartitionImportOptions {
  name: string;
  /** The partition of the base model's table the image is of. */
  partition: number;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
  hashPool?: HashPool;
}

/** The active model: the base a partition model is composed on. */
async function activeBase(library: ModelLibrary): Promise<StoredModel> {
  const id = await library.activeModelId();
  const base = id ? await library.find(id) : null;
  if (!base) throw new SnapbackError('NOT_FOUND', 'a partition model needs an active whole-disk model to compose it on, and there is none');
  if (!base.record.complete) throw new SnapbackError('BUSY', `the active model "${base.record.name}" is still arriving from its URL; import the partition image once it is complete`);
  return base;
}

interface PartitionPlan {
  base: StoredModel;
  baseManifest: Manifest;
  /** The base's digests, read while its manifest was open. */
  baseDigests: Buffer;
  part: { number: number; start: number; size: number };
  imageSize: number;
}

/**
 * Checks that the image at `imagePath` can be a model of partition `partition` of the active
 * model, and says how. Refused: a partition that does not exist, one whose start or size is not
 * on the model's region boundaries, an image larger than the partition.
 */
export async function planPartitionModel(library: ModelLibrary, imagePath: string, partition: number): Promise<PartitionPlan> {
  const st = await stat(imagePath).catch((err: NodeJS.ErrnoException) => {
    throw err.code === 'ENOENT' ? new SnapbackError('NOT_FOUND', `partition image ${imagePath} does not exist`) : fromSystemError(err, `reading ${imagePath}`);
  });
  if (!st.isFile()) throw new SnapbackError('BAD_ARGUMENT', `${imagePath} is not a file`);
  const base = await activeBase(library);
  const baseImage = new ModelImage(base.imagePath, { manifestPath: base.manifestPath });
  await baseImage.open();
  let baseManifest: Manifest;
  let baseDigests: Buffer;
  let part: { number: number; start: number; size: number };
  try {
    part = findPartition(await readPartitionTable(baseImage), partition);
    baseManifest = baseImage.manifest;
    baseDigests = Buffer.from(baseManifest.allDigests);
  } finally {
    await baseImage.close();
  }
  const rs = baseManifest.regionSize;
  const partEnd = part.start + part.size;
  if (part.start % rs !== 0 || (part.size % rs !== 0 && partEnd !== baseManifest.size)) {
    throw new SnapbackError(
      'BAD_ARGUMENT',
      `partition ${part.number} (bytes ${part.start}+${part.size}) does not start and end on the model's region boundaries (regions of ${formatSize(rs)}); a partition model needs an aligned partition`,
      { start: part.start, size: part.size, regionSize: rs },
    );
  }
  if (st.size > part.size) {
    throw new SnapbackError('BAD_ARGUMENT', `the image ${imagePath} holds ${st.size} bytes, more than partition ${part.number} (${part.size} bytes)`, { imageSize: st.size, partitionSize: part.size });
  }
  return { base, baseManifest, baseDigests, part, imageSize: st.size };
}

/** Adds the image at `imagePath` as a model of partition `options.partition` of the active model (checked as planPartitionModel does). */
export async function importPartitionModel(library: ModelLibrary, imagePath: string, options: PartitionImportOptions): Promise<StoredModel> {
  const { base, baseManifest, baseDigests, part, imageSize } = await planPartitionModel(library, imagePath, options.partition);
  const rs = baseManifest.regionSize;
  const partEnd = part.start + part.size;
  const st = { size: imageSize };
  const staging = await library.stage(options.name);
  try {
    await staging.ensureSpace(base.record.size);
    // The base first (a reflink where the filesystem can), then the partition's bytes over it.
    await copyFile(base.imagePath, staging.imagePath, fsConstants.COPYFILE_FICLONE).catch((err: unknown) => {
      throw fromSystemError(err, `copying the base model ${base.record.name}`);
    });
    const src = await open(imagePath, 'r');
    const dst = await open(staging.imagePath, 'r+');
    const pool = options.hashPool ?? sharedHashPool();
    const digests = baseDigests;
    const dlen = baseManifest.digestLength;
    try {
      const buf = Buffer.alloc(CHUNK);
      for (let done = 0; done < st.size; ) {
        if (options.signal?.aborted) throw new SnapbackError('CLOSED', 'the import was cancelled');
        const len = Math.min(CHUNK, st.size - done);
        const { bytesRead } = await src.read(buf, 0, len, done);
        if (bytesRead !== len) throw new SnapbackError('IO_ERROR', `${imagePath} ended early (changed while it was read?)`);
        await dst.write(buf, 0, len, part.start + done);
        done += len;
        options.onProgress?.(done, st.size);
      }
      await dst.sync();
      // Hash the partition's regions as they now lie in the composed image.
      const first = part.start / rs;
      const end = Math.ceil(Math.min(partEnd, part.start + st.size) / rs);
      for (let r = first; r < end; r += CHUNK / rs) {
        const off = r * rs;
        const len = Math.min(CHUNK, Math.min(end * rs, baseManifest.size) - off);
        const view = buf.subarray(0, len);
        const { bytesRead } = await dst.read(view, 0, len, off);
        if (bytesRead !== len) throw new SnapbackError('IO_ERROR', `the composed image ended early at byte ${off + bytesRead}`);
        (await pool.digestRegions(baseManifest.hash, view, rs)).copy(digests, r * dlen);
      }
    } finally {
      await src.close();
      await dst.close();
    }
    const ist = await stat(staging.imagePath);
    const manifest = Manifest.fromDigests(
      { name: staging.name, size: baseManifest.size, regionSize: rs, hash: baseManifest.hash, createdAt: new Date().toISOString(), image: { size: ist.size, mtimeMs: ist.mtimeMs, ino: ist.ino } },
      digests,
    );
    return await staging.commit(manifest, { source: { kind: 'file', path: imagePath }, parent: base.record.id, partition: { number: part.number, offset: part.start, size: part.size } });
  } catch (err) {
    await staging.abort();
    throw err;
  }
}
