/**
 * The GPIO component: host power and the pins.
 *   GET  /api/gpio        → GpioStatus
 *   POST /api/gpio/power  {action: 'on'|'off'|'force-off'|'reset'|'restore-now'}
 *        → 202 {accepted, action, status}; 409 not wired / GPIO off / busy.
 * A power action is accepted once it has started; its outcome appears in the status and the
 * audit log (restore now can take minutes, longer than an HTTP request should wait). The GPIO
 * component writes the audit entries itself (started, then the outcome).
 */
import type { Response } from 'express';
import { gpioStatusSchema, powerAcceptedSchema, powerRequestSchema, type GpioStatus } from '../../api/gpio.js';
import { isSnapbackError } from '../../errors.js';
import type { GpioComponent } from '../../gpio/gpio-component.js';
import type { ApiRouter } from '../api-router.js';
import { HttpError } from '../http-util.js';

export function gpioRoutes(api: ApiRouter, gpio: GpioComponent): void {
  api.add({
    method: 'get',
    path: '/api/gpio',
    tag: 'gpio',
    summary: 'GPIO: the pins, the button, the status LED, the host power sense and the power actions',
    replies: { 200: { description: 'The GPIO status', schema: gpioStatusSchema } },
    handler: (): GpioStatus => gpio.status(),
  });

  api.add({
    method: 'post',
    path: '/api/gpio/power',
    tag: 'gpio',
    summary: 'Start a host power action; its outcome appears in GET /api/gpio and the audit log',
    audit: 'handler',
    body: powerRequestSchema,
    replies: { 202: { description: 'Started', schema: powerAcceptedSchema } },
    handler: ({ res, body }) => {
      try {
        gpio.powerAction(body.action, actorOf(res)).catch(() => {
          // never rejects: the outcome is in the status and the audit log
        });
      } catch (err) {
        if (isSnapbackError(err, 'BUSY') || isSnapbackError(err, 'NOT_SUPPORTED')) throw new HttpError(409, err.code, err.message);
        throw err;
      }
      res.locals.audited = true;
      res.status(202);
      return { accepted: true as const, action: body.action, status: gpio.status() };
    },
  });
}

/** The authenticated principal's actor (the HTTP server's), else res.locals.actor, else 'api'. */
function actorOf(res: Response): string {
  const locals = res.locals as { actor?: unknown; principal?: { actor?: unknown } };
  for (const actor of [locals.actor, locals.principal?.actor]) {
    if (typeof actor === 'string' && actor.length > 0) return actor;
  }
  return 'api';
}
