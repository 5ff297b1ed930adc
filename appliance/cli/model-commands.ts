/**
 * The `snapback model` commands on the library: import, list, rename, remove. With a daemon
 * running on the state directory they go through its control socket (the daemon owns the
 * library then); without one they act on the state directory themselves, through the same
 * model service, so both ways check and answer alike.
 */
import { resolve } from 'node:path';
import type { ModelImportJob, ModelImportRequest, ModelList, ModelRecord, ModelRenameRequest } from '../api/models.js';
import { SnapbackError } from '../errors.js';
import { ModelService } from '../session/model-service.js';
import { ModelLibrary } from '../storage/model-library.js';
import { importFromUrl, lookUpUrlImage } from '../storage/url-import.js';
import { formatSize } from '../storage/sizes.js';
import { StateDir } from '../storage/state-dir.js';
import { migrateStateDir } from '../storage/state-migration.js';
import { callDaemon, passedOnCode } from './control-client.js';
import { bytesBar, out } from './output.js';

const POLL_MS = 200;

/** The daemon's control socket when a daemon runs on the directory; null: act on the directory. */
function daemonSocket(state: StateDir): string | null {
  return state.runningDaemon() !== null ? state.controlSocket : null;
}

/** The model service of a state directory no daemon runs on (brought up to date first). */
async function offlineService(state: StateDir): Promise<ModelService> {
  state.assertNotInUse('model');
  await migrateStateDir(state);
  const library = new ModelLibrary(state);
  const service = new ModelService({ library });
  // a URL downloaded by this command (a lazy model needs the daemon, which serves it as it arrives)
  service.setUrlImporter(async (req) => {
    const known = await lookUpUrlImage(library, req.source, req.ca ?? null);
    return {
      id: known?.manifest?.id ?? null,
      run: async (ctx) => (await importFromUrl(library, { url: req.source, name: req.name, caFile: req.ca ?? null, known, onProgress: (d, t) => ctx.progress(d, t), signal: ctx.signal })).model,
    };
  });
  return service;
}

/** The error a failed job ended with, its code kept (an image already in the library is ALREADY_EXISTS). */
export function jobFailure(job: ModelImportJob, what: string): SnapbackError {
  return new SnapbackError(passedOnCode(job.errorCode), `${what} failed: ${job.error ?? 'no model was made'}`);
}

/** A source as the daemon must see it: a URL as it is, a path made absolute. */
function sourceOf(source: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(source) ? source : resolve(source);
}

export async function modelImport(source: string, o: { stateDir: string; name: string; lazy?: boolean; ca?: string; partition?: number; json?: boolean }): Promise<number> {
  const state = new StateDir(o.stateDir);
  const request: ModelImportRequest = {
    source: sourceOf(source),
    name: o.name,
    ...(o.lazy ? { lazy: true } : {}),
    ...(o.ca ? { ca: resolve(o.ca) } : {}),
    ...(o.partition !== undefined ? { partition: o.partition } : {}),
  };
  const socket = daemonSocket(state);
  const bar = o.json ? null : bytesBar('importing');
  let model: ModelRecord;
  try {
    if (socket) {
      let job = (await callDaemon(socket, 'POST', '/api/models/import', request)) as ModelImportJob;
      while (job.state === 'running') {
        bar?.update(job.bytesDone, job.bytesTotal);
        await new Promise((r) => setTimeout(r, POLL_MS));
        job = (await callDaemon(socket, 'GET', `/api/models/imports/${job.id}`)) as ModelImportJob;
      }
      bar?.stop();
      if (job.state === 'failed' || !job.modelId) throw jobFailure(job, `import of "${o.name}"`);
      const list = (await callDaemon(socket, 'GET', '/api/models')) as ModelList;
      const found = list.models.find((m) => m.id === job.modelId);
      if (!found) throw new SnapbackError('IO_ERROR', `import of "${o.name}" finished, but model ${job.modelId} is not in the list`);
      model = found;
    } else {
      if (o.lazy) throw new SnapbackError('BAD_ARGUMENT', '--lazy needs the running daemon (it fetches the regions as the host reads them); start it with "snapback serve"');
      const service = await offlineService(state);
      const started = await service.startImport(request);
      const onProgress = () => {
        const j = service.job(started.id);
        bar?.update(j.bytesDone, j.bytesTotal);
      };
      service.on('models', onProgress);
      const job = await service.waitForJob(started.id);
      service.off('models', onProgress);
      bar?.stop();
      if (job.state === 'failed' || !job.modelId) throw service.jobFailure(job.id, `import of "${o.name}"`) ?? jobFailure(job, `import of "${o.name}"`);
      model = await service.get(job.modelId);
    }
  } finally {
    bar?.stop();
  }
  if (o.json) out(JSON.stringify(model));
  else {
    const what = model.partition ? `partition ${model.partition.number} (${formatSize(model.partition.size)} from byte ${model.partition.offset}) of a ${formatSize(model.size)} disk` : formatSize(model.size);
    out(`imported "${model.name}": ${what}, ${Math.ceil(model.size / model.regionSize)} regions of ${formatSize(model.regionSize)} (${model.hash})`);
    out(model.id);
  }
  return 0;
}

