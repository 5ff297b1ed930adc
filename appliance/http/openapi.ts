/**
 * The OpenAPI 3 document of the HTTP API (GET /api/openapi.json), generated from the route
 * declarations (api-router.ts) and therefore from the same zod schemas that validate requests.
 * Scripts and other programs (a management console) get a contract that cannot drift from the
 * code; a test checks that every route express serves is in it and nothing else.
 */
import { OpenAPIRegistry, OpenApiGeneratorV3, extendZodWithOpenApi } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { apiErrorSchema } from '../api/common.js';
import type { RouteSpec } from './api-router.js';
import { LOGIN_COOKIE } from './auth.js';

extendZodWithOpenApi(z);

/** Express '/api/tokens/:id' → OpenAPI '/api/tokens/{id}'. */
export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
}

/** The document's title and description; default: the appliance's API. */
export interface OpenApiInfo {
  title: string;
  description: string;
}

const APPLIANCE_INFO: OpenApiInfo = {
  title: 'Snapback appliance API',
  description:
    'The daemon\'s JSON API, as used by the web UI, the CLI (over the unix control socket) and scripts (with an API token). ' +
    'Every error is {"error": CODE, "message": "…"}. Every successful state-changing request is written to the audit log.',
};

export function buildOpenApiDocument(routes: readonly RouteSpec[], version: string, about: OpenApiInfo = APPLIANCE_INFO): object {
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'apiToken', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API token (sbk_…) made on the Settings page or with POST /api/tokens.',
  });
  registry.registerComponent('securitySchemes', 'login', {
    type: 'apiKey',
    in: 'cookie',
    name: LOGIN_COOKIE,
    description: 'The web UI login; state-changing requests also need the X-CSRF-Token header from GET /api/auth/state.',
  });
  const error = { description: 'An error: a code and a message.', content: { 'application/json': { schema: apiErrorSchema } } };
  for (const r of routes) {
    const responses: Record<string, { description: string; content?: Record<string, { schema: z.ZodTypeAny }> }> = {};
    for (const [status, reply] of Object.entries(r.replies)) {
      const type = reply.contentType ?? 'application/json';
      responses[status] = reply.schema ? { description: reply.description, content: { [type]: { schema: reply.schema } } } : { description: reply.description };
    }
    responses.default = error;
    const request: NonNullable<Parameters<OpenAPIRegistry['registerPath']>[0]['request']> = {};
    if (r.body) request.body = { required: true, content: { 'application/json': { schema: r.body } } };
    if (r.rawBody) request.body = { required: true, description: r.rawBody.description, content: { [r.rawBody.contentType]: { schema: z.string().openapi({ format: 'binary' }) } } };
    if (r.query && !isEmptyObject(r.query)) request.query = r.query;
    if (r.params) request.params = r.params;
    registry.registerPath({
      method: r.method,
      path: openApiPath(r.path),
      summary: r.summary,
      tags: [r.tag],
      ...(r.public ? { security: [] } : {}),
      ...(r.audit && r.audit !== 'handler' ? { 'x-audit-action': r.audit } : {}),
      request,
      responses,
    });
  }
  const generator = new OpenApiGeneratorV3(registry.definitions);
  return generator.generateDocument({
    openapi: '3.0.3',
    info: { title: about.title, version, description: about.description },
    security: [{ apiToken: [] }, { login: [] }],
  });
}

function isEmptyObject(schema: z.ZodTypeAny): boolean {
  return schema instanceof z.ZodObject && Object.keys(schema.shape as object).length === 0;
}
