/** The active model and its verification: GET /api/model, POST /api/model/verify. */
import { z } from 'zod';
import { applianceStatusSchema } from './status.js';

export const modelVerifyStatusSchema = z.object({
  state: z.enum(['idle', 'running', 'passed', 'failed']),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  regionsTotal: z.number(),
  regionsDone: z.number(),
  bytesPerSecond: z.number(),
  /** Regions whose hash did not match the manifest (the first ones found). */
  badRegions: z.array(z.number()),
  /** Why a verification failed other than a mismatch (I/O error, …). */
  error: z.string().nullable(),
});
export type ModelVerifyStatus = z.infer<typeof modelVerifyStatusSchema>;

export const modelInfoSchema = z.object({
  model: applianceStatusSchema.shape.model,
  canVerify: z.boolean(),
  verify: modelVerifyStatusSchema.nullable(),
});
export type ModelInfo = z.infer<typeof modelInfoSchema>;
