/** POST /api/mode, /api/restore-mode, /api/hydration: how the disk is protected and restored. */
import { z } from 'zod';
import { protectionModeSchema, restoreModeSchema } from './common.js';

/** Background restore rate limit in bytes per second; null is unlimited. */
export const hydrationRateSchema = z
  .number()
  .int()
  .positive()
  .max(2 ** 40)
  .nullable();

export const modeBodySchema = z.object({ mode: protectionModeSchema }).strict();
export const restoreModeBodySchema = z.object({ restoreMode: restoreModeSchema }).strict();
export const hydrationBodySchema = z.object({ rateBytesPerSecond: hydrationRateSchema }).strict();
