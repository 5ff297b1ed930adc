/**
 * Models still arriving from their URLs:
 *   PATCH /api/models/:ref/download  {rateLimitBytesPerSecond} → the download (audit: model.download-rate)
 * The rate is the background download's (reads of the host fetch what they need at once); it is
 * kept with the model and survives a restart. The download's progress, and whether it is
 * stalled, are in GET /api/models (each model's `download`) and in the status's components.
 */
import { z } from 'zod';
import { modelDownloadRateRequestSchema, modelDownloadSchema } from '../../api/models.js';
import type { ModelDownloads } from '../../session/model-downloads.js';
import type { ModelService } from '../../session/model-service.js';
import type { StateStore } from '../../state/state-store.js';
import type { ApiRouter } from '../api-router.js';
import { audit, needPrincipal } from '../route-context.js';

const refParams = z.object({ ref: z.string().min(1).max(200) });

export function modelDownloadRoutes(api: ApiRouter, { models, downloads, store }: { models: ModelService; downloads: ModelDownloads; store: StateStore }): void {
  api.add({
    method: 'patch',
    path: '/api/models/:ref/download',
    tag: 'models',
    summary: "Set the background download rate of a model still arriving from its URL (bytes per second; null for unlimited); kept across restarts",
    audit: 'handler',
    params: refParams,
    body: modelDownloadRateRequestSchema,
    replies: { 200: { description: 'The download', schema: modelDownloadSchema } },
    handler: async ({ res, params, body }) => {
      const p = needPrincipal(res);
      const m = await models.get(params.ref);
      const d = await downloads.setRate(m.id, body.rateLimitBytesPerSecond);
      await audit(store, res, p.actor, 'model.download-rate', { model: m.id, rateLimitBytesPerSecond: body.rateLimitBytesPerSecond });
      return d;
    },
  });
}
