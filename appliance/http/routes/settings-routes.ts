/**
 * The appliance's settings.
 *   GET  /api/settings
 *   POST /api/settings   {hydrationRateBytesPerSecond}   audit: settings.update
 * The state store owns these settings; the session manager applies what is saved here.
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import { hydrationRateSchema } from '../../state/schema.js';
import { asyncHandler, redact, validate } from '../http-util.js';
import { audit, needPrincipal, type RouteDeps } from '../route-context.js';

const settingsBody = z
  .object({
    hydrationRateBytesPerSecond: hydrationRateSchema.optional(),
  })
  .strict()
  .refine((b) => b.hydrationRateBytesPerSecond !== undefined, 'nothing to change');
const noQuery = z.object({}).strict();

export function settingsRoutes({ store }: RouteDeps): Router {
  const r = express.Router();

  r.get('/api/settings', (req, res) => {
    validate(noQuery, req.query, 'query');
    needPrincipal(res);
    res.json(store.settings());
  });

  r.post(
    '/api/settings',
    asyncHandler(async (req, res) => {
      const body = validate(settingsBody, req.body, 'body');
      const p = needPrincipal(res);
      const next = await store.updateSettings(body);
      await audit(store, res, p.actor, 'settings.update', { changes: redact(body) as Record<string, unknown> });
      res.json(next);
    }),
  );

  return r;
}
