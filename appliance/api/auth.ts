/** Logging in, the administrator password, and API tokens: /api/auth/*, /api/tokens. */
import { z } from 'zod';
import { MIN_PASSWORD_LENGTH, newPasswordSchema } from './password.js';

export { MIN_PASSWORD_LENGTH } from './password.js';
export const ADMIN_USER = 'admin';

export const authStateSchema = z.object({
  passwordSet: z.boolean(),
  /**
   * No password yet and this client is not on the appliance itself: setting the first password
   * needs the one-time setup code the daemon wrote to DIR/setup-code and to its log.
   */
  setupCodeRequired: z.boolean(),
  authenticated: z.boolean(),
  via: z.enum(['login', 'token', 'cli']).nullable(),
  actor: z.string().nullable(),
  csrfToken: z.string().nullable(),
  minPasswordLength: z.number(),
});
export type AuthState = z.infer<typeof authStateSchema>;

export const setupBodySchema = z
  .object({
    password: newPasswordSchema,
    /** The one-time setup code; needed when GET /api/auth/state says setupCodeRequired. */
    setupCode: z.string().max(64).optional(),
  })
  .strict();
export const loginBodySchema = z
  .object({ username: z.literal(ADMIN_USER).optional(), password: z.string({ required_error: 'required' }).min(1).max(1024) })
  .strict();
export const passwordChangeBodySchema = z.object({ currentPassword: z.string().min(1).max(1024).optional(), newPassword: newPasswordSchema }).strict();
export const csrfReplySchema = z.object({ csrfToken: z.string() });

export const apiTokenInfoSchema = z.object({
  id: z.string(),
  name: z.string(),
  createdAt: z.string(),
  createdBy: z.string(),
  lastUsedAt: z.string().nullable(),
});
export type ApiTokenInfo = z.infer<typeof apiTokenInfoSchema>;

export const tokenListSchema = z.object({ tokens: z.array(apiTokenInfoSchema) });
export const tokenCreateBodySchema = z
  .object({
    name: z
      .string({ required_error: 'required' })
      .trim()
      .min(1, 'required')
      .max(64, 'at most 64 characters')
      .regex(/^[\w .@:-]+$/, 'letters, digits, spaces and . _ @ : - only'),
  })
  .strict();
export const tokenCreatedSchema = z.object({
  id: z.string(),
  name: z.string(),
  createdAt: z.string(),
  /** The token itself (sbk_…): shown once, never again. */
  token: z.string(),
});
export const tokenParamsSchema = z.object({ id: z.string().regex(/^[0-9a-f]{12}$/, 'not a token id') }).strict();
