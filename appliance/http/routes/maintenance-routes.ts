/**
 * Maintenance windows and "thawed for the next N boots" (the maintenance component):
 *   GET    /api/maintenance              → the windows with their next start, the counter, the running and last windows
 *   POST   /api/maintenance/windows      {name, schedule, timeZone?, durationMinutes, graceSeconds?, after?, modelName?, wakeOnLan?}
 *   DELETE /api/maintenance/windows/:name
 *   POST   /api/maintenance/thaw-boots   {boots}: thawed for the next N session ends, then frozen
 * The component writes the audit entries (maintenance.add, .remove, .thaw-boots) with the actor.
 */
import type { Response } from 'express';
import { maintenanceRemoveParamsSchema, maintenanceStatusSchema, maintenanceWindowInputSchema, thawBootsBodySchema } from '../../api/maintenance.js';
import type { MaintenanceComponent } from '../../maintenance/maintenance-component.js';
import type { ApiRouter } from '../api-router.js';
import { needPrincipal } from '../route-context.js';

export function maintenanceRoutes(api: ApiRouter, maintenance: MaintenanceComponent): void {
  api.add({
    method: 'get',
    path: '/api/maintenance',
    tag: 'maintenance',
    summary: 'Maintenance windows (with their next start), the thawed-boots counter, the running window and the last ones',
    replies: { 200: { description: 'The maintenance status', schema: maintenanceStatusSchema } },
    handler: () => maintenance.status(),
  });

  api.add({
    method: 'post',
    path: '/api/maintenance/windows',
    tag: 'maintenance',
    summary: 'Add a maintenance window: a 5-field cron schedule in a time zone; the host is powered on, runs durationMinutes, is shut down (forced off only after graceSeconds), then its disk is captured and activated, or discarded',
    audit: 'handler',
    body: maintenanceWindowInputSchema,
    replies: { 201: { description: 'Added; the status after it', schema: maintenanceStatusSchema } },
    handler: async ({ res, body }) => {
      await maintenance.add(body, actorOf(res));
      res.locals.audited = true;
      res.status(201);
      return maintenance.status();
    },
  });

  api.add({
    method: 'delete',
    path: '/api/maintenance/windows/:name',
    tag: 'maintenance',
    summary: 'Remove a maintenance window (one running goes on to its end)',
    audit: 'handler',
    params: maintenanceRemoveParamsSchema,
    replies: { 200: { description: 'Removed; the status after it', schema: maintenanceStatusSchema } },
    handler: async ({ res, params }) => {
      await maintenance.remove(params.name, actorOf(res));
      res.locals.audited = true;
      return maintenance.status();
    },
  });

  api.add({
    method: 'post',
    path: '/api/maintenance/thaw-boots',
    tag: 'maintenance',
    summary: 'Thawed for the next N boots (session ends), then frozen; 0 withdraws the counter',
    audit: 'handler',
    body: thawBootsBodySchema,
    replies: { 200: { description: 'The status after it', schema: maintenanceStatusSchema } },
    handler: async ({ res, body }) => {
      await maintenance.setThawBoots(body.boots, actorOf(res));
      res.locals.audited = true;
      return maintenance.status();
    },
  });
}

function actorOf(res: Response): string {
  return needPrincipal(res).actor;
}
