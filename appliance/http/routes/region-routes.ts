/**
 * The region map.
 *   GET /api/regions   one state per region, base64 (0 clean, 1 written, 2 pending)
 */
import express, { type Router } from 'express';
import type { RouteDeps } from '../route-context.js';

export function regionRoutes({ service }: RouteDeps): Router {
  const router = express.Router();
  router.get('/api/regions', (_req, res) => {
    const map = service.regionMap();
    const st = service.status();
    res.json({ regionSize: st.regions.regionSize, count: map.length, encoding: 'base64', legend: { 0: 'clean', 1: 'written', 2: 'pending' }, states: Buffer.from(map).toString('base64') });
  });
  return router;
}
