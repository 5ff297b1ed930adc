/**
 * Groups of appliances ("room 101"): GET|POST /api/groups, GET|POST|DELETE /api/groups/:group.
 * Audit actions: group.create, group.update, group.remove. Members are set per appliance
 * (POST /api/appliances/:name/group).
 */
import { groupCreateSchema, groupListSchema, groupParamsSchema, groupRecordSchema, groupUpdateSchema } from '../../../appliance/api/console.js';
import type { ApiRouter } from '../../../appliance/http/api-router.js';
import { HttpError } from '../../../appliance/http/http-util.js';
import type { ConsoleDeps } from '../route-deps.js';

export function groupRoutes(api: ApiRouter, { store }: ConsoleDeps): void {
  const needGroup = (name: string) => {
    const g = store.group(name);
    if (!g) throw new HttpError(404, 'NOT_FOUND', `no group named "${name}"`);
    return g;
  };

  api.add({
    method: 'get',
    path: '/api/groups',
    tag: 'groups',
    summary: 'The groups and their members',
    replies: { 200: { description: 'The groups', schema: groupListSchema } },
    handler: () => store.listGroups(),
  });

  api.add({
    method: 'post',
    path: '/api/groups',
    tag: 'groups',
    summary: 'Make a group',
    audit: 'group.create',
    body: groupCreateSchema,
    replies: { 201: { description: 'The new group', schema: groupRecordSchema } },
    handler: ({ res, body }) => {
      if (!store.createGroup(body.name, body.description ?? '')) throw new HttpError(409, 'EXISTS', `a group named "${body.name}" exists already`);
      res.status(201);
      return needGroup(body.name);
    },
  });

  api.add({
    method: 'get',
    path: '/api/groups/:group',
    tag: 'groups',
    summary: 'One group and its members',
    params: groupParamsSchema,
    replies: { 200: { description: 'The group', schema: groupRecordSchema } },
    handler: ({ params }) => needGroup(params.group),
  });

  api.add({
    method: 'post',
    path: '/api/groups/:group',
    tag: 'groups',
    summary: "Change a group's description",
    audit: 'group.update',
    params: groupParamsSchema,
    body: groupUpdateSchema,
    replies: { 200: { description: 'The group', schema: groupRecordSchema } },
    handler: ({ params, body }) => {
      if (!store.updateGroup(params.group, body.description)) throw new HttpError(404, 'NOT_FOUND', `no group named "${params.group}"`);
      return needGroup(params.group);
    },
  });

  api.add({
    method: 'delete',
    path: '/api/groups/:group',
    tag: 'groups',
    summary: 'Remove a group (its appliances stay, in no group)',
    audit: 'group.remove',
    params: groupParamsSchema,
    replies: { 204: { description: 'Removed' } },
    handler: ({ res, params }) => {
      if (!store.removeGroup(params.group)) throw new HttpError(404, 'NOT_FOUND', `no group named "${params.group}"`);
      res.status(204).end();
    },
  });
}
