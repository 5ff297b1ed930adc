/** Live updates: GET /api/events (server-sent events, see live-events.ts). */
import type { ApiRouter } from '../api-router.js';
import { HttpError } from '../http-util.js';
import { needPrincipal, type RouteDeps } from '../route-context.js';

export function eventRoutes(api: ApiRouter, { live }: RouteDeps): void {
  api.add({
    method: 'get',
    path: '/api/events',
    tag: 'events',
    summary: 'Server-sent events: status, regions, session-ended, audit, settings, model-verify',
    replies: { 200: { description: 'An event stream', contentType: 'text/event-stream' } },
    handler: ({ res }) => {
      const p = needPrincipal(res);
      const owner = p.kind === 'login' ? { loginId: p.login.id } : p.kind === 'token' ? { tokenId: p.tokenId } : {};
      if (!live.attach(res, owner)) throw new HttpError(503, 'BUSY', 'too many live-update streams are open');
    },
  });
}
