/**
 * Switching the model an engine restores from, without a full restore: the regions that must be
 * restored are those whose manifest digests differ between the model in force and the new one
 * (plus those the working disk already differs in, which the log has pending or written).
 *
 * Two manifests of the same region size and hash are compared digest by digest; a manifest
 * region maps onto every write-log region it overlaps. Manifests of different region sizes or
 * hashes cannot be compared as they are: one of the two images (one that is here whole) is
 * hashed again at the other's region size and hash (`rehashedAs`, kept beside the model so that
 * the session end that makes the switch reads it rather than hashing again), and those digests
 * are compared. Only when neither image is here whole (two models still arriving) is every
 * region to be restored (said in the plan). Models of another size than the disk are refused:
 * the host's disk keeps its size.
 */
import type { Engine } from './engine.js';
import { join } from 'node:path';
import { createManifest, Manifest } from './manifest.js';
import type { HashName } from './hash-functions.js';
import type { ProtectedDisk, PositionalDevice } from './protected-disk.js';
import type { Hydrator } from './hydrator.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('model-switch');

/** Which write-log regions a switch makes pending, and how that was found. */
export interface SwitchPlan {
  fromId: string;
  toId: string;
  /** One bit a write-log region: set where the two models may differ. */
  differing: Uint8Array;
  /** How many regions `differing` names. */
  regions: number;
  /**
   * 'digests': compared region by region; 'rehashed': compared region by region after one image
   * was hashed again at the other manifest's region size and hash (see `reason`); 'all': the
   * manifests cannot be compared (see `reason`).
   */
  method: 'digests' | 'rehashed' | 'all';
  reason: string | null;
}

/** Two manifests of the two models at one region size and hash (one made again from its image). */
export interface ComparableManifests {
  from: Manifest;
  to: Manifest;
  /** Which image was hashed again, and how (for the plan's `reason`). */
  note: string;
}

/** Whether two manifests can be compared digest by digest. */
export function comparable(a: Manifest, b: Manifest): boolean {
  return a.regionSize === b.regionSize && a.hash === b.hash;
}

/**
 * A manifest of the image at `imagePath` (the model `model` describes) made at another region
 * size and hash, kept in `dir` (the model's directory in the library): made once, then read.
 * The image of a library model never changes, so neither does this.
 */
export async function rehashedAs(model: Manifest, imagePath: string, dir: string, want: { regionSize: number; hash: HashName }): Promise<Manifest> {
  const path = join(dir, `rehashed-${want.regionSize}-${want.hash}.manifest.json`);
  try {
    const kept = await Manifest.load(path);
    if (kept.size === model.size && kept.regionSize === want.regionSize && kept.hash === want.hash) return kept;
  } catch {
    /* not made yet (or unreadable): made again below */
  }
  const t0 = Date.now();
  const made = await createManifest(imagePath, { regionSize: want.regionSize, hash: want.hash, name: model.json.name });
  if (made.size !== model.size) throw new SnapbackError('MODEL_CORRUPT', `the image of model ${model.id.slice(0, 12)} holds ${made.size} bytes, its manifest says ${model.size}`);
  await made.save(path);
  log.info({ model: model.id, regionSize: want.regionSize, hash: want.hash, ms: Date.now() - t0 }, 'model image hashed again to compare it with a manifest of another region size');
  return made;
}

/** The shape of the write log a switch must fit. */
export interface LogShape {
  regionSize: number;
  regionCount: number;
  diskSize: number;
}

