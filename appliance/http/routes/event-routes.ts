/**
 * Live updates.
 *   GET /api/events   server-sent events (live-events.ts)
 */
import express, { type Router } from 'express';
import { z } from 'zod';
import { HttpError, validate } from '../http-util.js';
import { needPrincipal, type RouteDeps } from '../route-context.js';

const noQuery = z.object({}).strict();

export function eventRoutes({ live }: RouteDeps): Router {
  const r = express.Router();
  r.get('/api/events', (req, res) => {
    validate(noQuery, req.query, 'query');
    const p = needPrincipal(res);
    if (!live.attach(res, p.kind === 'session' ? p.session.id : null)) {
      throw new HttpError(503, 'BUSY', 'too many live-update streams are open');
    }
  });
  return r;
}
