/**
 * The daemon's model downloads: imports from http(s) URLs (the model service's URL importer)
 * and the background download of every model still arriving from its URL (lazy provisioning).
 *
 * The active model, when it is still arriving, is the engine's own (reads of missing regions
 * fetch them); other arriving models are opened here. Each downloads in the background at its
 * rate (kept in its directory, so it survives a restart), and becomes complete in the library
 * when its last region is verified. Downloads the daemon was stopped in the middle of resume at
 * its next start. When a download cannot move ("stalled": the network is gone, the server
 * fails, a region arrives wrong), `problem()` says so for the status and the web UI; it goes
 * on retrying and resumes by itself.
 *
 * A model still arriving has one open RemoteModel, shared by its download and the engine: an
 * activation takes it over (`take`), and a switch away from it hands it back (`give`), its
 * download going on.
 */
import { EventEmitter } from 'node:events';
import type { Component } from '../component.js';
import type { ModelDownload, ModelImportRequest } from '../api/models.js';
import type { ModelLibrary, StoredModel } from '../storage/model-library.js';
import type { RemoteImage } from '../storage/remote-manifest.js';
import { RemoteModel } from '../storage/remote-model.js';
import { finishLazyModel, importFromUrl, lookUpUrlImage, openRemoteModel, pendingDownloads, saveDownloadRate, type RemoteModelTuning } from '../storage/url-import.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ImportJobContext, ModelService } from './model-service.js';
import type { LazyModels } from './model-switcher.js';

const log = childLogger('model-download');

export interface ModelDownloadsOptions {
  library: ModelLibrary;
  models: ModelService;
  /** The engine's active model (a RemoteModel while it is still arriving). */
  activeModel: () => { readonly id: string } | null;
  tuning?: RemoteModelTuning;
}

interface Arriving {
  entry: StoredModel;
  model: RemoteModel;
  /** Opened here (closed here), rather than the engine's. */
  own: boolean;
}

export class ModelDownloads extends EventEmitter implements Component, LazyModels {
  readonly name = 'model-download';
  private readonly arriving = new Map<string, Arriving>();
  /** Lazy models an import has made visible and is about to follow (their id → when it does, or fails). */
  private readonly registering = new Map<string, Promise<void>>();
  private stopping = false;

  constructor(private readonly opts: ModelDownloadsOptions) {
    super();
  }

  /** Registers the URL importer, and starts or resumes every download. */
  async start(): Promise<void> {
    this.stopping = false;
    this.opts.models.setUrlImporter(async (req) => {
      const known = await lookUpUrlImage(this.opts.library, req.source, req.ca ?? null);
      return { id: known?.manifest?.id ?? null, run: (ctx) => this.importUrl(req, ctx, known) };
    });
    const active = this.opts.activeModel();
    for (const entry of await this.opts.library.list()) {
      if (entry.record.complete || entry.record.source.kind !== 'url' || this.arriving.has(entry.record.id)) continue;
      if (active instanceof RemoteModel && active.id === entry.record.id) this.watch(entry, active, false);
      else {
        try {
          this.watch(entry, await openRemoteModel(entry, this.opts.tuning), true);
        } catch (err) {
          log.error({ model: entry.record.name, err: (err as Error).message }, 'cannot resume the download of a model');
        }
      }
    }
    for (const d of await pendingDownloads(this.opts.library)) {
      log.info({ url: d.info.url, name: d.info.name }, 'resuming an import from a URL');
      this.opts.models.runJob({ name: d.info.name, source: { kind: 'url', url: d.info.url }, bytesTotal: null }, (ctx) =>
        this.importUrl({ source: d.info.url, name: d.info.name, ...(d.info.caFile ? { ca: d.info.caFile } : {}) }, ctx),
      );
    }
  }