export async function modelList(o: { stateDir: string; json?: boolean }): Promise<number> {
  const state = new StateDir(o.stateDir);
  const socket = daemonSocket(state);
  const list = socket ? ((await callDaemon(socket, 'GET', '/api/models')) as ModelList) : await (await offlineService(state)).list();
  if (o.json) {
    out(JSON.stringify(list.models));
    return 0;
  }
  if (list.models.length === 0) out('the model library is empty');
  for (const m of list.models) {
    const flags = [
      m.active ? 'active' : null,
      m.pendingActivation ? 'active after the next session end' : null,
      downloadText(m),
      m.parent ? `from ${m.parent.slice(0, 12)}` : null,
    ]
      .filter(Boolean)
      .join(', ');
    out(`${m.active ? '*' : ' '} ${m.name}  ${m.id.slice(0, 12)}  ${formatSize(m.size)}  ${m.createdAt}${flags ? `  (${flags})` : ''}`);
  }
  for (const j of list.imports.filter((i) => i.state === 'running')) out(`  importing "${j.name}": ${formatSize(j.bytesDone)}${j.bytesTotal !== null ? ` of ${formatSize(j.bytesTotal)}` : ''}`);
  return 0;
}

/** A model still arriving: downloading (how far) or stalled (why); null for a complete model. */
function downloadText(m: ModelRecord): string | null {
  if (m.complete) return null;
  const d = m.download;
  if (!d || d.state === 'done') return 'incomplete';
  const pct = d.regionsTotal ? Math.floor((100 * d.regionsDone) / d.regionsTotal) : 0;
  return d.state === 'stalled' ? `download stalled at ${pct} %${d.lastError ? `: ${d.lastError}` : ''}` : `downloading, ${pct} % (${d.regionsDone} of ${d.regionsTotal} regions)`;
}

export async function modelRename(ref: string, newName: string, o: { stateDir: string }): Promise<number> {
  const state = new StateDir(o.stateDir);
  const socket = daemonSocket(state);
  const body: ModelRenameRequest = { name: newName };
  const m = socket ? ((await callDaemon(socket, 'PATCH', `/api/models/${encodeURIComponent(ref)}`, body)) as ModelRecord) : await (await offlineService(state)).rename(ref, body.name);
  out(`renamed to "${m.name}" (${m.id.slice(0, 12)})`);
  return 0;
}

export async function modelRemove(ref: string, o: { stateDir: string; force?: boolean }): Promise<number> {
  const state = new StateDir(o.stateDir);
  const socket = daemonSocket(state);
  const m = socket
    ? ((await callDaemon(socket, 'DELETE', `/api/models/${encodeURIComponent(ref)}${o.force ? '?force=true' : ''}`)) as ModelRecord)
    : await (await offlineService(state)).remove(ref, { force: o.force ?? false });
  out(`removed "${m.name}" (${m.id})`);
  return 0;
}
