/**
 * How the disk is protected and restored.
 *   POST /api/mode           {mode: "frozen"|"thawed"}           audit: mode.set
 *   POST /api/restore-mode   {restoreMode: "instant"|"eager"}    audit: restore-mode.set
 *   POST /api/hydration      {rateBytesPerSecond: number|null}   audit: hydration-rate.set
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import { parseBody, sendFailure } from '../http-util.js';
import { auditAs, type RouteDeps } from '../route-context.js';

const modeSchema = z.object({ mode: z.enum(['frozen', 'thawed']) }).strict();
const restoreModeSchema = z.object({ restoreMode: z.enum(['instant', 'eager']) }).strict();
const hydrationSchema = z.object({ rateBytesPerSecond: z.number().int().positive().max(2 ** 40).nullable() }).strict();

export function modeRoutes({ service }: RouteDeps): Router {
  const router = express.Router();
  const json = express.json({ limit: '16kb' });

  router.post('/api/mode', auditAs('mode.set'), json, (req, res) => {
    const body = parseBody(modeSchema, req.body, res);
    if (!body) return;
    service.setMode(body.mode).then(
      () => res.json({ mode: body.mode }),
      (err: unknown) => sendFailure(res, err),
    );
  });

  router.post('/api/restore-mode', auditAs('restore-mode.set'), json, (req, res) => {
    const body = parseBody(restoreModeSchema, req.body, res);
    if (!body) return;
    service.setRestoreMode(body.restoreMode).then(
      () => res.json({ restoreMode: body.restoreMode }),
      (err: unknown) => sendFailure(res, err),
    );
  });

  router.post('/api/hydration', auditAs('hydration-rate.set'), json, (req, res) => {
    const body = parseBody(hydrationSchema, req.body, res);
    if (!body) return;
    service.setHydrationRate(body.rateBytesPerSecond).then(
      () => res.json({ rateBytesPerSecond: body.rateBytesPerSecond }),
      (err: unknown) => sendFailure(res, err),
    );
  });

  return router;
}
