/**
 * Persistent areas: GET, POST and DELETE /api/persistent (and `snapback persistent`). A
 * persistent area is a partition or a byte range of the host's disk whose writes are kept across
 * session ends even when frozen. Areas are whole regions of the write log: a request is narrowed
 * inward to whole regions (`adjustment` says so). Changes take effect at the next session end.
 */
import { z } from 'zod';

const byteRangeSchema = z.object({ offset: z.number().int().nonnegative(), length: z.number().int().positive() }).strict();

export const persistentAreaSchema = z
  .object({
    /** Short id, unique in this state directory (`persistent remove --id`). */
    id: z.string().regex(/^[0-9]{1,9}$/),
    /** The bytes kept: whole regions. */
    offset: z.number().int().nonnegative(),
    length: z.number().int().positive(),
    /** The partition it was added as (its bytes as the partition table said then), or null for a range. */
    partition: z.number().int().positive().nullable(),
    /** What was asked for, before rounding to whole regions. */
    requested: byteRangeSchema,
    addedAt: z.string(),
  })
  .strict();
export type PersistentArea = z.infer<typeof persistentAreaSchema>;

export const persistentListSchema = z
  .object({
    regionSize: z.number().int().positive(),
    diskSize: z.number().int().positive(),
    /** The areas in force now. */
    active: z.array(persistentAreaSchema),
    /** The areas that will be in force from the next session end; null when no change waits. */
    pending: z.array(persistentAreaSchema).nullable(),
  })
  .strict();
export type PersistentList = z.infer<typeof persistentListSchema>;

/** POST /api/persistent: a partition by number, or a range "OFFSET:LENGTH" (sizes may end in K, M, G, T). */
export const persistentAddRequestSchema = z.union([
  z.object({ partition: z.number().int() }).strict(),
  z.object({ range: z.string().min(1).max(100) }).strict(),
]);
export type PersistentAddRequest = z.infer<typeof persistentAddRequestSchema>;

/** DELETE /api/persistent?id=… | ?partition=N | ?range=OFFSET:LENGTH (exactly one). */
export const persistentRemoveQuerySchema = z
  .object({
    id: z.string().min(1).max(20).optional(),
    partition: z.string().regex(/^-?[0-9]{1,9}$/, 'a partition number').optional(),
    range: z.string().min(1).max(100).optional(),
  })
  .strict()
  .refine((q) => [q.id, q.partition, q.range].filter((x) => x !== undefined).length === 1, { message: 'give exactly one of id, partition, range' });
export type PersistentRemoveQuery = z.infer<typeof persistentRemoveQuerySchema>;

export const persistentChangeReplySchema = z
  .object({
    /** The area added or removed. */
    area: persistentAreaSchema,
    /** How the request was rounded to whole regions and why; null when it was aligned already. */
    adjustment: z.string().nullable(),
    takesEffect: z.literal('next-session-end'),
    list: persistentListSchema,
  })
  .strict();
export type PersistentChangeReply = z.infer<typeof persistentChangeReplySchema>;
