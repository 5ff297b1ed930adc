/** The appliance's status: GET /api/status. */
import { applianceStatusSchema, type ApplianceStatus } from '../../api/status.js';
import type { ApiRouter } from '../api-router.js';
import type { RouteDeps } from '../route-context.js';

export function statusRoutes(api: ApiRouter, { service }: RouteDeps): void {
  api.add({
    method: 'get',
    path: '/api/status',
    tag: 'status',
    summary: 'What the appliance is doing: modes, session, regions, restore, host, model, disk, daemon',
    replies: { 200: { description: 'The status', schema: applianceStatusSchema } },
    handler: (): ApplianceStatus => service.status(),
  });
}
