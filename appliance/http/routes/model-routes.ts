/**
 * The active model and its verification.
 *   GET  /api/model          the active model and the last verification
 *   POST /api/model/verify   start verifying the model ({} body)   audit: model.verify
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import { HttpError, asyncHandler, validate } from '../http-util.js';
import { canVerifyModel } from '../model-verify.js';
import { audit, needPrincipal, type RouteDeps } from '../route-context.js';

const emptyBody = z.object({}).strict();
const noQuery = z.object({}).strict();

export function modelRoutes({ service, store }: RouteDeps): Router {
  const r = express.Router();

  r.get('/api/model', (req, res) => {
    validate(noQuery, req.query, 'query');
    needPrincipal(res);
    const st = service.status();
    res.json({ model: st.model, canVerify: canVerifyModel(service), verify: canVerifyModel(service) ? service.modelVerifyStatus() : null });
  });

  r.post(
    '/api/model/verify',
    asyncHandler(async (req, res) => {
      validate(emptyBody, req.body ?? {}, 'body');
      const p = needPrincipal(res);
      if (!canVerifyModel(service)) throw new HttpError(501, 'NOT_SUPPORTED', 'this daemon cannot verify the model from the web UI');
      if (service.modelVerifyStatus().state === 'running') throw new HttpError(409, 'BUSY', 'a verification is already running');
      const st = service.startModelVerify();
      await audit(store, res, p.actor, 'model.verify', { model: service.status().model.id });
      res.status(202).json(st);
    }),
  );

  return r;
}
