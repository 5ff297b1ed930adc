/**
 * Enrollment: GET|POST /api/enroll-codes, DELETE /api/enroll-codes/:id (an administrator), and
 * POST /api/enroll (an appliance redeems a code; no login, failures rate-limited like logins).
 * Audit actions: enroll-code.create, enroll-code.remove, appliance.enroll, appliance.enroll-failed.
 */
import type { Request, Response } from 'express';
import { enrollCodeCreateSchema, enrollCodeCreatedSchema, enrollCodeListSchema, enrollCodeParamsSchema } from '../../../appliance/api/console.js';
import { enrollReplySchema, enrollRequestSchema, type EnrollRequest } from '../../../appliance/api/fleet.js';
import type { ApiRouter } from '../../../appliance/http/api-router.js';
import { HttpError } from '../../../appliance/http/http-util.js';
import type { LoginRateLimit } from '../../../appliance/http/login-rate-limit.js';
import { audit, clientOf, needPrincipal } from '../../../appliance/http/route-context.js';
import type { ConsoleDeps } from '../route-deps.js';

export function enrollRoutes(api: ApiRouter, { store, enrollment }: ConsoleDeps, rateLimit: LoginRateLimit): void {
  api.add({
    method: 'get',
    path: '/api/enroll-codes',
    tag: 'enrollment',
    summary: 'The enrollment codes made (never the codes themselves): for whom, until when, used by whom',
    replies: { 200: { description: 'The codes', schema: enrollCodeListSchema } },
    handler: () => enrollment.list(),
  });

  api.add({
    method: 'post',
    path: '/api/enroll-codes',
    tag: 'enrollment',
    summary: 'Make a one-time enrollment code (optionally for one appliance name); the code is shown in this reply only',
    audit: 'handler',
    body: enrollCodeCreateSchema,
    replies: { 201: { description: 'The code', schema: enrollCodeCreatedSchema } },
    handler: async ({ res, body }) => {
      const p = needPrincipal(res);
      const c = enrollment.create({ ...(body.name !== undefined ? { name: body.name } : {}), ...(body.validHours !== undefined ? { validHours: body.validHours } : {}) });
      await audit(store, res, p.actor, 'enroll-code.create', { id: c.id, name: c.name, expiresAt: c.expiresAt });
      res.status(201);
      return c;
    },
  });

  api.add({
    method: 'delete',
    path: '/api/enroll-codes/:id',
    tag: 'enrollment',
    summary: 'Withdraw an enrollment code',
    audit: 'enroll-code.remove',
    params: enrollCodeParamsSchema,
    replies: { 204: { description: 'Withdrawn' } },
    handler: ({ res, params }) => {
      if (!store.removeEnrollCode(params.id)) throw new HttpError(404, 'NOT_FOUND', `no enrollment code ${params.id}`);
      res.status(204).end();
    },
  });

  api.add({
    method: 'post',
    path: '/api/enroll',
    tag: 'enrollment',
    public: true,
    summary: "An appliance redeems its one-time code for its broker account (and the broker's CA)",
    audit: 'handler',
    use: rateLimit.middleware,
    body: enrollRequestSchema,
    replies: { 200: { description: 'The broker URL and credentials', schema: enrollReplySchema } },
    handler: async ({ req, res, body }: { req: Request; res: Response; body: EnrollRequest }) => {
      try {
        const reply = await enrollment.redeem(body.code, body.name);
        await rateLimit.succeeded(req);
        await audit(store, res, `appliance:${body.name}`, 'appliance.enroll', { client: clientOf(req) });
        return reply;
      } catch (err) {
        if (err instanceof HttpError && err.status === 403) await audit(store, res, 'anonymous', 'appliance.enroll-failed', { name: body.name, client: clientOf(req), reason: err.message });
        throw err;
      }
    },
  });
}
