/**
 * What every route file gets: the services behind the API, and small helpers for who is asking
 * and for writing the audit log from a handler.
 */
import type { Request, Response } from 'express';
import type { ApplianceService } from '../session/appliance-service.js';
import type { StateStore } from '../state/state-store.js';
import type { LoginRateLimiter, LoginSessions, Principal } from './auth.js';
import { HttpError } from './http-util.js';
import type { LiveEvents } from './live-events.js';

export interface RouteDeps {
  service: ApplianceService;
  store: StateStore;
  sessions: LoginSessions;
  limiter: LoginRateLimiter;
  live: LiveEvents;
}

export function principalOf(res: Response): Principal | null {
  return (res.locals.principal as Principal | undefined) ?? null;
}

export function needPrincipal(res: Response): Principal {
  const p = principalOf(res);
  if (!p) throw new HttpError(401, 'UNAUTHENTICATED', 'log in first');
  return p;
}

/** Writes an audit entry and marks the request as audited, so the generic audit skips it. */
export async function audit(store: StateStore, res: Response, actor: string, action: string, details?: Record<string, unknown>): Promise<void> {
  res.locals.audited = true;
  await store.audit({ actor, action, ...(details ? { details } : {}) });
}

/**
 * Names the audit action of a route whose successful requests the generic audit middleware
 * (http-component.ts) records; without it the entry is named "http METHOD PATH".
 */
export function auditAs(action: string) {
  return (_req: Request, res: Response, next: () => void): void => {
    res.locals.auditAction = action;
    next();
  };
}

export function clientOf(req: Request): string {
  return req.socket.remoteAddress ?? 'control-socket';
}
