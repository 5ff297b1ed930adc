/** The region map: GET /api/regions. */
import { z } from 'zod';

/** Region states in the compact map: one byte per region. */
export const RegionState = { clean: 0, written: 1, pending: 2 } as const;

export const regionMapSchema = z.object({
  regionSize: z.number(),
  count: z.number(),
  encoding: z.literal('base64'),
  legend: z.record(z.string()),
  /** One byte per region (RegionState), base64. */
  states: z.string(),
});
export type RegionMapReply = z.infer<typeof regionMapSchema>;
