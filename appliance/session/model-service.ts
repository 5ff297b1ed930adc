/**
 * The model service: what the HTTP API and the CLI ask of the model library. It lists the
 * models (with which one is active), renames and removes them, and runs imports as jobs whose
 * progress the list shows (ModelImportJob) until they finish. An import from a path on the
 * appliance is done here; other kinds (an upload, a URL) bring their own work and run as jobs
 * the same way (runJob), so every import is listed, audited and reported alike.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { stat } from 'node:fs/promises';
import type { ModelDownload, ModelImportJob, ModelImportRequest, ModelList, ModelRecord, ModelSource } from '../api/models.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import { checkName, type ModelLibrary, type StoredModel } from '../storage/model-library.js';
import { Manifest, manifestPathFor } from '../storage/manifest.js';
import { importPartitionModel, planPartitionModel } from '../storage/partition-model.js';
import { readPendingSwitch } from '../storage/pending-switch.js';

const log = childLogger('models');

/** Finished jobs kept in the list (newest), so a client polling a job sees how it ended. */
const FINISHED_KEPT = 20;
const PROGRESS_INTERVAL_MS = 250;

/** What the work of an import job gets: progress to report, and a signal when it is cancelled. */
export interface ImportJobContext {
  progress(bytesDone: number, bytesTotal?: number | null): void;
  readonly signal: AbortSignal;
}

/**
 * Imports from an http(s) URL: provided by the URL importer when the daemon has one. A first
 * look at the URL (before the job starts) gives the image's id when a manifest beside it names
 * it, and the work of the job.
 */
export type UrlImporter = (request: ModelImportRequest) => Promise<{ id: string | null; run: (job: ImportJobContext) => Promise<StoredModel> }>;

export interface ModelServiceOptions {
  library: ModelLibrary;
  /** The active model's id (the daemon: the engine's model); default: the write log's header. */
  activeModelId?: () => string | null;
  /** Download state of a model still arriving (lazy provisioning); default none. */
  downloadOf?: (id: string) => ModelDownload | null;
  /** The model an activation waits to put in force (not removable); default: STATE/model-switch.json's. */
  pendingActivation?: () => string | null;
  /** Called after a model is renamed (with its new entry). */
  onRenamed?: (m: StoredModel) => void;
}

interface Job {
  view: ModelImportJob;
  /** What it failed with (its code kept for callers in this process). */
  failure: SnapbackError | null;
  abort: AbortController;
  done: Promise<ModelImportJob>;
}

