/**
 * The audit log.
 *   GET /api/audit?limit=&before=   the audit log, newest first
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import { validate } from '../http-util.js';
import { needPrincipal, type RouteDeps } from '../route-context.js';

const auditQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    before: z.coerce.number().int().positive().optional(),
  })
  .strict();

export function auditRoutes({ store }: RouteDeps): Router {
  const r = express.Router();
  r.get('/api/audit', (req, res) => {
    const q = validate(auditQuery, req.query, 'query');
    needPrincipal(res);
    res.json({ entries: store.listAudit({ limit: q.limit ?? 100, ...(q.before !== undefined ? { beforeId: q.before } : {}) }) });
  });
  return r;
}
