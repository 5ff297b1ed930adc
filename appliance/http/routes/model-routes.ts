/** The active model and its verification: GET /api/model, POST /api/model/verify (audit: model.verify). */
import { emptyBodySchema } from '../../api/common.js';
import { modelInfoSchema, modelVerifyStatusSchema, type ModelInfo, type ModelVerifyStatus } from '../../api/model.js';
import type { ApplianceService } from '../../session/appliance-service.js';
import type { ApiRouter } from '../api-router.js';
import { HttpError } from '../http-util.js';
import { audit, needPrincipal, type RouteDeps } from '../route-context.js';

/**
 * "Verify now" is an optional part of an ApplianceService: one that has these methods (and
 * emits 'model-verify' with the progress) gets the button; one that does not answers 501.
 */
export interface ModelVerifyCapable {
  startModelVerify(): ModelVerifyStatus;
  modelVerifyStatus(): ModelVerifyStatus;
}

export function canVerifyModel(s: ApplianceService): s is ApplianceService & ModelVerifyCapable {
  const x = s as unknown as Partial<ModelVerifyCapable>;
  return typeof x.startModelVerify === 'function' && typeof x.modelVerifyStatus === 'function';
}

export function modelRoutes(api: ApiRouter, { service, store }: RouteDeps): void {
  api.add({
    method: 'get',
    path: '/api/model',
    tag: 'model',
    summary: 'The active model and its last verification',
    replies: { 200: { description: 'The model', schema: modelInfoSchema } },
    handler: (): ModelInfo => ({
      model: service.status().model,
      canVerify: canVerifyModel(service),
      verify: canVerifyModel(service) ? service.modelVerifyStatus() : null,
    }),
  });

  api.add({
    method: 'post',
    path: '/api/model/verify',
    tag: 'model',
    summary: 'Start hashing every region of the model against its manifest (progress in GET /api/model and live events)',
    audit: 'handler',
    body: emptyBodySchema,
    replies: { 202: { description: 'Started', schema: modelVerifyStatusSchema } },
    handler: async ({ res }) => {
      const p = needPrincipal(res);
      if (!canVerifyModel(service)) throw new HttpError(501, 'NOT_SUPPORTED', 'this daemon cannot verify the model from the web UI');
      if (service.modelVerifyStatus().state === 'running') throw new HttpError(409, 'BUSY', 'a verification is already running');
      const st = service.startModelVerify();
      await audit(store, res, p.actor, 'model.verify', { model: service.status().model.id });
      return st;
    },
  });
}
