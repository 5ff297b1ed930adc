/**
 * The region map.
 *   GET /api/regions   the map, compact: {count, written, pending, encoding: 'runs' | 'bits2',
 *                      data: base64} (0 clean, 1 written, 2 pending; appliance/session/region-map-codec.ts)
 */
import express, { type NextFunction, type Router } from 'express';
import type { RouteDeps } from '../route-context.js';

export function regionRoutes({ service }: RouteDeps): Router {
  const router = express.Router();
  router.get('/api/regions', (_req, res, next: NextFunction) => {
    service.regionMap().then((map) => {
      const st = service.status();
      res.json({
        regionSize: st.regions.regionSize,
        count: map.count,
        written: map.written,
        pending: map.pending,
        encoding: map.encoding,
        legend: { 0: 'clean', 1: 'written', 2: 'pending' },
        data: Buffer.from(map.data.buffer, map.data.byteOffset, map.data.byteLength).toString('base64'),
      });
    }, next);
  });
  return router;
}
