/**
 * What every route file gets: the services behind the API, and small helpers for who is asking
 * and for writing the audit log from a handler.
 */
import type { Request, Response } from 'express';
import type { ApplianceService } from '../session/appliance-service.js';
import type { StateStore } from '../state/state-store.js';
import type { Logins, Principal } from './auth.js';
import { HttpError } from './http-util.js';
import type { LiveEvents } from './live-events.js';
import type { LoginRateLimit } from './login-rate-limit.js';
import type { SetupCode } from './setup-code.js';

export interface RouteDeps {
  service: ApplianceService;
  store: StateStore;
  logins: Logins;
  rateLimit: LoginRateLimit;
  live: LiveEvents;
  setupCode: SetupCode;
}

/** What the account routes (login, password, API tokens, audit log) need of a state store: the appliance's StateStore, or the console's. */
export type AccountStore = Pick<
  StateStore,
  'hasAdminPassword' | 'admin' | 'setAdminPasswordHash' | 'listTokens' | 'findToken' | 'addToken' | 'removeToken' | 'touchToken' | 'audit' | 'listAudit'
>;

/** What the account routes need: shared by the appliance and the console. */
export interface AccountDeps {
  store: AccountStore;
  logins: Logins;
  rateLimit: LoginRateLimit;
  setupCode: SetupCode;
  /** Ends a revoked token's live-update streams. */
  live: Pick<LiveEvents, 'dropToken'>;
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
export async function audit(store: Pick<StateStore, 'audit'>, res: Response, actor: string, action: string, details?: Record<string, unknown>): Promise<void> {
  res.locals.audited = true;
  await store.audit({ actor, action, ...(details ? { details } : {}) });
}

/** The client's address ('control-socket' for the CLI). */
export function clientOf(req: Request): string {
  return req.socket.remoteAddress ?? 'control-socket';
}
