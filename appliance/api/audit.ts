/** The audit log: GET /api/audit (and the live `audit` event). */
import { z } from 'zod';

export const auditEntrySchema = z
  .object({
    id: z.number().int().positive(),
    at: z.string(),
    actor: z.string(),
    action: z.string(),
    details: z.record(z.unknown()).optional(),
  })
  .strict();
export type AuditEntry = z.infer<typeof auditEntrySchema>;

export const auditQuerySchema = z
  .object({
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    before: z.coerce.number().int().positive().optional(),
  })
  .strict();
export const auditPageSchema = z.object({ entries: z.array(auditEntrySchema) });
