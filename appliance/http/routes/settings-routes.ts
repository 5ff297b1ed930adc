/**
 * The appliance's settings: GET and POST /api/settings (audit: settings.update). The state store
 * owns these settings; the session manager applies what is saved here.
 */
import { settingsSchema, settingsUpdateSchema } from '../../api/settings.js';
import type { ApiRouter } from '../api-router.js';
import { redact } from '../http-util.js';
import { audit, needPrincipal, type RouteDeps } from '../route-context.js';

export function settingsRoutes(api: ApiRouter, { store }: RouteDeps): void {
  api.add({
    method: 'get',
    path: '/api/settings',
    tag: 'settings',
    summary: 'The settings',
    replies: { 200: { description: 'The settings', schema: settingsSchema } },
    handler: () => store.settings(),
  });

  api.add({
    method: 'post',
    path: '/api/settings',
    tag: 'settings',
    summary: 'Change some settings',
    audit: 'handler',
    body: settingsUpdateSchema,
    replies: { 200: { description: 'The settings after the change', schema: settingsSchema } },
    handler: async ({ res, body }) => {
      const p = needPrincipal(res);
      const next = await store.updateSettings(body);
      await audit(store, res, p.actor, 'settings.update', { changes: redact(body) as Record<string, unknown> });
      return next;
    },
  });
}
