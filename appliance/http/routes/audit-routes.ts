/** The audit log: GET /api/audit?limit=&before= (newest first). */
import { auditPageSchema, auditQuerySchema } from '../../api/audit.js';
import type { ApiRouter } from '../api-router.js';
import type { AccountDeps } from '../route-context.js';

export function auditRoutes(api: ApiRouter, { store }: Pick<AccountDeps, 'store'>): void {
  api.add({
    method: 'get',
    path: '/api/audit',
    tag: 'audit',
    summary: 'The audit log, newest first; `before` pages backwards by entry id',
    query: auditQuerySchema,
    replies: { 200: { description: 'A page of entries', schema: auditPageSchema } },
    handler: ({ query }) => ({ entries: store.listAudit({ limit: query.limit ?? 100, ...(query.before !== undefined ? { beforeId: query.before } : {}) }) }),
  });
}
