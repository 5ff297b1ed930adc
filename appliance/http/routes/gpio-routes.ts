/**
 * The GPIO component: host power and the pins. Login and CSRF checks are mounted in front of this router by
 * the HTTP server; the acting user's name arrives in res.locals.actor (or
 * res.locals.principal.actor, as the HTTP server sets it).
 *   GET  /api/gpio        → GpioStatus
 *   POST /api/gpio/power  {action: 'on'|'off'|'force-off'|'reset'|'restore-now'}
 *        → 202 {accepted, action, status}; 400 bad body; 409 not wired / GPIO off / busy.
 *        audit: written by the GPIO component itself (gpio.power.*), started and outcome.
 * A power action is accepted once it has started; its outcome appears in the status and the
 * audit log (restore now can take minutes, longer than an HTTP request should wait).
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { z } from 'zod';
import { isSnapbackError } from '../../errors.js';
import { formatZodIssues } from '../../zod-issues.js';
import type { GpioComponent } from '../../gpio/gpio-component.js';
import { POWER_ACTIONS } from '../../gpio/power-controller.js';

const PowerRequestSchema = z.object({ action: z.enum(POWER_ACTIONS) }).strict();

export function createGpioRouter(gpio: GpioComponent): Router {
  const router = express.Router();

  router.get('/api/gpio', (_req: Request, res: Response) => {
    res.json(gpio.status());
  });

  router.post('/api/gpio/power', express.json({ limit: '4kb' }), (req: Request, res: Response) => {
    const parsed = PowerRequestSchema.safeParse(req.body);
    if (!parsed.success) {
      const message = formatZodIssues(parsed.error, 'body');
      res.status(400).json({ error: `bad request: ${message}`, code: 'BAD_ARGUMENT' });
      return;
    }
    const { action } = parsed.data;
    const actor = actorOf(res);
    try {
      gpio.powerAction(action, actor).catch(() => {
        // never rejects: the outcome is in the status and the audit log
      });
    } catch (err) {
      if (isSnapbackError(err, 'BUSY') || isSnapbackError(err, 'NOT_SUPPORTED')) {
        res.status(409).json({ error: err.message, code: err.code });
        return;
      }
      throw err;
    }
    // The component wrote the audit entries (started, then the outcome): the HTTP server's
    // generic per-request audit would only repeat the first.
    res.locals.audited = true;
    res.status(202).json({ accepted: true, action, status: gpio.status() });
  });

  // A body that is not JSON (or too large) is a bad request too, answered like the others.
  router.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    const type = (err as { type?: unknown } | null)?.type;
    if (type === 'entity.parse.failed' || type === 'entity.too.large') {
      res.status(400).json({ error: `bad request: ${(err as Error).message}`, code: 'BAD_ARGUMENT' });
      return;
    }
    next(err);
  });

  return router;
}

/** res.locals.actor, else the authenticated principal's actor (the HTTP server's), else 'api'. */
function actorOf(res: Response): string {
  const locals = res.locals as { actor?: unknown; principal?: { actor?: unknown } };
  for (const actor of [locals.actor, locals.principal?.actor]) {
    if (typeof actor === 'string' && actor.length > 0) return actor;
  }
  return 'api';
}
