/**
 * API tokens (for scripts: Authorization: Bearer sbk_…). Only a login or the CLI manages them.
 *   GET    /api/tokens       the tokens, never their secrets
 *   POST   /api/tokens       {name} → the token, shown once   audit: token.create
 *   DELETE /api/tokens/:id   revoke                           audit: token.revoke
 */
import express, { type Response, type Router } from 'express';
import { z } from 'zod';
import type { Principal } from '../auth.js';
import { HttpError, asyncHandler, validate } from '../http-util.js';
import { newApiToken, sha256Hex } from '../passwords.js';
import { audit, needPrincipal, type RouteDeps } from '../route-context.js';

const tokenBody = z
  .object({
    name: z
      .string({ required_error: 'required' })
      .trim()
      .min(1, 'required')
      .max(64, 'at most 64 characters')
      .regex(/^[\w .@:-]+$/, 'letters, digits, spaces and . _ @ : - only'),
  })
  .strict();
const tokenParams = z.object({ id: z.string().regex(/^[0-9a-f]{12}$/, 'not a token id') }).strict();
const noQuery = z.object({}).strict();

function needTokenManager(res: Response): Principal {
  const p = needPrincipal(res);
  if (p.kind === 'token') throw new HttpError(403, 'FORBIDDEN', 'API tokens cannot manage API tokens');
  return p;
}

export function tokenRoutes({ store }: RouteDeps): Router {
  const r = express.Router();

  r.get('/api/tokens', (req, res) => {
    validate(noQuery, req.query, 'query');
    needTokenManager(res);
    res.json({
      tokens: store.listTokens().map((t) => ({ id: t.id, name: t.name, createdAt: t.createdAt, createdBy: t.createdBy, lastUsedAt: t.lastUsedAt })),
    });
  });

  r.post(
    '/api/tokens',
    asyncHandler(async (req, res) => {
      const body = validate(tokenBody, req.body, 'body');
      const p = needTokenManager(res);
      if (store.listTokens().length >= 100) throw new HttpError(409, 'TOO_MANY', 'at most 100 API tokens; revoke one first');
      const t = newApiToken();
      const createdAt = new Date().toISOString();
      await store.addToken({ id: t.id, name: body.name, secretHash: sha256Hex(t.secret), createdAt, createdBy: p.actor, lastUsedAt: null });
      await audit(store, res, p.actor, 'token.create', { id: t.id, name: body.name });
      res.status(201).json({ id: t.id, name: body.name, createdAt, token: t.token });
    }),
  );

  r.delete(
    '/api/tokens/:id',
    asyncHandler(async (req, res) => {
      const { id } = validate(tokenParams, req.params, 'params');
      const p = needTokenManager(res);
      const rec = store.findToken(id);
      if (!rec || !(await store.removeToken(id))) throw new HttpError(404, 'NOT_FOUND', `no API token ${id}`);
      await audit(store, res, p.actor, 'token.revoke', { id, name: rec.name });
      res.status(204).end();
    }),
  );

  return r;
}
