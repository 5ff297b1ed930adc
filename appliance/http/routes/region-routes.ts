/**
 * The region map: GET /api/regions, compact ({count, written, pending, encoding: 'runs' | 'bits2',
 * data: base64}; 0 clean, 1 written, 2 pending; appliance/session/region-map-codec.ts).
 */
import { regionMapSchema, type RegionMapReply } from '../../api/regions.js';
import type { ApiRouter } from '../api-router.js';
import type { RouteDeps } from '../route-context.js';

export function regionRoutes(api: ApiRouter, { service }: RouteDeps): void {
  api.add({
    method: 'get',
    path: '/api/regions',
    tag: 'regions',
    summary: 'The region map, run-length or two-bit encoded (whichever is smaller), base64',
    replies: { 200: { description: 'The map', schema: regionMapSchema } },
    handler: async (): Promise<RegionMapReply> => {
      const map = await service.regionMap();
      const st = service.status();
      return {
        regionSize: st.regions.regionSize,
        count: map.count,
        written: map.written,
        pending: map.pending,
        encoding: map.encoding,
        legend: { 0: 'clean', 1: 'written', 2: 'pending' },
        data: Buffer.from(map.data.buffer, map.data.byteOffset, map.data.byteLength).toString('base64'),
      };
    },
  });
}
