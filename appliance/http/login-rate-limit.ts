/**
 * Rate limiting of password checks (login, password change), with express-rate-limit: at most
 * `perClient` failed attempts per client address (IPv6: per /56) within `windowMs`, and at most
 * `global` failures from everyone within the same window (a distributed guesser). While limited,
 * even a right password is refused with 429 and Retry-After.
 *
 * Only failures count: every attempt is counted when it arrives (so parallel guesses cannot all
 * slip through before the first is judged) and given back when it did not fail (a 401 or 403
 * is a failure). A success also clears its client's earlier failures. The CLI (control socket)
 * is never limited.
 */
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ipKeyGenerator, rateLimit, type RateLimitRequestHandler } from 'express-rate-limit';
import { HttpError } from './http-util.js';
import { clientOf, principalOf } from './route-context.js';

export interface LoginRateLimitOptions {
  /** Failed attempts per client address within the window. Default 5. */
  perClient?: number;
  /** Failed attempts from everyone within the window. Default 30. */
  global?: number;
  /** Default 15 minutes. */
  windowMs?: number;
}

export class LoginRateLimit {
  private readonly perClient: RateLimitRequestHandler;
  private readonly global: RateLimitRequestHandler;

  constructor(opts: LoginRateLimitOptions = {}) {
    const windowMs = opts.windowMs ?? 15 * 60_000;
    const common = {
      windowMs,
      standardHeaders: false,
      legacyHeaders: false,
      skipSuccessfulRequests: true,
      requestWasSuccessful: (_req: Request, res: Response) => res.statusCode !== 401 && res.statusCode !== 403,
      skip: (_req: Request, res: Response) => principalOf(res)?.kind === 'cli',
      handler: (req: Request, _res: Response, next: NextFunction) => {
        const reset = (req as Request & { rateLimit?: { resetTime?: Date } }).rateLimit?.resetTime;
        const wait = Math.max(1, Math.ceil(((reset?.getTime() ?? Date.now() + windowMs) - Date.now()) / 1000));
        next(new HttpError(429, 'RATE_LIMITED', `too many failed attempts; try again in ${wait} s`, { 'Retry-After': String(wait) }));
      },
    };
    this.perClient = rateLimit({ ...common, limit: opts.perClient ?? 5, keyGenerator: (req) => clientKey(req) });
    this.global = rateLimit({ ...common, limit: opts.global ?? 30, keyGenerator: () => 'everyone' });
  }

  /** Middleware in front of a route that checks a password. */
  get middleware(): RequestHandler[] {
    return [this.global, this.perClient];
  }

  /** A right password: the client's earlier failures are forgotten. */
  async succeeded(req: Request): Promise<void> {
    await this.perClient.resetKey(clientKey(req));
  }
}

function clientKey(req: Request): string {
  const client = clientOf(req);
  try {
    return ipKeyGenerator(client);
  } catch {
    return client;
  }
}