  /** Stops every download this service opened; what arrived is kept and resumes at the next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    const all = [...this.arriving.values()];
    this.arriving.clear();
    await Promise.all(all.filter((a) => a.own).map((a) => a.model.close().catch(() => undefined)));
  }

  /** The RemoteModel of a model still arriving, now held by the engine (see LazyModels). */
  async take(entry: StoredModel): Promise<RemoteModel> {
    // a lazy model just listed by its import: take its download rather than open a second one
    await this.registering.get(entry.record.id);
    const a = this.arriving.get(entry.record.id);
    if (a) {
      a.own = false;
      return a.model;
    }
    const model = await openRemoteModel(entry, this.opts.tuning);
    this.watch(entry, model, false);
    return model;
  }

  /** The engine no longer holds `model`: its download goes on, or it is closed if it has finished. */
  async give(model: RemoteModel): Promise<void> {
    const a = this.arriving.get(model.id);
    if (a?.model === model && !this.stopping) a.own = true;
    else await model.close();
  }

  /** The download of a model still arriving, or null. */
  downloadOf(id: string): ModelDownload | null {
    const a = this.arriving.get(id);
    return a ? a.model.progress() : null;
  }

  /** Sets (and keeps) a model's background download rate; null for unlimited. */
  async setRate(id: string, bytesPerSecond: number | null): Promise<ModelDownload> {
    // a lazy model just listed by its import: its download is followed in a moment
    await this.registering.get(id);
    const a = this.arriving.get(id);
    if (!a) throw new SnapbackError('BAD_ARGUMENT', `model ${id.slice(0, 12)}… is not being downloaded`);
    a.model.setRateLimit(bytesPerSecond);
    await saveDownloadRate(a.entry, bytesPerSecond);
    this.emit('changed');
    return a.model.progress();
  }

  /** "model download stalled: …" while a download cannot move, else null. */
  problem(): string | null {
    for (const a of this.arriving.values()) {
      const p = a.model.progress();
      if (p.state === 'stalled') return `model download stalled (${a.entry.record.name}): ${p.lastError ?? 'unknown error'}`;
    }
    return null;
  }

  /** Marks the import interrupted by a stop as kept for the next start. */
  private readonly keepOnAbort = (): boolean => this.stopping;

  /** An import from a URL (`known`: what a first look found there, not fetched again). */
  private async importUrl(req: ModelImportRequest, ctx: ImportJobContext, known: RemoteImage | null = null): Promise<StoredModel> {
    // set once the model is visible: ends the wait of requests about it when it is followed (or the import failed)
    const registration: { done?: () => void } = {};
    try {
      const { model, remote } = await importFromUrl(this.opts.library, {
        onLazyVisible: (id) => {
          const p = new Promise<void>((resolve) => (registration.done = resolve));
          this.registering.set(id, p);
          void p.then(() => this.registering.delete(id));
        },
        url: req.source,
        known,
        name: req.name,
        lazy: req.lazy ?? false,
        caFile: req.ca ?? null,
        onProgress: (done, total) => ctx.progress(done, total),
        signal: ctx.signal,
        keepOnAbort: this.keepOnAbort,
        ...(this.opts.tuning ? { tuning: this.opts.tuning } : {}),
      });
      if (remote) this.watch(model, remote, true);
      return model;
    } finally {
      registration.done?.();
    }
  }

  /** Starts a model's background download and follows it to its end. */
  private watch(entry: StoredModel, model: RemoteModel, own: boolean): void {
    const id = entry.record.id;
    this.arriving.set(id, { entry, model, own });
    const changed = () => this.emit('changed');
    model.on('stalled', changed);
    model.on('resumed', changed);
    const finish = () => {
      void finishLazyModel(this.opts.library, entry, model).then(
        async () => {
          const a = this.arriving.get(id);
          if (a?.model !== model) return;
          this.arriving.delete(id);
          if (a.own) await model.close(); // else the engine holds it (and closes it)
          this.emit('changed');
        },
        (err: unknown) => log.error({ model: entry.record.name, err: (err as Error).message }, 'cannot mark the downloaded model complete'),
      );
    };
    if (model.complete) finish(); // every region arrived before a stop, but the record was not marked yet
    else model.once('complete', finish);
    model.startDownload();
    changed();
  }
}
// Events: 'changed' () — a download stalled, resumed, finished, or its rate changed.
