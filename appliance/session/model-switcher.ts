/**
 * The model switcher: activating another model of the library, and capturing the host's disk as
 * a new model (for the API, the CLI and the daemon's start).
 *
 * Activate: the new model is checked (it opens, its size is the disk's) and the request is
 * kept in STATE/model-switch.json; the switch itself is made by the next session end (or at once
 * with `now`, which ends the session): the regions whose digests differ become pending and one
 * header write puts the model in force (storage/model-switch.ts). Until then the host reads the
 * old model and its own writes, as before: nothing changes under it. Activating the model in
 * force withdraws a pending activation. Without a daemon (no session manager) `now` switches at
 * once on the state directory, and otherwise the request waits for the daemon's start, which
 * ends the session.
 *
 * A model still arriving from its URL (lazily provisioned) may be activated too: the switch plan
 * comes from its manifest (local), and the engine's model becomes its RemoteModel, which fetches
 * a region the host reads before it is here. Its one open RemoteModel is shared with the
 * background download (LazyModels, the daemon's model downloads): the switch takes it over
 * rather than starting a second download, and a switch away from it hands it back, so its
 * download goes on. Without a daemon the switcher opens it itself (its download resumes at the
 * daemon's next start).
 *
 * Capture: the host's disk as it reads now becomes a new model of the library, its parent the
 * model in force (storage/model-capture.ts); with `activate` it becomes the model in force at
 * the same instant, without a restore, and the host's session goes on.
 */
import type { Engine } from '../storage/engine.js';
import { verifiedDirOf } from '../storage/engine.js';
import type { ModelLibrary, StoredModel } from '../storage/model-library.js';
import { ModelImage } from '../storage/model-image.js';
import { RemoteModel } from '../storage/remote-model.js';
import { openRemoteModel } from '../storage/url-import.js';
import { adoptCapturedModel, comparable, planSwitch, rehashedAs, switchEngineModel, type ComparableManifests, type SwitchPlan } from '../storage/model-switch.js';
import { captureModel } from '../storage/model-capture.js';
import { readPendingSwitch, writePendingSwitch } from '../storage/pending-switch.js';
import type { SessionManager, SessionEndSwitch } from './session-manager.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('model-switcher');

export interface ActivationResult {
  model: StoredModel;
  takesEffect: 'now' | 'next-session-end';
  /** Regions that differ between the model in force and this one (what will be restored). */
  regionsToRestore: number;
  /** 'all' when the two manifests could not be compared region by region (see `reason`). */
  method: SwitchPlan['method'];
  reason: string | null;
}

export interface CaptureRequest {
  name: string;
  activate?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export interface CaptureResult {
  model: StoredModel;
  activated: boolean;
  copy: 'reflink' | 'copy';
  writtenRegions: number;
  bytesCopied: number;
}

/** A model the engine may hold: a local image, or one still arriving from its URL. */
type OpenModel = ModelImage | RemoteModel;

/** The daemon's open RemoteModels of models still arriving: one per model, shared with its background download. */
export interface LazyModels {
  /** The RemoteModel of `entry` (opened, its download started, if it was not open), now held by the caller. */
  take(entry: StoredModel): Promise<RemoteModel>;
  /** The caller no longer holds `model`: its download goes on (or it is closed once it has none). */
  give(model: RemoteModel): Promise<void>;
}

interface Scheduled {
  target: StoredModel;
  image: OpenModel;
  sw: SessionEndSwitch;
}

export class ModelSwitcher {
  private scheduled: Scheduled | null = null;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly engine: Engine,
    private readonly library: ModelLibrary,
    /** The daemon's session manager; none when a command works on the state directory. */
    private readonly sessions: SessionManager | null = null,
    /** The daemon's models still arriving (none when a command works on the state directory). */
    private readonly lazyModels: LazyModels | null = null,
  ) {}

  /** The host session now (the one a capture is taken from). */
  get sessionNumber(): number {
    return this.engine.log.info.sessionNumber;
  }

  /** The model an activation waits for the next session end to put in force, or null. */
  get pendingModelId(): string | null {
    return this.scheduled?.target.record.id ?? null;
  }

