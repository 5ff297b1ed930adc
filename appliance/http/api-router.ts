/**
 * How every JSON API route is declared: method, path, what it is for, who may call it, its audit
 * action, the zod schemas of its body, query and path parameters, and its replies. From one
 * declaration come both the express route (the input validated, a bad one answered 400
 * BAD_ARGUMENT before the handler runs) and its entry in the OpenAPI document (openapi.ts).
 *
 * A handler returns the reply body (sent as JSON with the route's first 2xx status) or sends the
 * reply itself and returns undefined (streams, CSV, Prometheus text). Errors are thrown
 * (HttpError, SnapbackError) and answered by the one error handler in http-util.ts, always as
 * `{"error": CODE, "message": "…"}`.
 */
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import type { z } from 'zod';
import { noQuerySchema } from '../api/common.js';
import { asyncHandler, validate } from './http-util.js';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ReplySpec {
  description: string;
  /** The JSON body; none for 204 and for replies with another content type. */
  schema?: z.ZodTypeAny;
  /** Default application/json when a schema is given. */
  contentType?: string;
}

/** A zod object (optionally refined): what query and path parameters are validated with. */
type ObjectSchema = z.AnyZodObject | z.ZodEffects<z.AnyZodObject>;

export interface RouteSpec<B extends z.ZodTypeAny = z.ZodTypeAny, Q extends ObjectSchema = ObjectSchema, P extends ObjectSchema = ObjectSchema> {
  method: Method;
  /** Express syntax ('/api/tokens/:id'). */
  path: string;
  summary: string;
  /** The resource, for grouping in the document. */
  tag: string;
  /** Callable without a login (the login page's own API). Default: a login, an API token or the CLI. */
  public?: boolean;
  /**
   * The audit-log action of a successful request, written by the generic audit middleware; or
   * 'handler' when the handler (or the component it calls) writes its own entries.
   */
  audit?: string;
  /** Middleware run before the input is validated (rate limits). */
  use?: RequestHandler[];
  body?: B;
  /**
   * The body is not JSON but a stream of this content type (an uploaded image), read by the
   * handler from `req` as it arrives; never parsed or held whole.
   */
  rawBody?: { contentType: string; description: string };
  /** Default: no query parameters allowed. */
  query?: Q;
  params?: P;
  replies: Record<number, ReplySpec>;
  handler(input: { req: Request; res: Response; body: z.infer<B>; query: z.infer<Q>; params: z.infer<P> }): unknown;
}

export class ApiRouter {
  readonly router: Router = express.Router();
  private readonly declared: RouteSpec[] = [];

  add<B extends z.ZodTypeAny = z.ZodTypeAny, Q extends ObjectSchema = ObjectSchema, P extends ObjectSchema = ObjectSchema>(spec: RouteSpec<B, Q, P>): void {
    const okStatus = Number(Object.keys(spec.replies).find((s) => s.startsWith('2')) ?? 200);
    this.declared.push(spec as unknown as RouteSpec);
    this.router[spec.method](
      spec.path,
      ...(spec.use ?? []),
      asyncHandler(async (req, res) => {
        if (spec.audit !== undefined && spec.audit !== 'handler') res.locals.auditAction = spec.audit;
        const query = validate(spec.query ?? noQuerySchema, req.query, 'query') as z.infer<Q>;
        const params = (spec.params ? validate(spec.params, req.params, 'params') : {}) as z.infer<P>;
        const body = (spec.body ? validate(spec.body, req.body ?? {}, 'body') : undefined) as z.infer<B>;
        const reply = await spec.handler({ req, res, body, query, params });
        if (reply !== undefined && !res.headersSent) res.status(okStatus).json(reply);
      }),
    );
  }

  /**
   * GET /api/openapi.json: the API described from its own routes (public), served the same way
   * by the appliance and the console; `document` builds it when it is asked for.
   */
  addOpenApiRoute(document: () => object | Promise<object>): void {
    this.add({
      method: 'get',
      path: '/api/openapi.json',
      tag: 'meta',
      public: true,
      summary: 'This document: the API described in OpenAPI 3',
      replies: { 200: { description: 'The OpenAPI document' } },
      handler: () => document(),
    });
  }

  /** Every route declared so far (for the OpenAPI document). */
  routes(): readonly RouteSpec[] {
    return this.declared;
  }
}
