/**
 * The model catalogue: GET /api/models, POST /api/models?name=NAME (the image as the raw body,
 * application/octet-stream, streamed to disk), DELETE /api/models/:model. And the files appliances
 * fetch, without a login (an appliance's URL import sends none): GET/HEAD
 * /models/:model/image (with Range) and /models/:model/image.manifest.json.
 * Audit actions: model.upload, model.remove.
 */
import { catalogueListSchema, catalogueModelSchema, catalogueParamsSchema, catalogueUploadQuerySchema } from '../../../appliance/api/console.js';
import type { ApiRouter } from '../../../appliance/http/api-router.js';
import { HttpError } from '../../../appliance/http/http-util.js';
import { audit, needPrincipal } from '../../../appliance/http/route-context.js';
import type { ConsoleDeps } from '../route-deps.js';

/** The catalogue's upload route (the one state-changing route whose body is not JSON). */
export const UPLOAD_PATH = '/api/models';

export function catalogueRoutes(api: ApiRouter, { store, catalogue }: ConsoleDeps): void {
  const needModel = (idOrName: string) => {
    const m = catalogue.find(idOrName);
    if (!m) throw new HttpError(404, 'NOT_FOUND', `no model "${idOrName}" in the catalogue`);
    return m;
  };

  api.add({
    method: 'get',
    path: '/api/models',
    tag: 'catalogue',
    summary: 'The model catalogue, each model with the URL appliances fetch it from',
    replies: { 200: { description: 'The models', schema: catalogueListSchema } },
    handler: () => catalogue.list(),
  });

  api.add({
    method: 'post',
    path: UPLOAD_PATH,
    tag: 'catalogue',
    summary: 'Upload a model image (the raw image as the body, Content-Type application/octet-stream); its manifest is made on arrival',
    audit: 'handler',
    query: catalogueUploadQuerySchema,
    replies: { 201: { description: 'The new model', schema: catalogueModelSchema } },
    handler: async ({ req, res, query }) => {
      const p = needPrincipal(res);
      if (!req.is('application/octet-stream')) throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send the image as application/octet-stream');
      const m = await catalogue.upload(query.name, req);
      await audit(store, res, p.actor, 'model.upload', { id: m.id, name: m.name, size: m.size });
      res.status(201);
      return m;
    },
  });

  api.add({
    method: 'delete',
    path: '/api/models/:model',
    tag: 'catalogue',
    summary: 'Remove a model from the catalogue (appliances that already have it keep their copy)',
    audit: 'handler',
    params: catalogueParamsSchema,
    replies: { 204: { description: 'Removed' } },
    handler: async ({ res, params }) => {
      const p = needPrincipal(res);
      const m = needModel(params.model);
      await catalogue.remove(m.id);
      await audit(store, res, p.actor, 'model.remove', { id: m.id, name: m.name });
      res.status(204).end();
    },
  });

  const serve = (file: 'image' | 'manifest') => ({ res, params }: { res: import('express').Response; params: { model: string } }) => {
    const m = needModel(params.model);
    const path = file === 'image' ? catalogue.imagePath(m.id) : catalogue.manifestPath(m.id);
    res.setHeader('Cache-Control', 'no-cache');
    if (file === 'image') res.type('application/octet-stream');
    return new Promise<undefined>((resolve, reject) => {
      // express's sendFile answers Range, HEAD, ETag and If-Modified-Since itself.
      res.sendFile(path, { acceptRanges: true, dotfiles: 'allow' }, (err) => (err && !res.headersSent ? reject(err) : resolve(undefined)));
    });
  };

  api.add({
    method: 'get',
    path: '/models/:model/image',
    tag: 'catalogue',
    public: true,
    summary: "A catalogue model's image, for appliances (Range requests; HEAD too); no login",
    params: catalogueParamsSchema,
    replies: { 200: { description: 'The image', contentType: 'application/octet-stream' }, 206: { description: 'A range of it' } },
    handler: serve('image'),
  });

  api.add({
    method: 'get',
    path: '/models/:model/image.manifest.json',
    tag: 'catalogue',
    public: true,
    summary: "A catalogue model's manifest (region hashes), beside its image; no login",
    params: catalogueParamsSchema,
    replies: { 200: { description: 'The manifest', contentType: 'application/json' } },
    handler: serve('manifest'),
  });
}
