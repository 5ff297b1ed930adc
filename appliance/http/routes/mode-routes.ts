/** How the disk is protected and restored: POST /api/mode, /api/restore-mode, /api/hydration. */
import type { z } from 'zod';
import { hydrationBodySchema, modeBodySchema, restoreModeBodySchema } from '../../api/modes.js';
import type { ApiRouter } from '../api-router.js';
import type { RouteDeps } from '../route-context.js';

/** A route that sets one value: the body is the new value, and so is the reply. */
interface Setter<S extends z.AnyZodObject> {
  path: string;
  summary: string;
  audit: string;
  body: S;
  reply: string;
  apply(body: z.infer<S>): Promise<unknown>;
}

function addSetter<S extends z.AnyZodObject>(api: ApiRouter, s: Setter<S>): void {
  api.add({
    method: 'post',
    path: s.path,
    tag: 'modes',
    summary: s.summary,
    audit: s.audit,
    body: s.body,
    replies: { 200: { description: s.reply, schema: s.body } },
    handler: async ({ body }) => {
      await s.apply(body);
      return body;
    },
  });
}

export function modeRoutes(api: ApiRouter, { service }: RouteDeps): void {
  addSetter(api, {
    path: '/api/mode',
    summary: 'Freeze (every session ends with a restore) or thaw (changes are kept)',
    audit: 'mode.set',
    body: modeBodySchema,
    reply: 'The new mode',
    apply: (b) => service.setMode(b.mode),
  });
  addSetter(api, {
    path: '/api/restore-mode',
    summary: 'Instant (restore in the background, reads fetch from the model) or eager (restore before the host reads)',
    audit: 'restore-mode.set',
    body: restoreModeBodySchema,
    reply: 'The new restore mode',
    apply: (b) => service.setRestoreMode(b.restoreMode),
  });
  addSetter(api, {
    path: '/api/hydration',
    summary: 'The background restore rate limit (bytes per second; null: unlimited)',
    audit: 'hydration-rate.set',
    body: hydrationBodySchema,
    reply: 'The new rate',
    apply: (b) => service.setHydrationRate(b.rateBytesPerSecond),
  });
}
