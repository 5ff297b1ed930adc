/** The region map: GET /api/regions, and the live `regions` event. */
import { z } from 'zod';

export { RegionState } from './region-map-wire.js';

/**
 * The map, compact: `runs` (run-lengths) or `bits2` (two bits per region), whichever is smaller
 * (region-map-wire.ts says how; appliance/session/region-map-codec.ts encodes).
 */
export const regionMapSchema = z.object({
  regionSize: z.number(),
  count: z.number(),
  written: z.number(),
  pending: z.number(),
  encoding: z.enum(['runs', 'bits2']),
  legend: z.record(z.string()),
  /** The encoded map, base64. */
  data: z.string(),
});
export type RegionMapReply = z.infer<typeof regionMapSchema>;
