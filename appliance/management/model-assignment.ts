/**
 * assign-model: the console names a model by its URL; the appliance imports it into its model
 * library (lazily by default: usable at once, fetched region by region as the host reads) and
 * activates it (at the next session end, or now). The same calls the local API's
 * POST /api/models/import and /api/models/:ref/activate make.
 *
 * Assigning the same model again (a console re-sending a group's assignment) reuses the model of
 * that name imported from that URL instead of importing it twice. A model the switcher will not
 * activate while its regions are still arriving is activated once they are all there (the
 * library downloads it in the background; the command is answered then).
 */
import { once } from 'node:events';
import { SnapbackError } from '../errors.js';
import type { ModelService } from '../session/model-service.js';
import type { ModelSwitcher } from '../session/model-switcher.js';
import type { ModelAssigner } from './fleet-commands.js';

export function modelAssigner(models: ModelService, switcher: ModelSwitcher): ModelAssigner {
  return async (a) => {
    const existing = (await models.library.list()).find((m) => m.record.name === a.name);
    let ref: string;
    let imported = false;
    if (existing) {
      const src = existing.record.source;
      if (src.kind !== 'url' || src.url !== a.url) {
        throw new SnapbackError('ALREADY_EXISTS', `this appliance has a model named ${a.name} from another source (${src.kind === 'url' ? src.url : src.kind}); assign under another name, or remove it first`);
      }
      ref = existing.record.id;
    } else {
      const job = await models.startImport({ source: a.url, name: a.name, lazy: a.lazy ?? true });
      const end = await models.waitForJob(job.id);
      if (end.state !== 'done' || end.modelId === null) throw models.jobFailure(job.id, `importing ${a.url}`) ?? new SnapbackError('IO_ERROR', `importing ${a.url}: the import did not finish`);
      ref = end.modelId;
      imported = true;
    }
    let act;
    try {
      act = await switcher.activate(ref, { now: a.now ?? false });
    } catch (err) {
      if ((await models.get(ref)).complete) throw err;
      await untilComplete(models, ref);
      act = await switcher.activate(ref, { now: a.now ?? false });
    }
    models.emit('models');
    const model = { id: act.model.record.id, name: act.model.record.name };
    return {
      result: { model, takesEffect: act.takesEffect, regionsToRestore: act.regionsToRestore, imported },
      audit: { url: a.url, model: model.id, name: model.name, takesEffect: act.takesEffect, regionsToRestore: act.regionsToRestore },
    };
  };
}

/** Resolves when the library has every region of the model (its background download is done). */
async function untilComplete(models: ModelService, ref: string): Promise<void> {
  while (!(await models.get(ref)).complete) {
    // 'models' is emitted as downloads move; the timeout is a safety net, not a schedule.
    const stop = new AbortController();
    const timer = setTimeout(() => stop.abort(), 5000);
    await once(models, 'models', { signal: stop.signal }).catch(() => undefined);
    clearTimeout(timer);
    stop.abort();
  }
}
