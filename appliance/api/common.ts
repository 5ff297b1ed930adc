/** Shapes shared by several resources of the HTTP API. */
import { z } from 'zod';

/** Every error reply: a machine-readable code and a sentence for people. */
export const apiErrorSchema = z.object({
  error: z.string().describe('machine-readable code, e.g. BAD_ARGUMENT, UNAUTHENTICATED, BUSY'),
  message: z.string(),
});
export type ApiErrorBody = z.infer<typeof apiErrorSchema>;

/** A request with no body, or `{}`. */
export const emptyBodySchema = z.object({}).strict();
/** A request without query parameters. */
export const noQuerySchema = z.object({}).strict();

export const protectionModeSchema = z.enum(['frozen', 'thawed']);
export type ProtectionMode = z.infer<typeof protectionModeSchema>;
export const restoreModeSchema = z.enum(['instant', 'eager']);
export type RestoreMode = z.infer<typeof restoreModeSchema>;
