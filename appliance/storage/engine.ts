/**
 * The storage engine of one state directory, assembled: model image, working disk, region log,
 * protected disk and hydrator (docs/architecture.md). `initEngine` creates a state; `openEngine` opens one,
 * refusing sizes that disagree. The model it opens is the library's model whose id the write
 * log's header names (model-library.ts); a log naming a model the library does not hold, in a
 * library of one model, adopts that model (every region pending, said loudly).
 */
import { existsSync, openSync, closeSync, ftruncateSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { FileDevice, sizeOfPath } from './file-device.js';
import { ModelImage } from './model-image.js';
import { createManifest, Manifest, manifestPathFor } from './manifest.js';
import { ModelLibrary, type StoredModel } from './model-library.js';
import type { RemoteModel } from './remote-model.js';
import { looksLikeUrl } from './http-range-source.js';
import { importFromUrl, openRemoteModel, zeroRegionsOfManifest, type RemoteModelTuning } from './url-import.js';
import { migrateStateDir } from './state-migration.js';
import { RegionLog, logFileSize, type BitmapDamage, type LogRestoreMode } from './region-log.js';
import { ProtectedDisk } from './protected-disk.js';
import { Hydrator, type HydratorOptions } from './hydrator.js';
import { PersistentAreas, areasFileOf } from './persistent-areas.js';
import { findPartition, readPartitionTable } from './partition-table.js';
import { StateDir, type StateConfig } from './state-dir.js';
import { isValidRegionSize } from './sizes.js';
import { isAllZero } from './file-io.js';
import { compareDiskWithModel } from './verify.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('engine');

export const DEFAULT_REGION_SIZE = 64 * 1024;

/** Where the state directory keeps what was verified of its models (model-image.ts). */
export function verifiedDirOf(state: StateDir): string {
  return join(state.path, 'model-verified');
}

export interface Engine {
  state: StateDir;
  config: StateConfig;
  /** The active model's entry in the library. */
  modelEntry: StoredModel;
  /** The active model: a local image, or one still arriving from its URL (lazy provisioning). */
  model: ModelImage | RemoteModel;
  disk: FileDevice;
  log: RegionLog;
  pd: ProtectedDisk;
  hydrator: Hydrator;
  /** The persistent areas in force and any change waiting for the next session end. */
  persistent: PersistentAreas;
  /** Set when the log was made for another model and every region was marked pending. */
  adoptedForeignModel: boolean;
  /** A header slot problem found at open (the other slot was used). */
  headerWarning: string | null;
  /**
   * Bitmap sectors of the write log that failed their checksum at open, and the regions they
   * made pending (restored from the model; what the host wrote there is lost); null if none.
   * Logged at error level by the region log; status and audit should say it too.
   */
  bitmapDamage: BitmapDamage | null;
  /** The write-log format found at open (1: migrated to the current format at its first write). */
  logFormatVersion: number;
  close(): Promise<void>;
}

export interface InitOptions {
  stateDir: string;
  model: string;
  manifest?: string;
  disk: string;
  regionSize?: number;
  restore?: LogRestoreMode;
  diskMatchesModel?: boolean;
  /** No manifest beside the model: progress of hashing one (bytes done, of total). */
  onManifestProgress?: (done: number, total: number) => void;
  /** A model at an http(s) URL: a CA (PEM file) to trust besides the system's. */
  caFile?: string;
}

export interface InitResult {
  createdDisk: boolean;
  pendingRegions: number;
  regionCount: number;
}

export async function initEngine(opts: InitOptions): Promise<InitResult> {
  const state = new StateDir(opts.stateDir);
  if (state.initialised) throw new SnapbackError('STATE_EXISTS', `${state.path} is already initialised (${state.configPath} exists)`);
  const regionSize = opts.regionSize ?? DEFAULT_REGION_SIZE;
  if (!isValidRegionSize(regionSize)) throw new SnapbackError('BAD_ARGUMENT', `--region-size ${regionSize} is not a power of two from 4K to 16M`);
  if (looksLikeUrl(opts.model)) return initFromUrl(state, opts, regionSize);
  const modelPath = resolve(opts.model);
  if (!existsSync(modelPath)) throw new SnapbackError('BAD_ARGUMENT', `model image ${modelPath} does not exist`);
  if (opts.manifest !== undefined && !existsSync(resolve(opts.manifest))) throw new SnapbackError('MANIFEST_INVALID', `no manifest at ${resolve(opts.manifest)}`);
  // the model is registered in the library where it lies (not copied); without a manifest, one is made
  const manifestPath = resolve(opts.manifest ?? manifestPathFor(modelPath));
  const manifest = existsSync(manifestPath) ? await Manifest.load(manifestPath) : await createManifest(modelPath, { onProgress: opts.onManifestProgress });
  const entry = await new ModelLibrary(state).registerInPlace(modelPath, manifest, { name: manifest.json.name, source: { kind: 'file', path: modelPath } });
  const model = new ModelImage(entry.imagePath, { manifestPath: entry.manifestPath, verifiedDir: verifiedDirOf(state) });
  await model.open();
  return initWithModel(state, opts, regionSize, model, (rs) => zeroRegionsOf(model, rs));
}

/**
 * `init --model URL`: the model is provisioned lazily from the remote system (registered at
 * once, its regions fetched as the host reads them and in the background once the daemon runs);
 * a new disk's pending regions come from the manifest's digests, without fetching anything.
 */
async function initFromUrl(state: StateDir, opts: InitOptions, regionSize: number): Promise<InitResult> {
  const library = new ModelLibrary(state);
  const name = decodeURIComponent(new URL(opts.model).pathname.split('/').pop() || 'model');
  const { model: entry, remote } = await importFromUrl(library, { url: opts.model, name, lazy: true, ...(opts.caFile ? { caFile: opts.caFile } : {}) });
  try {
    return await initWithModel(state, opts, regionSize, remote!, async (rs) => zeroRegionsOfManifest(remote!.manifest, rs));
  } catch (err) {
    await library.remove(entry.record.id, { force: true }).catch(() => undefined);
    throw err;
  }
}

async function initWithModel(state: StateDir, opts: InitOptions, regionSize: number, model: ModelImage | RemoteModel, zeroRegionsFor: (regionSize: number) => Promise<Uint8Array>): Promise<InitResult> {
  const diskPath = resolve(opts.disk);
  let createdDisk = false;
  try {
    if (!existsSync(diskPath)) {
      const fd = openSync(diskPath, 'wx', 0o600);
      ftruncateSync(fd, model.size);
      closeSync(fd);
      createdDisk = true;
    } else if (sizeOfPath(diskPath) < model.size) {
      throw new SnapbackError('SIZE_MISMATCH', `working disk ${diskPath} holds ${sizeOfPath(diskPath)} bytes, less than the model's ${model.size}`, { expected: model.size, actual: sizeOfPath(diskPath) });
    }
    const disk = new FileDevice(diskPath, { size: model.size });
    await disk.open();
    let pendingOf: (r: number) => boolean;
    try {
      if (createdDisk) {
        // a new sparse disk reads zeroes: pending wherever the model is not all zeroes
        const zeroRegions = await zeroRegionsFor(regionSize);
        pendingOf = (r) => (zeroRegions[r >> 3]! & (1 << (r & 7))) === 0;
      } else if (opts.diskMatchesModel) {
        const cmp = await compareDiskWithModel(disk, model, regionSize);
        if (cmp.differing.length > 0) {
          const first = cmp.differing[0]!;
          throw new SnapbackError('VERIFY_FAILED', `--disk-matches-model: the disk differs from the model in ${cmp.differing.length} regions (first at byte ${first * regionSize}); drop the flag to have them restored`, {
            differing: cmp.differing.length,
          });
        }
        pendingOf = () => false;
      } else {
        pendingOf = () => true;
      }
      mkdirSync(state.path, { recursive: true });
      const logDev = new FileDevice(state.logPath, { size: logFileSize(Math.ceil(model.size / regionSize)) });
      const fd = openSync(state.logPath, 'w', 0o600);
      ftruncateSync(fd, logFileSize(Math.ceil(model.size / regionSize)));
      closeSync(fd);
      const rlog = await RegionLog.create(
        logDev,
        { modelId: model.id, regionSize, diskSize: model.size, sessionNumber: 1, sessionStartedAt: Date.now(), mode: 'frozen', restoreMode: opts.restore ?? 'instant' },
        pendingOf,
      );
      const result = { createdDisk, pendingRegions: rlog.pendingCount, regionCount: rlog.regionCount };
      await rlog.close();
      state.writeConfig({ version: 2, disk: diskPath, regionSize, createdAt: new Date().toISOString() });
      return result;
    } finally {
      await disk.close();
    }
  } finally {
    await model.close();
  }
}

/** One bit a region, set where the model's region is all zeroes (a bitmap: a 1 TiB disk has 16 M regions). */
async function zeroRegionsOf(model: ModelImage, regionSize: number): Promise<Uint8Array> {
  const count = Math.ceil(model.size / regionSize);
  const zeros = new Uint8Array(Math.ceil(count / 8));
  const chunk = Buffer.allocUnsafe(Math.max(regionSize, 4 << 20));
  const per = chunk.length / regionSize;
  for (let r = 0; r < count; r += per) {
    const off = r * regionSize;
    const len = Math.min(chunk.length, model.size - off);
    const view = chunk.subarray(0, len);
    await model.readInto(view, off);
    for (let i = 0; i < per && r + i < count; i++) {
      const part = view.subarray(i * regionSize, Math.min(len, (i + 1) * regionSize));
      if (isAllZero(part)) zeros[(r + i) >> 3] = zeros[(r + i) >> 3]! | (1 << ((r + i) & 7));
    }
  }
  return zeros;
}


export interface OpenOptions {
  hydrator?: HydratorOptions;
  verifyModel?: 'lazy' | 'off';
  /** A model still arriving from its URL: how its regions are fetched. */
  remote?: RemoteModelTuning;
}

/**
 * The library model the write log names (`logModelId`). A log naming a model the library does
 * not hold is refused, except in a library of exactly one model: that one is adopted (as when
 * the one model of an older state directory was replaced under its path).
 */
export async function modelForLog(library: ModelLibrary, logModelId: string | null): Promise<StoredModel> {
  const named = logModelId ? await library.find(logModelId) : null;
  if (named) return named;
  const all = await library.list();
  if (all.length === 1) return all[0]!;
  throw new SnapbackError(
    'STATE_CORRUPT',
    `the write log belongs to model ${logModelId ?? '(unknown)'}, which is not in the model library ${library.dir}${all.length ? ` (it holds ${all.map((m) => m.record.name).join(', ')})` : ' (it is empty)'}`,
    { model: logModelId },
  );
}

export async function openEngine(stateDir: string, opts: OpenOptions = {}): Promise<Engine> {
  const state = new StateDir(stateDir);
  const config = await migrateStateDir(state);
  const library = new ModelLibrary(state);
  const logDev = new FileDevice(state.logPath);
  const toClose: { close(): Promise<void> }[] = [];
  try {
    const opened = await RegionLog.open(logDev);
    const rlog = opened.log;
    toClose.push(rlog);
    const entry = await modelForLog(library, rlog.info.modelId);
    // a model still arriving from its URL is fetched region by region as it is read
    const model = entry.record.complete ? new ModelImage(entry.imagePath, { manifestPath: entry.manifestPath, verify: opts.verifyModel ?? 'lazy', verifiedDir: verifiedDirOf(state) }) : await openRemoteModel(entry, opts.remote);
    await model.open();
    toClose.push(model);
    const disk = new FileDevice(config.disk, { size: model.size });
    await disk.open();
    toClose.push(disk);
    const diskBytes = sizeOfPath(config.disk);
    if (diskBytes < model.size) throw new SnapbackError('SIZE_MISMATCH', `working disk ${config.disk} holds ${diskBytes} bytes, less than the model's ${model.size}`, { expected: model.size, actual: diskBytes });
    if (rlog.info.diskSize !== model.size) {
      throw new SnapbackError('SIZE_MISMATCH', `the write log is for a ${rlog.info.diskSize}-byte disk but the model holds ${model.size} bytes`, { expected: rlog.info.diskSize, actual: model.size });
    }
    // persistent areas first: no mark is kept there, whatever follows (an adoption, damage found at open)
    const persistent = await PersistentAreas.load(areasFileOf(state), { regionSize: rlog.regionSize, diskSize: rlog.info.diskSize });
    await rlog.setPersistent(persistent.activeMask());
    let adopted = false;
    if (rlog.info.modelId !== model.id) {
      log.warn({ logModel: rlog.info.modelId, model: model.id }, 'THE WRITE LOG WAS MADE FOR ANOTHER MODEL: every region is now pending and will be restored from this model');
      await rlog.adoptModel(model.id);
      adopted = true;
    }
    const pd = new ProtectedDisk({ disk, model, log: rlog });
    pd.persistentAreas = persistent;
    const hydrator = new Hydrator(pd, opts.hydrator);
    let closed = false;
    const engine: Engine = {
      state,
      config,
      modelEntry: entry,
      model,
      disk,
      log: rlog,
      pd,
      hydrator,
      persistent,
      adoptedForeignModel: adopted,
      headerWarning: opened.otherSlotProblem,
      bitmapDamage: opened.bitmapDamage,
      logFormatVersion: opened.formatVersion,
      async close() {
        if (closed) return;
        closed = true;
        await hydrator.stop();
        await pd.close();
        await disk.flush().catch(() => undefined);
        await rlog.close();
        await disk.close();
        await engine.model.close(); // the model in force now (a switch replaces it)
      },
    };
    // `--partition N` names a partition of the model in force's partition table
    persistent.setPartitionLookup(async (n) => {
      const p = findPartition(await readPartitionTable(engine.model), n);
      return { start: p.start, size: p.size };
    });
    return engine;
  } catch (err) {
    for (const c of toClose.reverse()) await c.close().catch(() => undefined);
    await logDev.close().catch(() => undefined);
    throw err;
  }
}
