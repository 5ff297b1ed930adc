/** The region map: GET /api/regions, and the live `regions` event. */
import { z } from 'zod';

/** Region states in the region map (two bits each on the wire). */
export const RegionState = { clean: 0, written: 1, pending: 2 } as const;

/**
 * The map, compact: `runs` (run-lengths) or `bits2` (two bits per region), whichever is smaller
 * (appliance/session/region-map-codec.ts encodes and decodes both).
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
