/**
 * The link to a fleet console: GET /api/management (its settings and connection state) and
 * POST /api/management (change them; audit management.set, without secrets).
 */
import { managementStatusSchema, managementUpdateSchema } from '../../api/management.js';
import { isSnapbackError } from '../../errors.js';
import type { ManagementComponent } from '../../management/management-component.js';
import type { StateStore } from '../../state/state-store.js';
import type { ApiRouter } from '../api-router.js';
import { HttpError } from '../http-util.js';
import { audit, needPrincipal } from '../route-context.js';

export function managementRoutes(api: ApiRouter, management: ManagementComponent, store: StateStore): void {
  api.add({
    method: 'get',
    path: '/api/management',
    tag: 'management',
    summary: 'The link to a fleet console: URL, appliance name, broker, connection state',
    replies: { 200: { description: 'The management settings and connection', schema: managementStatusSchema } },
    handler: () => management.status(),
  });

  api.add({
    method: 'post',
    path: '/api/management',
    tag: 'management',
    summary: 'Connect to a broker (mqtt://, mqtts://), enroll at a console (https:// with an enrollment code), or switch management off (url null)',
    audit: 'handler',
    body: managementUpdateSchema,
    replies: { 200: { description: 'The settings and connection after the change', schema: managementStatusSchema } },
    handler: async ({ res, body }) => {
      const p = needPrincipal(res);
      try {
        const next = await management.configure(body);
        await audit(store, res, p.actor, 'management.set', { url: body.url, applianceName: next.applianceName, ...(body.enrollmentCode ? { enrollment: true } : {}), ...(body.username ? { username: body.username } : {}) });
        return next;
      } catch (err) {
        if (isSnapbackError(err, 'CLOSED')) throw new HttpError(409, err.code, err.message);
        throw err;
      }
    },
  });
}