/** Plans a switch from the model `from` to `to` on a log of this shape; refuses a model of another size. */
export function planSwitch(from: Manifest, to: Manifest, shape: LogShape, rehashed: ComparableManifests | null = null): SwitchPlan {
  if (to.size !== shape.diskSize) {
    throw new SnapbackError(
      'SIZE_MISMATCH',
      `model "${to.json.name}" holds ${to.size} bytes but the disk the host sees holds ${shape.diskSize}: a switch needs a model of the same size (the host's disk keeps its size)`,
      { expected: shape.diskSize, actual: to.size },
    );
  }
  const n = shape.regionCount;
  const differing = new Uint8Array(Math.ceil(n / 8));
  const set = (r: number) => (differing[r >> 3] = differing[r >> 3]! | (1 << (r & 7)));
  let regions = 0;
  let a = from;
  let b = to;
  if (!comparable(from, to) && rehashed && comparable(rehashed.from, rehashed.to) && rehashed.from.size === from.size && rehashed.to.size === to.size) {
    a = rehashed.from;
    b = rehashed.to;
  }
  if (!comparable(a, b)) {
    for (let r = 0; r < n; r++) set(r);
    const reason =
      from.regionSize !== to.regionSize
        ? `the manifests' region sizes differ (${from.regionSize} and ${to.regionSize} bytes)`
        : `the manifests' hashes differ (${from.hash} and ${to.hash})`;
    log.warn({ from: from.id, to: to.id, reason }, 'the models cannot be compared region by region: every region will be restored');
    return { fromId: from.id, toId: to.id, differing, regions: n, method: 'all', reason };
  }
  const mrs = b.regionSize;
  const rs = shape.regionSize;
  const da = a.allDigests;
  const db = b.allDigests;
  const dl = b.digestLength;
  for (let m = 0; m < b.regionCount; m++) {
    if (da.compare(db, m * dl, (m + 1) * dl, m * dl, (m + 1) * dl) === 0) continue;
    const first = Math.floor((m * mrs) / rs);
    const last = Math.floor((Math.min(shape.diskSize, (m + 1) * mrs) - 1) / rs);
    for (let r = first; r <= last; r++) {
      if ((differing[r >> 3]! & (1 << (r & 7))) === 0) {
        set(r);
        regions++;
      }
    }
  }
  if (a !== from) return { fromId: from.id, toId: to.id, differing, regions, method: 'rehashed', reason: rehashed!.note };
  return { fromId: from.id, toId: to.id, differing, regions, method: 'digests', reason: null };
}

/**
 * Ends the session of a protected disk on another model: the background restore pauses (nothing
 * is copied from the old model meanwhile), the protected disk puts the new model in force
 * (durable D bits, then one header write), and the restore resumes from the new model.
 * `keepQuiesced` as for ProtectedDisk.endSession (an eager restore follows).
 */
export async function switchModel(pd: ProtectedDisk, hydrator: Hydrator, to: PositionalDevice, plan: SwitchPlan, options: { keepQuiesced?: boolean } = {}): Promise<void> {
  if (plan.fromId !== pd.log.info.modelId) throw new SnapbackError('BUSY', `the switch was planned from model ${plan.fromId.slice(0, 12)}, but ${pd.log.info.modelId.slice(0, 12)} is in force`);
  const resume = await hydrator.pause();
  try {
    await pd.endSession({ keepWrites: false, ...(options.keepQuiesced ? { keepQuiesced: true } : {}), switchTo: { model: to, modelId: plan.toId, differing: plan.differing } });
  } finally {
    resume();
  }
  log.info({ from: plan.fromId, to: plan.toId, regions: plan.regions, method: plan.method }, 'the model was switched');
}

/**
 * switchModel for an engine: the engine then holds the new model, and the old one is closed (or
 * handed to `release`: a model still arriving keeps downloading).
 */
export async function switchEngineModel(
  engine: Engine,
  to: Engine['model'],
  plan: SwitchPlan,
  options: { keepQuiesced?: boolean; release?: (old: Engine['model']) => Promise<void> } = {},
): Promise<void> {
  if (plan.toId !== to.id) throw new SnapbackError('BAD_ARGUMENT', `the switch was planned to model ${plan.toId.slice(0, 12)}, not ${to.id.slice(0, 12)}`);
  const old = engine.model;
  try {
    await switchModel(engine.pd, engine.hydrator, to, plan, options.keepQuiesced ? { keepQuiesced: true } : {});
  } finally {
    // also when the header write is in force but not durable ('applied'): the log names `to`
    if (engine.pd.model === to && old !== to) {
      engine.model = to;
      await (options.release ? options.release(old) : old.close()).catch((err: unknown) => log.warn({ err }, 'closing the previous model failed'));
    }
  }
}

/**
 * Makes a model captured from the host's disk (model-capture.ts, host I/O still stopped) the
 * one in force without restoring anything: one header write names it and lets this session's S
 * bits lapse (the session goes on), then D is cleared for the regions the capture copied from
 * the working disk (they hold the new model's bytes, made durable before the copy). Regions
 * pending before stay pending: the new model equals the old one there. A power cut between the
 * two leaves those regions pending under the new model: restored from it again, the same bytes.
 * Returns how many regions became clean.
 */
export async function adoptCapturedModel(pd: ProtectedDisk, hydrator: Hydrator, to: PositionalDevice, toId: string, written: Uint8Array): Promise<number> {
  const resume = await hydrator.pause();
  try {
    await pd.switchModel({ model: to, modelId: toId, differing: new Uint8Array(Math.ceil(pd.log.regionCount / 8)) }, false);
    const cleared = await pd.log.clearMatching(written);
    log.info({ to: toId, cleared }, 'the captured model is in force; nothing is restored');
    return cleared;
  } finally {
    resume();
  }
}
