/**
 * The appliance's settings.
 *   GET  /api/settings
 *   POST /api/settings   {hydrationRateBytesPerSecond?, sessionEndPolicy?: {usb?, hostPowerOff?}}   audit: settings.update
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import { hydrationRateSchema, sessionEndPolicySchema } from '../../state/schema.js';
import { asyncHandler, redact, validate } from '../http-util.js';
import { audit, needPrincipal, type RouteDeps } from '../route-context.js';

const settingsBody = z
  .object({
    hydrationRateBytesPerSecond: hydrationRateSchema.optional(),
    sessionEndPolicy: sessionEndPolicySchema.partial().strict().optional(),
  })
  .strict()
  .refine((b) => b.hydrationRateBytesPerSecond !== undefined || b.sessionEndPolicy !== undefined, 'nothing to change');
const noQuery = z.object({}).strict();

export function settingsRoutes({ service, store }: RouteDeps): Router {
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
      if (body.hydrationRateBytesPerSecond !== undefined) service.setHydrationRate(body.hydrationRateBytesPerSecond);
      const next = await store.updateSettings({
        ...(body.hydrationRateBytesPerSecond !== undefined ? { hydrationRateBytesPerSecond: body.hydrationRateBytesPerSecond } : {}),
        ...(body.sessionEndPolicy ? { sessionEndPolicy: stripUndefined(body.sessionEndPolicy) } : {}),
      });
      await audit(store, res, p.actor, 'settings.update', { changes: redact(body) as Record<string, unknown> });
      res.json(next);
    }),
  );

  return r;
}

function stripUndefined<T extends Record<string, unknown>>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}