export class ModelService extends EventEmitter {
  readonly library: ModelLibrary;
  private readonly jobs = new Map<string, Job>();
  private urlImporter: UrlImporter | null = null;
  private progressTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ModelServiceOptions) {
    super();
    this.library = opts.library;
  }

  /** Lets imports from http(s) URLs run (the URL importer registers itself here). */
  setUrlImporter(importer: UrlImporter): void {
    this.urlImporter = importer;
  }

  async list(): Promise<ModelList> {
    const ids = await this.ids();
    const models = (await this.library.list()).map((m) => this.toRecord(m, ids));
    return { models, imports: [...this.jobs.values()].map((j) => ({ ...j.view })) };
  }

  /** One model as the API shows it (by name, id or unique id prefix). */
  async get(ref: string): Promise<ModelRecord> {
    return this.toRecord(await this.library.resolve(ref), await this.ids());
  }

  /** The model a stored entry is, as the API shows it. */
  async record(m: StoredModel): Promise<ModelRecord> {
    return this.toRecord(m, await this.ids());
  }

  /** An import job by id. */
  job(id: string): ModelImportJob {
    const j = this.jobs.get(id);
    if (!j) throw new SnapbackError('NOT_FOUND', `no import job ${id}`);
    return { ...j.view };
  }

  /** Resolves when the job has finished (done or failed), with how it ended. */
  async waitForJob(id: string): Promise<ModelImportJob> {
    const j = this.jobs.get(id);
    if (!j) throw new SnapbackError('NOT_FOUND', `no import job ${id}`);
    return j.done;
  }

  /** The error a failed job ended with (`what` failed: its message), its code kept; null unless it failed. */
  jobFailure(id: string, what: string): SnapbackError | null {
    const f = this.jobs.get(id)?.failure;
    return f ? new SnapbackError(f.code, `${what} failed: ${f.message}`, f.details, { cause: f }) : null;
  }

  /** Cancels a running import: it fails, and leaves nothing behind. */
  cancelJob(id: string): ModelImportJob {
    const j = this.jobs.get(id);
    if (!j) throw new SnapbackError('NOT_FOUND', `no import job ${id}`);
    j.abort.abort();
    return { ...j.view };
  }

  /**
   * Starts an import from `request.source`: a path on the appliance, or an http(s) URL (when a
   * URL importer is registered). What can be checked at once is (the name, the source exists,
   * an image the library holds already when a manifest names it), so those errors come back
   * here; the copy and hashing run as the returned job.
   */
  async startImport(request: ModelImportRequest): Promise<ModelImportJob> {
    const name = checkName(request.name);
    const src = request.source;
    if (/^https?:\/\//i.test(src)) {
      if (request.partition !== undefined) throw new SnapbackError('BAD_ARGUMENT', 'a partition model comes from a file on the appliance, not a URL');
      const importer = this.urlImporter;
      if (!importer) throw new SnapbackError('NOT_SUPPORTED', 'this daemon cannot import from a URL');
      await this.library.checkNameFree(name);
      const prepared = await importer({ ...request, name });
      // a manifest at the URL names the image: a model the library holds already is refused now
      if (prepared.id) await this.library.assertNotHeld(prepared.id);
      return this.runJob({ name, source: { kind: 'url', url: src }, bytesTotal: null }, prepared.run);
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(src)) throw new SnapbackError('BAD_ARGUMENT', `${src} is neither a path on the appliance nor an http:// or https:// URL`);
    if (request.lazy) throw new SnapbackError('BAD_ARGUMENT', '--lazy is for an http(s) URL: a model from a local file is copied whole');
    if (!isAbsolute(src)) throw new SnapbackError('BAD_ARGUMENT', `${src} is not an absolute path`);
    const st = await stat(src).catch(() => {
      throw new SnapbackError('NOT_FOUND', `model image ${src} does not exist`);
    });
    if (!st.isFile() && !st.isBlockDevice()) throw new SnapbackError('BAD_ARGUMENT', `${src} is not a file or a block device`);
    await this.library.checkNameFree(name);
    const partition = request.partition;
    if (partition !== undefined) await planPartitionModel(this.library, src, partition);
    else {
      // a manifest beside the file names the image: a model the library holds already is refused now
      const beside = manifestPathFor(src);
      if (await stat(beside).then(() => true, () => false)) await this.library.assertNotHeld((await Manifest.load(beside)).id);
    }
    return this.runJob({ name, source: { kind: 'file', path: src }, bytesTotal: st.isFile() ? st.size : null }, (ctx) =>
      partition !== undefined
        ? importPartitionModel(this.library, src, { name, partition, onProgress: (d, t) => ctx.progress(d, t), signal: ctx.signal })
        : this.library.importFile(src, { name, onProgress: (d, t) => ctx.progress(d, t), signal: ctx.signal }),
    );
  }

  /**
   * Runs `work` as an import job: listed at once, its progress shown as it reports it, and on
   * its end done (with the model's id) or failed (with the error's message). Returns the job as
   * it is at its start.
   */
  runJob(meta: { name: string; source: ModelSource; bytesTotal: number | null }, work: (ctx: ImportJobContext) => Promise<StoredModel>): ModelImportJob {
    const id = randomBytes(8).toString('hex');
    const view: ModelImportJob = { id, name: meta.name, source: meta.source, state: 'running', bytesTotal: meta.bytesTotal, bytesDone: 0, error: null, errorCode: null, modelId: null };
    const abort = new AbortController();
    const ctx: ImportJobContext = {
      progress: (done, total) => {
        view.bytesDone = done;
        if (total !== undefined) view.bytesTotal = total;
        this.progressChanged();
      },
      signal: abort.signal,
    };
    const done = (async (): Promise<ModelImportJob> => {
      try {
        const m = await work(ctx);
        view.state = 'done';
        view.modelId = m.record.id;
        view.bytesDone = view.bytesTotal ?? view.bytesDone;
        log.info({ job: id, model: m.record.id, name: m.record.name }, 'model import finished');
      } catch (err) {
        view.state = 'failed';
        view.error = (err as Error).message;
        const failure = err instanceof SnapbackError ? err : new SnapbackError('IO_ERROR', view.error, undefined, { cause: err });
        view.errorCode = failure.code;
        const j = this.jobs.get(id);
        if (j) j.failure = failure;
        log.warn({ job: id, name: meta.name, err: view.error }, 'model import failed');
      }
      this.prune();
      this.emit('models');
      return { ...view };
    })();
    this.jobs.set(id, { view, abort, done, failure: null });
    log.info({ job: id, name: meta.name, source: meta.source }, 'model import started');
    this.emit('models');
    return { ...view };
  }

  async rename(ref: string, name: string): Promise<ModelRecord> {
    const m = await this.library.rename(ref, name);
    this.opts.onRenamed?.(m);
    this.emit('models');
    return this.record(m);
  }

  /** Removes a model (see ModelLibrary.remove for what is refused). */
  async remove(ref: string, options: { force?: boolean } = {}): Promise<ModelRecord> {
    const ids = await this.ids();
    const m = await this.library.remove(ref, { force: options.force ?? false, active: ids.active, pending: ids.pending });
    this.emit('models');
    return { ...this.toRecord(m, ids), active: false };
  }

  /** Cancels running imports and waits for them to end (daemon stop). */
  async close(): Promise<void> {
    if (this.progressTimer) clearTimeout(this.progressTimer);
    this.progressTimer = null;
    for (const j of this.jobs.values()) if (j.view.state === 'running') j.abort.abort();
    await Promise.all([...this.jobs.values()].map((j) => j.done));
  }

  /** The active model's id, and the one an activation waits to put in force. */
  private async ids(): Promise<{ active: string | null; pending: string | null }> {
    const active = this.opts.activeModelId ? this.opts.activeModelId() : await this.library.activeModelId();
    const pending = this.opts.pendingActivation ? this.opts.pendingActivation() : ((await readPendingSwitch(this.library.state).catch(() => null))?.modelId ?? null);
    return { active, pending };
  }

  private toRecord(m: StoredModel, { active, pending }: { active: string | null; pending: string | null }): ModelRecord {
    const r = m.record;
    return {
      id: r.id,
      name: r.name,
      size: r.size,
      regionSize: r.regionSize,
      hash: r.hash,
      createdAt: r.createdAt,
      source: r.source,
      parent: r.parent,
      complete: r.complete,
      active: r.id === active,
      pendingActivation: r.id === pending && r.id !== active,
      download: this.opts.downloadOf?.(r.id) ?? null,
      partition: r.partition ?? null,
    };
  }

  private prune(): void {
    const finished = [...this.jobs.values()].filter((j) => j.view.state !== 'running');
    for (const j of finished.slice(0, Math.max(0, finished.length - FINISHED_KEPT))) this.jobs.delete(j.view.id);
  }

  private progressChanged(): void {
    if (this.progressTimer) return;
    this.progressTimer = setTimeout(() => {
      this.progressTimer = null;
      this.emit('models');
    }, PROGRESS_INTERVAL_MS);
    this.progressTimer.unref();
  }
}
// Events: 'models' () — the list or an import's progress changed (progress at most every 250 ms).
