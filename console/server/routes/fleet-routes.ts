/**
 * The fleet: appliances, actions on one, a selection or a group, and the commands they became.
 *   GET /api/appliances, GET|DELETE /api/appliances/:name, POST /api/appliances/:name/group,
 *   POST /api/appliances/:name/actions, POST /api/actions, POST /api/groups/:group/actions,
 *   GET /api/commands, GET /api/commands/:id
 * Actions answer 202 with the command ids; a command's state and the appliance's answer are then
 * at GET /api/commands/:id. Audit actions: fleet.ACTION (written by the dispatcher),
 * appliance.forget, appliance.group.
 */
import {
  actionSchema,
  applianceListSchema,
  applianceParamsSchema,
  applianceRecordSchema,
  bulkAcceptedSchema,
  bulkActionSchema,
  commandAcceptedSchema,
  commandListSchema,
  commandParamsSchema,
  commandQuerySchema,
  commandRecordSchema,
  groupAssignSchema,
  groupParamsSchema,
  type CommandRecord,
} from '../../../appliance/api/console.js';
import type { ApiRouter } from '../../../appliance/http/api-router.js';
import { HttpError, validate } from '../../../appliance/http/http-util.js';
import { needPrincipal } from '../../../appliance/http/route-context.js';
import type { ConsoleDeps } from '../route-deps.js';

const accepted = (c: CommandRecord) => ({ id: c.id, appliance: c.appliance, state: c.state });

export function fleetRoutes(api: ApiRouter, { store, dispatcher }: ConsoleDeps): void {
  const needAppliance = (name: string) => {
    const a = store.appliance(name);
    if (!a) throw new HttpError(404, 'NOT_FOUND', `no appliance named "${name}"`);
    return a;
  };

  api.add({
    method: 'get',
    path: '/api/appliances',
    tag: 'fleet',
    summary: 'Every appliance the console knows: online, mode, session, model, group, last seen, errors',
    replies: { 200: { description: 'The fleet, by name', schema: applianceListSchema } },
    handler: () => store.listAppliances(),
  });

  api.add({
    method: 'get',
    path: '/api/appliances/:name',
    tag: 'fleet',
    summary: 'One appliance',
    params: applianceParamsSchema,
    replies: { 200: { description: 'The appliance', schema: applianceRecordSchema } },
    handler: ({ params }) => needAppliance(params.name),
  });

  api.add({
    method: 'delete',
    path: '/api/appliances/:name',
    tag: 'fleet',
    summary: 'Forget an appliance (it reappears when it publishes again; its broker account stays)',
    audit: 'appliance.forget',
    params: applianceParamsSchema,
    replies: { 204: { description: 'Forgotten' } },
    handler: ({ res, params }) => {
      if (!store.removeAppliance(params.name)) throw new HttpError(404, 'NOT_FOUND', `no appliance named "${params.name}"`);
      res.status(204).end();
    },
  });

  api.add({
    method: 'post',
    path: '/api/appliances/:name/group',
    tag: 'groups',
    summary: "Put an appliance in a group (null: in none)",
    audit: 'appliance.group',
    params: applianceParamsSchema,
    body: groupAssignSchema,
    replies: { 200: { description: 'The appliance', schema: applianceRecordSchema } },
    handler: ({ params, body }) => {
      needAppliance(params.name);
      if (body.group !== null && !store.group(body.group)) throw new HttpError(404, 'NOT_FOUND', `no group named "${body.group}"`);
      store.setApplianceGroup(params.name, body.group);
      return needAppliance(params.name);
    },
  });

  api.add({
    method: 'post',
    path: '/api/appliances/:name/actions',
    tag: 'actions',
    summary: 'Send an action to one appliance: end-session, freeze, thaw, restore-mode, assign-model',
    audit: 'handler',
    params: applianceParamsSchema,
    body: actionSchema,
    replies: { 202: { description: 'Accepted: the command, to follow at /api/commands/{id}', schema: commandAcceptedSchema } },
    handler: async ({ res, params, body }) => {
      const p = needPrincipal(res);
      needAppliance(params.name);
      res.locals.audited = true;
      const [cmd] = await dispatcher.dispatch(body, [params.name], p.actor);
      res.status(202);
      return accepted(cmd!);
    },
  });

  api.add({
    method: 'post',
    path: '/api/actions',
    tag: 'actions',
    summary: 'Send an action to a selection of appliances and/or the members of groups: {appliances?, groups?, action, …its arguments}',
    audit: 'handler',
    body: bulkActionSchema,
    replies: { 202: { description: 'Accepted: one command per appliance', schema: bulkAcceptedSchema } },
    handler: async ({ req, res, body }) => {
      const p = needPrincipal(res);
      const rest: Record<string, unknown> = { ...(req.body as Record<string, unknown>) };
      delete rest.appliances;
      delete rest.groups;
      const action = validate(actionSchema, rest, 'body');
      if ((body.appliances?.length ?? 0) + (body.groups?.length ?? 0) === 0) throw new HttpError(400, 'BAD_ARGUMENT', 'body: name the appliances and/or groups to act on');
      const targets = dispatcher.resolveTargets({ ...(body.appliances ? { appliances: body.appliances } : {}), ...(body.groups ? { groups: body.groups } : {}) });
      res.locals.audited = true;
      const cmds = await dispatcher.dispatch(action, targets, p.actor, { appliances: body.appliances ?? [], groups: body.groups ?? [] });
      res.status(202);
      return { commands: cmds.map(accepted) };
    },
  });

  api.add({
    method: 'post',
    path: '/api/groups/:group/actions',
    tag: 'actions',
    summary: "Send an action to every member of a group",
    audit: 'handler',
    params: groupParamsSchema,
    body: actionSchema,
    replies: { 202: { description: 'Accepted: one command per member', schema: bulkAcceptedSchema } },
    handler: async ({ res, params, body }) => {
      const p = needPrincipal(res);
      const targets = dispatcher.resolveTargets({ groups: [params.group] });
      res.locals.audited = true;
      const cmds = await dispatcher.dispatch(body, targets, p.actor, { groups: [params.group] });
      res.status(202);
      return { commands: cmds.map(accepted) };
    },
  });

  api.add({
    method: 'get',
    path: '/api/commands',
    tag: 'actions',
    summary: 'The latest commands (of one appliance with ?appliance=), newest first',
    query: commandQuerySchema,
    replies: { 200: { description: 'Commands', schema: commandListSchema } },
    handler: ({ query }) => store.listCommands({ ...(query.appliance !== undefined ? { appliance: query.appliance } : {}), limit: query.limit ?? 100 }),
  });

  api.add({
    method: 'get',
    path: '/api/commands/:id',
    tag: 'actions',
    summary: "A command: its state (queued, sent, succeeded, failed) and, once answered, the appliance's result or error",
    params: commandParamsSchema,
    replies: { 200: { description: 'The command', schema: commandRecordSchema } },
    handler: ({ params }) => {
      const c = store.command(params.id);
      if (!c) throw new HttpError(404, 'NOT_FOUND', `no command ${params.id}`);
      return c;
    },
  });
}
