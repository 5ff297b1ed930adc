/**
 * The rule for a new administrator password, shared by the HTTP API (setup and password change)
 * and `snapback passwd`, so every way of setting it accepts the same passwords. Node-free.
 */
import { z } from 'zod';

export const MIN_PASSWORD_LENGTH = 8;
export const MAX_PASSWORD_LENGTH = 256;

export const newPasswordSchema = z
  .string({ required_error: 'required' })
  .min(MIN_PASSWORD_LENGTH, `at least ${MIN_PASSWORD_LENGTH} characters`)
  .max(MAX_PASSWORD_LENGTH, `at most ${MAX_PASSWORD_LENGTH} characters`)
  .refine((s) => s.trim().length > 0, 'must not be only spaces');
