/**
 * The routes an express app serves, read from its router stack: what the OpenAPI check compares
 * the document with. Only routers mounted at the root are expected (that is how the HTTP
 * component mounts them); static file mounts are not routes.
 */
import type express from 'express';

export interface RouteEntry {
  method: string;
  path: string;
}

interface Layer {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  name?: string;
  handle?: { stack?: Layer[] };
}

export function listRoutes(app: express.Express): RouteEntry[] {
  const out: RouteEntry[] = [];
  const walk = (stack: Layer[]): void => {
    for (const layer of stack) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const method of Object.keys(layer.route.methods)) for (const path of paths) out.push({ method, path });
      } else if (layer.name === 'router' && layer.handle?.stack) {
        walk(layer.handle.stack);
      }
    }
  };
  walk(((app as unknown as { _router?: { stack: Layer[] } })._router?.stack ?? []) as Layer[]);
  return out;
}