  /**
   * At the daemon's start, before the session end it makes: schedules the activation requested
   * earlier (by a command on the state directory, or before a restart or a power cut).
   */
  async load(): Promise<void> {
    const req = await readPendingSwitch(this.engine.state);
    if (!req) return;
    if (req.modelId === this.engine.log.info.modelId) {
      await writePendingSwitch(this.engine.state, null); // made already: the cut came after the header write
      return;
    }
    const target = await this.library.find(req.modelId);
    if (!target) {
      log.warn({ model: req.modelId }, 'the model of a pending activation is no longer in the library: the activation is withdrawn');
      await writePendingSwitch(this.engine.state, null);
      return;
    }
    try {
      const image = await this.openChecked(target);
      try {
        await this.planTo(target, image); // what the session end will need is made now (a model hashed again), not then
      } catch (err) {
        await this.release(image);
        throw err;
      }
      this.schedule(target, image);
      log.info({ model: target.record.id, name: target.record.name }, 'a pending activation will be made at the next session end');
    } catch (err) {
      log.error({ err, model: target.record.id }, 'a pending activation cannot be made: it is withdrawn');
      await writePendingSwitch(this.engine.state, null);
    }
  }

  /** Activates the model `ref` names (name, id or id prefix): at the next session end, or `now`. */
  activate(ref: string, options: { now?: boolean } = {}): Promise<ActivationResult> {
    return this.serial(async () => {
      const target = await this.library.resolve(ref);
      const e = this.engine;
      if (target.record.id === e.log.info.modelId) {
        await this.withdraw();
        return { model: target, takesEffect: 'now', regionsToRestore: 0, method: 'digests', reason: null };
      }
      const image = await this.openChecked(target);
      let plan: SwitchPlan;
      try {
        plan = await this.planTo(target, image);
      } catch (err) {
        await this.release(image);
        throw err;
      }
      const result = (takesEffect: ActivationResult['takesEffect']): ActivationResult => ({ model: target, takesEffect, regionsToRestore: plan.regions, method: plan.method, reason: plan.reason });
      if (!this.sessions) {
        if (!options.now) {
          await this.release(image);
          await writePendingSwitch(e.state, target.record.id);
          return result('next-session-end');
        }
        const from = e.model.id;
        try {
          await switchEngineModel(e, image, plan, { release: this.release });
        } catch (err) {
          if (e.model !== image) await this.release(image);
          throw err;
        }
        await this.afterSwitch(target, from);
        return result('now');
      }
      await writePendingSwitch(e.state, target.record.id);
      this.schedule(target, image);
      if (!options.now) return result('next-session-end');
      await this.sessions.endSession('api', `activate model ${target.record.name}`);
      if (e.log.info.modelId !== target.record.id) throw new SnapbackError('BUSY', `the session ended, but model "${target.record.name}" is not in force (another activation replaced this one)`);
      return result('now');
    });
  }

  /**
   * Withdraws the activation waiting for the next session end (or, without a daemon, for the
   * daemon's start): the model in force stays. Returns the model it would have put in force, or
   * null when none was pending.
   */
  cancelActivation(): Promise<StoredModel | null> {
    return this.serial(async () => {
      const id = this.scheduled?.target.record.id ?? (await readPendingSwitch(this.engine.state))?.modelId ?? null;
      const target = this.scheduled?.target ?? (id ? await this.library.find(id) : null);
      await this.withdraw();
      if (id) log.info({ model: id, name: target?.record.name ?? null }, 'the pending activation was cancelled');
      return target;
    });
  }

  /** Captures the host's disk as the model `name` (see the module comment). */
  capture(req: CaptureRequest): Promise<CaptureResult> {
    return this.serial(() => (this.sessions ? this.sessions.exclusive(() => this.doCapture(req)) : this.doCapture(req)));
  }

  /** Refuses a capture that would make a copy of the model in force (nothing written since it was put in force). */
  assertSomethingToCapture(): void {
    if (this.engine.log.writtenCount > 0) return;
    throw new SnapbackError(
      'BAD_ARGUMENT',
      `the host's disk reads exactly as model "${this.engine.modelEntry.record.name}" (nothing was written since it was put in force): there is nothing to capture`,
    );
  }

