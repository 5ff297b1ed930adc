/**
 * API tokens (for scripts: Authorization: Bearer sbk_…). Only a login or the CLI manages them.
 * Audit actions: token.create, token.revoke (written by the handlers).
 */
import type { Response } from 'express';
import { tokenCreateBodySchema, tokenCreatedSchema, tokenListSchema, tokenParamsSchema } from '../../api/auth.js';
import type { ApiRouter } from '../api-router.js';
import type { Principal } from '../auth.js';
import { HttpError } from '../http-util.js';
import { newApiToken, sha256Hex } from '../passwords.js';
import { audit, needPrincipal, type AccountDeps } from '../route-context.js';

const MAX_TOKENS = 100;

function needTokenManager(res: Response): Principal {
  const p = needPrincipal(res);
  if (p.kind === 'token') throw new HttpError(403, 'FORBIDDEN', 'API tokens cannot manage API tokens');
  return p;
}

export function tokenRoutes(api: ApiRouter, { store, live }: AccountDeps): void {
  api.add({
    method: 'get',
    path: '/api/tokens',
    tag: 'tokens',
    summary: 'The API tokens (never their secrets)',
    replies: { 200: { description: 'The tokens', schema: tokenListSchema } },
    handler: ({ res }) => {
      needTokenManager(res);
      return { tokens: store.listTokens().map((t) => ({ id: t.id, name: t.name, createdAt: t.createdAt, createdBy: t.createdBy, lastUsedAt: t.lastUsedAt })) };
    },
  });

  api.add({
    method: 'post',
    path: '/api/tokens',
    tag: 'tokens',
    summary: 'Make an API token; the token is shown in this reply only',
    audit: 'handler',
    body: tokenCreateBodySchema,
    replies: { 201: { description: 'The new token', schema: tokenCreatedSchema } },
    handler: async ({ res, body }) => {
      const p = needTokenManager(res);
      if (store.listTokens().length >= MAX_TOKENS) throw new HttpError(409, 'TOO_MANY', `at most ${MAX_TOKENS} API tokens; revoke one first`);
      const t = newApiToken();
      const createdAt = new Date().toISOString();
      await store.addToken({ id: t.id, name: body.name, secretHash: sha256Hex(t.secret), createdAt, createdBy: p.actor, lastUsedAt: null });
      await audit(store, res, p.actor, 'token.create', { id: t.id, name: body.name });
      return { id: t.id, name: body.name, createdAt, token: t.token };
    },
  });

  api.add({
    method: 'delete',
    path: '/api/tokens/:id',
    tag: 'tokens',
    summary: 'Revoke an API token; its live-update streams close',
    audit: 'handler',
    params: tokenParamsSchema,
    replies: { 204: { description: 'Revoked' } },
    handler: async ({ res, params }) => {
      const p = needTokenManager(res);
      const rec = store.findToken(params.id);
      if (!rec || !(await store.removeToken(params.id))) throw new HttpError(404, 'NOT_FOUND', `no API token ${params.id}`);
      live.dropToken(params.id);
      await audit(store, res, p.actor, 'token.revoke', { id: params.id, name: rec.name });
      res.status(204).end();
    },
  });
}
