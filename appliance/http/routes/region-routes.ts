/** The region map: GET /api/regions. */
import { regionMapSchema, type RegionMapReply } from '../../api/regions.js';
import type { ApiRouter } from '../api-router.js';
import type { RouteDeps } from '../route-context.js';

export function regionRoutes(api: ApiRouter, { service }: RouteDeps): void {
  api.add({
    method: 'get',
    path: '/api/regions',
    tag: 'regions',
    summary: 'The region map: one state per region, base64 (0 clean, 1 written, 2 pending)',
    replies: { 200: { description: 'The map', schema: regionMapSchema } },
    handler: (): RegionMapReply => {
      const map = service.regionMap();
      const st = service.status();
      return { regionSize: st.regions.regionSize, count: map.length, encoding: 'base64', legend: { 0: 'clean', 1: 'written', 2: 'pending' }, states: Buffer.from(map).toString('base64') };
    },
  });
}