  private async doCapture(req: CaptureRequest): Promise<CaptureResult> {
    const e = this.engine;
    const parent = e.model;
    const parentId = parent.id;
    const session = e.log.info.sessionNumber;
    const staging = await this.library.stage(req.name);
    let stored: StoredModel | null = null;
    let activated = false;
    const commit = async (manifest: import('../storage/manifest.js').Manifest): Promise<StoredModel> => {
      if (manifest.id === parentId) {
        throw new SnapbackError('BAD_ARGUMENT', `the host's disk reads exactly as model "${e.modelEntry.record.name}" (nothing was written since it was put in force): there is nothing to capture`);
      }
      return staging.commit(manifest, { source: { kind: 'capture', session }, parent: parentId });
    };
    try {
      this.assertSomethingToCapture();
      // a copy of the parent's image is the capture's start: every region of it must be here
      if (parent instanceof RemoteModel && !parent.complete) {
        throw new SnapbackError('BUSY', `model "${e.modelEntry.record.name}" is still arriving from its URL (${parent.progress().regionsDone} of ${parent.progress().regionsTotal} regions here); capture once it is complete`);
      }
      const captured = await captureModel(e.pd, parent, staging.imagePath, {
        name: staging.name,
        ...(req.onProgress ? { onProgress: req.onProgress } : {}),
        ensureSpace: (bytes) => staging.ensureSpace(bytes),
        ...(req.activate
          ? {
              whileStopped: async (c) => {
                stored = await commit(c.manifest);
                const image = await this.openChecked(stored);
                try {
                  await adoptCapturedModel(e.pd, e.hydrator, image, stored.record.id, c.written);
                } catch (err) {
                  if (e.pd.model !== image) {
                    await image.close();
                    throw err;
                  }
                  log.error({ err }, 'the captured model is in force, but making that durable failed');
                }
                e.model = image;
                e.modelEntry = stored;
                activated = true;
                await parent.close().catch(() => undefined);
              },
            }
          : {}),
      });
      stored ??= await commit(captured.manifest);
      if (activated) {
        await this.afterSwitch(stored, parentId, false);
        this.sessions?.modelChanged();
      }
      return { model: stored, activated, copy: captured.copy, writtenRegions: captured.writtenRegions, bytesCopied: captured.bytesCopied };
    } catch (err) {
      if (!stored) await staging.abort();
      throw err;
    }
  }

  /**
   * The target opened (with the state directory's verified record; a model still arriving as its
   * RemoteModel), refused if its size is not the disk's.
   */
  private async openChecked(target: StoredModel): Promise<OpenModel> {
    let image: OpenModel;
    if (target.record.complete) {
      image = new ModelImage(target.imagePath, { manifestPath: target.manifestPath, verifiedDir: verifiedDirOf(this.engine.state) });
      await image.open();
    } else {
      image = this.lazyModels ? await this.lazyModels.take(target) : await openRemoteModel(target);
    }
    const size = image.size;
    if (size !== this.engine.pd.size) {
      await this.release(image);
      throw new SnapbackError(
        'SIZE_MISMATCH',
        `model "${target.record.name}" holds ${size} bytes but the disk the host sees holds ${this.engine.pd.size}: a switch needs a model of the same size (the host's disk keeps its size)`,
        { expected: this.engine.pd.size, actual: size },
      );
    }
    return image;
  }

  /** Lets go of a model this switcher opened or took (a model still arriving keeps downloading). */
  private readonly release = async (image: OpenModel): Promise<void> => {
    if (image instanceof RemoteModel && this.lazyModels) await this.lazyModels.give(image);
    else await image.close();
  };

  private async planTo(target: StoredModel, image: OpenModel): Promise<SwitchPlan> {
    const l = this.engine.log;
    const rehashed = await this.rehashed(this.engine.modelEntry, this.engine.model, target, image);
    return planSwitch(this.engine.model.manifest, image.manifest, { regionSize: l.regionSize, regionCount: l.regionCount, diskSize: l.info.diskSize }, rehashed);
  }

