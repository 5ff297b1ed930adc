/**
 * Persistent areas (docs/persistent-areas.md):
 *   GET    /api/persistent                              → PersistentList
 *   POST   /api/persistent {partition} | {range}        → PersistentChangeReply (audit: persistent.add)
 *   DELETE /api/persistent?id=… | ?partition=N | ?range=OFFSET:LENGTH → PersistentChangeReply (audit: persistent.remove)
 * Changes take effect at the next session end (audit: persistent.apply, by the session manager).
 */
import { persistentAddRequestSchema, persistentChangeReplySchema, persistentListSchema, persistentRemoveQuerySchema } from '../../api/persistent.js';
import type { PersistentAreas } from '../../storage/persistent-areas.js';
import type { StateStore } from '../../state/state-store.js';
import type { ApiRouter } from '../api-router.js';
import { audit, needPrincipal } from '../route-context.js';

const PERSISTENT_AUDIT = { add: 'persistent.add', remove: 'persistent.remove' } as const;

export function persistentRoutes(api: ApiRouter, { areas, store }: { areas: () => PersistentAreas; store: StateStore }): void {
  api.add({
    method: 'get',
    path: '/api/persistent',
    tag: 'persistent',
    summary: 'The persistent areas in force, and the list waiting for the next session end',
    replies: { 200: { description: 'The persistent areas', schema: persistentListSchema } },
    handler: () => areas().list(),
  });

  api.add({
    method: 'post',
    path: '/api/persistent',
    tag: 'persistent',
    summary: 'Make a partition or a byte range persistent from the next session end (narrowed inward to whole regions)',
    audit: 'handler',
    body: persistentAddRequestSchema,
    replies: { 200: { description: 'The area added to the waiting list', schema: persistentChangeReplySchema } },
    handler: async ({ res, body }) => {
      const p = needPrincipal(res);
      const c = await areas().add(body);
      await audit(store, res, p.actor, PERSISTENT_AUDIT.add, { id: c.area.id, offset: c.area.offset, length: c.area.length, partition: c.area.partition, ...(c.adjustment ? { adjustment: c.adjustment } : {}) });
      return c;
    },
  });

  api.add({
    method: 'delete',
    path: '/api/persistent',
    tag: 'persistent',
    summary: 'Stop keeping an area from the next session end (a frozen session end then restores it)',
    audit: 'handler',
    query: persistentRemoveQuerySchema,
    replies: { 200: { description: 'The area removed from the waiting list', schema: persistentChangeReplySchema } },
    handler: async ({ res, query }) => {
      const p = needPrincipal(res);
      const c = await areas().remove(query);
      await audit(store, res, p.actor, PERSISTENT_AUDIT.remove, { id: c.area.id, offset: c.area.offset, length: c.area.length, partition: c.area.partition });
      return c;
    },
  });
}
