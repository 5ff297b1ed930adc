/**
 * The model library:
 *   GET    /api/models               → ModelList (models, and imports still running or just ended)
 *   POST   /api/models/import        {source, name, lazy?} → 202 the import job (audit: model.import);
 *                                     409 ALREADY_EXISTS at once when a manifest (at the URL, beside
 *                                     the file) names an image the library holds
 *   GET    /api/models/imports/:id   → the import job (poll until done or failed)
 *   PATCH  /api/models/:ref          {name} → the renamed model (audit: model.rename)
 *   DELETE /api/models/:ref[?force=true] → the removed model (audit: model.remove)
 *   POST   /api/models/:ref/activate {now?} → ModelActivateReply (audit: model.activate)
 *   POST   /api/models/activation/cancel → ModelActivationCancelReply (audit: model.activate-cancel)
 *   POST   /api/models/capture       {name, activate?} → 202 the capture's job (audit: model.capture)
 * `:ref` is a model's name, id or unique id prefix. An import's source is a path on the
 * appliance or an http(s) URL (when the daemon has a URL importer).
 */
import { z } from 'zod';
import {
  modelActivateReplySchema,
  modelActivateRequestSchema,
  modelActivationCancelReplySchema,
  modelCaptureRequestSchema,
  modelImportJobSchema,
  modelImportRequestSchema,
  modelListSchema,
  modelRecordSchema,
  modelRenameRequestSchema,
} from '../../api/models.js';
import type { ModelService } from '../../session/model-service.js';
import type { ModelSwitcher } from '../../session/model-switcher.js';
import type { StateStore } from '../../state/state-store.js';
import type { ApiRouter } from '../api-router.js';
import { audit, needPrincipal } from '../route-context.js';

const refParams = z.object({ ref: z.string().min(1).max(200) });
const jobParams = z.object({ id: z.string().regex(/^[0-9a-f]{16}$/, 'an import job id is 16 hex digits') });
const removeQuery = z.object({ force: z.enum(['true', 'false']).optional() }).strict();

export function modelLibraryRoutes(api: ApiRouter, { models, store, switcher }: { models: ModelService; store: StateStore; switcher?: ModelSwitcher }): void {
  api.add({
    method: 'get',
    path: '/api/models',
    tag: 'models',
    summary: 'The model library: every model (which one is active) and the imports running or just ended',
    replies: { 200: { description: 'The library', schema: modelListSchema } },
    handler: () => models.list(),
  });

  api.add({
    method: 'post',
    path: '/api/models/import',
    tag: 'models',
    summary: 'Import a model from a path on the appliance (or an http(s) URL); runs as a job listed in GET /api/models',
    audit: 'handler',
    body: modelImportRequestSchema,
    replies: { 202: { description: 'The import started', schema: modelImportJobSchema } },
    handler: async ({ res, body }) => {
      const p = needPrincipal(res);
      const job = await models.startImport(body);
      await audit(store, res, p.actor, 'model.import', { job: job.id, name: job.name, source: job.source, ...(body.lazy ? { lazy: true } : {}) });
      return job;
    },
  });

  api.add({
    method: 'get',
    path: '/api/models/imports/:id',
    tag: 'models',
    summary: 'One import job: its progress, and how it ended',
    params: jobParams,
    replies: { 200: { description: 'The job', schema: modelImportJobSchema } },
    handler: ({ params }) => models.job(params.id),
  });

  api.add({
    method: 'patch',
    path: '/api/models/:ref',
    tag: 'models',
    summary: 'Rename a model (by name, id or unique id prefix); names are unique',
    audit: 'handler',
    params: refParams,
    body: modelRenameRequestSchema,
    replies: { 200: { description: 'The renamed model', schema: modelRecordSchema } },
    handler: async ({ res, params, body }) => {
      const p = needPrincipal(res);
      const before = await models.get(params.ref);
      const m = await models.rename(params.ref, body.name);
      await audit(store, res, p.actor, 'model.rename', { model: m.id, from: before.name, to: m.name });
      return m;
    },
  });

  api.add({
    method: 'delete',
    path: '/api/models/:ref',
    tag: 'models',
    summary: 'Remove a model: not the active one; the previous version (rollback target) only with force=true',
    audit: 'handler',
    params: refParams,
    query: removeQuery,
    replies: { 200: { description: 'The removed model', schema: modelRecordSchema } },
    handler: async ({ res, params, query }) => {
      const p = needPrincipal(res);
      const m = await models.remove(params.ref, { force: query.force === 'true' });
      await audit(store, res, p.actor, 'model.remove', { model: m.id, name: m.name, ...(query.force === 'true' ? { force: true } : {}) });
      return m;
    },
  });

  if (switcher) modelSwitchRoutes(api, { models, store, switcher });
}

/** Activate and capture (the model switcher). */
function modelSwitchRoutes(api: ApiRouter, { models, store, switcher }: { models: ModelService; store: StateStore; switcher: ModelSwitcher }): void {
  api.add({
    method: 'post',
    path: '/api/models/:ref/activate',
    tag: 'models',
    summary: 'Activate a model: the regions that differ from the model in force are restored from it, at the next session end or now (now: the session ends)',
    audit: 'handler',
    params: refParams,
    body: modelActivateRequestSchema,
    replies: { 200: { description: 'The activation, and when it takes effect', schema: modelActivateReplySchema } },
    handler: async ({ res, params, body }) => {
      const p = needPrincipal(res);
      const a = await switcher.activate(params.ref, { now: body.now ?? false });
      await audit(store, res, p.actor, 'model.activate', { model: a.model.record.id, name: a.model.record.name, takesEffect: a.takesEffect, regionsToRestore: a.regionsToRestore });
      models.emit('models');
      return { model: await models.record(a.model), takesEffect: a.takesEffect, regionsToRestore: a.regionsToRestore };
    },
  });

  api.add({
    method: 'post',
    path: '/api/models/activation/cancel',
    tag: 'models',
    summary: 'Cancel the activation waiting for the next session end: the active model stays',
    audit: 'handler',
    replies: { 200: { description: 'The model that would have been activated (null: none was pending)', schema: modelActivationCancelReplySchema } },
    handler: async ({ res }) => {
      const p = needPrincipal(res);
      const m = await switcher.cancelActivation();
      if (m) await audit(store, res, p.actor, 'model.activate-cancel', { model: m.record.id, name: m.record.name });
      models.emit('models');
      return { cancelled: m ? await models.record(m) : null };
    },
  });

  api.add({
    method: 'post',
    path: '/api/models/capture',
    tag: 'models',
    summary: "Capture the host's disk as it reads now as a new model (its parent: the model in force); with activate it becomes the model in force, without a restore. Runs as a job listed in GET /api/models",
    audit: 'handler',
    body: modelCaptureRequestSchema,
    replies: { 202: { description: 'The capture started', schema: modelImportJobSchema } },
    handler: async ({ res, body }) => {
      const p = needPrincipal(res);
      await models.library.checkNameFree(body.name);
      switcher.assertSomethingToCapture();
      const session = switcher.sessionNumber;
      const job = models.runJob({ name: body.name, source: { kind: 'capture', session }, bytesTotal: null }, async (ctx) => {
        const c = await switcher.capture({ name: body.name, activate: body.activate ?? false, includePersistent: body.includePersistent ?? false, onProgress: (d, t) => ctx.progress(d, t) });
        return c.model;
      });
      await audit(store, res, p.actor, 'model.capture', { job: job.id, name: body.name, session, ...(body.activate ? { activate: true } : {}), ...(body.includePersistent ? { includePersistent: true } : {}) });
      return job;
    },
  });
}