  /**
   * For two manifests of different region sizes or hashes: one image hashed again at the other
   * manifest's region size and hash, so that only the regions whose bytes differ are restored.
   * The coarser side is hashed at the finer's region size when its image is here whole (the
   * finer comparison), else the finer side at the coarser's; null when neither image is here
   * whole (two models still arriving: every region is restored).
   */
  private async rehashed(fromEntry: StoredModel, from: OpenModel, toEntry: StoredModel, to: OpenModel): Promise<ComparableManifests | null> {
    const a = from.manifest;
    const b = to.manifest;
    if (comparable(a, b) || a.size !== b.size) return null;
    const whole = (m: OpenModel): boolean => !(m instanceof RemoteModel) || m.complete;
    const sides = a.regionSize <= b.regionSize ? (['to', 'from'] as const) : (['from', 'to'] as const);
    for (const side of sides) {
      const [entry, model, other] = side === 'from' ? [fromEntry, from, b] : [toEntry, to, a];
      if (!whole(model)) continue;
      const again = await rehashedAs(model.manifest, entry.imagePath, entry.dir, { regionSize: other.regionSize, hash: other.hash });
      const note = `the manifests' region sizes or hashes differ (${a.regionSize} bytes ${a.hash}, ${b.regionSize} bytes ${b.hash}): the image of model "${entry.record.name}" was hashed again at ${other.regionSize}-byte regions (${other.hash}) to compare them`;
      return side === 'from' ? { from: again, to: b, note } : { from: a, to: again, note };
    }
    return null;
  }

  /** Hands the session manager the switch to make at its next session end (replacing any earlier one). */
  private schedule(target: StoredModel, image: OpenModel): void {
    const sessions = this.sessions;
    if (!sessions) throw new SnapbackError('NOT_SUPPORTED', 'no session manager to make the switch');
    const e = this.engine;
    const entry: Scheduled = {
      target,
      image,
      sw: {
        // the target's name as it is now (renamed while pending: the new one)
        get note() {
          return `model switched to ${entry.target.record.name}`;
        },
        get target() {
          return { id: entry.target.record.id, name: entry.target.record.name };
        },
        run: async (keepQuiesced) => {
          // planned now, from the model in force now (a capture may have changed it)
          const plan = await this.planTo(entry.target, image);
          await switchEngineModel(e, image, plan, { keepQuiesced, release: this.release });
        },
        done: async () => {
          if (this.scheduled === entry) this.scheduled = null;
          await this.afterSwitch(entry.target, null);
        },
      },
    };
    const before = this.scheduled;
    this.scheduled = entry;
    sessions.setSessionEndSwitch(entry.sw);
    if (before && before.image !== image) void this.release(before.image).catch(() => undefined);
  }

  /** A model of the library was renamed: a pending activation of it names it so from now on. */
  modelRenamed(m: StoredModel): void {
    if (this.scheduled?.target.record.id === m.record.id) this.scheduled.target = m;
  }

  /** Withdraws a pending activation (activating the model in force, or cancelling). */
  private async withdraw(): Promise<void> {
    const s = this.scheduled;
    this.scheduled = null;
    if (s) {
      this.sessions?.setSessionEndSwitch(null);
      await this.release(s.image).catch(() => undefined);
    }
    await writePendingSwitch(this.engine.state, null);
  }

  /** Bookkeeping once `target` is in force: the engine's entry, the request file, the rollback target. */
  private async afterSwitch(target: StoredModel, from: string | null, clearRequest = true): Promise<void> {
    const previous = from ?? this.engine.modelEntry.record.id;
    this.engine.modelEntry = target;
    if (clearRequest) await writePendingSwitch(this.engine.state, null);
    if (previous !== target.record.id) await this.library.setPrevious(previous);
    log.info({ model: target.record.id, name: target.record.name, previous }, 'model in force');
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Closes a scheduled model's image (daemon stop; the request file stays for the next start). */
  async close(): Promise<void> {
    const s = this.scheduled;
    this.scheduled = null;
    this.sessions?.setSessionEndSwitch(null);
    if (s) await this.release(s.image).catch(() => undefined);
  }
}
