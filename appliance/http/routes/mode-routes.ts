/** How the disk is protected and restored: POST /api/mode, /api/restore-mode, /api/hydration. */
import { hydrationBodySchema, modeBodySchema, restoreModeBodySchema } from '../../api/modes.js';
import type { ApiRouter } from '../api-router.js';
import type { RouteDeps } from '../route-context.js';

export function modeRoutes(api: ApiRouter, { service }: RouteDeps): void {
  api.add({
    method: 'post',
    path: '/api/mode',
    tag: 'modes',
    summary: 'Freeze (every session ends with a restore) or thaw (changes are kept)',
    audit: 'mode.set',
    body: modeBodySchema,
    replies: { 200: { description: 'The new mode', schema: modeBodySchema } },
    handler: async ({ body }) => {
      await service.setMode(body.mode);
      return { mode: body.mode };
    },
  });

  api.add({
    method: 'post',
    path: '/api/restore-mode',
    tag: 'modes',
    summary: 'Instant (restore in the background, reads fetch from the model) or eager (restore before the host reads)',
    audit: 'restore-mode.set',
    body: restoreModeBodySchema,
    replies: { 200: { description: 'The new restore mode', schema: restoreModeBodySchema } },
    handler: async ({ body }) => {
      await service.setRestoreMode(body.restoreMode);
      return { restoreMode: body.restoreMode };
    },
  });

  api.add({
    method: 'post',
    path: '/api/hydration',
    tag: 'modes',
    summary: 'The background restore rate limit (bytes per second; null: unlimited)',
    audit: 'hydration-rate.set',
    body: hydrationBodySchema,
    replies: { 200: { description: 'The new rate', schema: hydrationBodySchema } },
    handler: async ({ body }) => {
      await service.setHydrationRate(body.rateBytesPerSecond);
      return { rateBytesPerSecond: body.rateBytesPerSecond };
    },
  });
}
