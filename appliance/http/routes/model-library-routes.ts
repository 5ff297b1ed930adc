/**
 * The model library:
 *   GET    /api/models               → ModelList (models, and imports still running or just ended)
 *   POST   /api/models/import        {source, name, lazy?} → 202 the import job (audit: model.import)
 *   GET    /api/models/imports/:id   → the import job (poll until done or failed)
 *   PATCH  /api/models/:ref          {name} → the renamed model (audit: model.rename)
 *   DELETE /api/models/:ref[?force=true] → the removed model (audit: model.remove)
 * `:ref` is a model's name, id or unique id prefix. An import's source is a path on the
 * appliance or an http(s) URL (when the daemon has a URL importer).
 */
import { z } from 'zod';
import { modelImportJobSchema, modelImportRequestSchema, modelListSchema, modelRecordSchema, modelRenameRequestSchema } from '../../api/models.js';
import type { ModelService } from '../../session/model-service.js';
import type { StateStore } from '../../state/state-store.js';
import type { ApiRouter } from '../api-router.js';
import { audit, needPrincipal } from '../route-context.js';

const refParams = z.object({ ref: z.string().min(1).max(200) });
const jobParams = z.object({ id: z.string().regex(/^[0-9a-f]{16}$/, 'an import job id is 16 hex digits') });
const removeQuery = z.object({ force: z.enum(['true', 'false']).optional() }).strict();

export function modelLibraryRoutes(api: ApiRouter, { models, store }: { models: ModelService; store: StateStore }): void {
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
}
