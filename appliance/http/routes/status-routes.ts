/**
 * The appliance's status.
 *   GET /api/status   mode, restore mode, session, regions, hydration, host, model, disk
 */
import express, { type Router } from 'express';
import type { RouteDeps } from '../route-context.js';

export function statusRoutes({ service }: RouteDeps): Router {
  const router = express.Router();
  router.get('/api/status', (_req, res) => {
    res.json(service.status());
  });
  return router;
}
