/**
 * Who is asking: login sessions (cookie), API tokens (Bearer) and the trusted control socket.
 *
 * - Login sessions live in memory only (a daemon restart logs everyone out). Each has its own
 *   CSRF token, sent by the browser in X-CSRF-Token on every state-changing request.
 * - API tokens are checked against their SHA-256 hash in the state store; they need no CSRF
 *   token (a browser never sends them on its own).
 * - Requests arriving on the unix control socket (mode 0600, owner only) are the CLI: actor 'cli'.
 */
import type { Request } from 'express';
import type { StateStore } from '../state/state-store.js';
import { parseApiToken, randomToken, safeEqual, sha256Hex } from './passwords.js';

export type Principal =
  | { kind: 'cli'; actor: 'cli' }
  | { kind: 'session'; actor: string; session: LoginSession }
  | { kind: 'token'; actor: string; tokenId: string };

export interface LoginSession {
  id: string;
  csrfToken: string;
  user: string;
  createdAt: number;
  lastSeenAt: number;
}

export const SESSION_COOKIE = 'snapback_session';

export interface SessionManagerOptions {
  /** A session unused for this long ends (ms). Default 12 h. */
  idleMs?: number;
  /** A session ends this long after login whatever happens (ms). Default 7 days. */
  absoluteMs?: number;
  /** Most sessions at once; the least recently used goes first. Default 64. */
  max?: number;
  now?: () => number;
}

export class LoginSessions {
  readonly #byId = new Map<string, LoginSession>();
  readonly idleMs: number;
  readonly absoluteMs: number;
  readonly #max: number;
  readonly #now: () => number;
  /** Called with a session's id when it ends (logout, password change, expiry). */
  onEnd: (id: string) => void = () => undefined;

  constructor(opts: SessionManagerOptions = {}) {
    this.idleMs = opts.idleMs ?? 12 * 3600_000;
    this.absoluteMs = opts.absoluteMs ?? 7 * 24 * 3600_000;
    this.#max = opts.max ?? 64;
    this.#now = opts.now ?? Date.now;
  }

  create(user: string): LoginSession {
    this.prune();
    while (this.#byId.size >= this.#max) {
      let oldest: LoginSession | null = null;
      for (const s of this.#byId.values()) if (!oldest || s.lastSeenAt < oldest.lastSeenAt) oldest = s;
      if (!oldest) break;
      this.end(oldest.id);
    }
    const now = this.#now();
    const s: LoginSession = { id: randomToken(32), csrfToken: randomToken(32), user, createdAt: now, lastSeenAt: now };
    this.#byId.set(s.id, s);
    return s;
  }

  /** The live session with this id (and marks it used), or null. */
  lookup(id: string): LoginSession | null {
    const s = this.#byId.get(id);
    if (!s) return null;
    const now = this.#now();
    if (now - s.lastSeenAt > this.idleMs || now - s.createdAt > this.absoluteMs) {
      this.end(id);
      return null;
    }
    s.lastSeenAt = now;
    return s;
  }

  end(id: string): void {
    if (this.#byId.delete(id)) this.onEnd(id);
  }

  /** Ends every session except `keepId`. */
  endAll(keepId?: string): void {
    for (const id of [...this.#byId.keys()]) if (id !== keepId) this.end(id);
  }

  prune(): void {
    const now = this.#now();
    for (const s of [...this.#byId.values()]) {
      if (now - s.lastSeenAt > this.idleMs || now - s.createdAt > this.absoluteMs) this.end(s.id);
    }
  }

  get size(): number {
    return this.#byId.size;
  }
}

/**
 * Login rate limiting: at most `perClient` failed attempts per client address within `windowMs`,
 * and at most `global` failures from everyone within the same window (a distributed guesser).
 * While limited, even a right password is refused.
 */
export class LoginRateLimiter {
  readonly #failures = new Map<string, number[]>();
  #globalFailures: number[] = [];
  readonly #perClient: number;
  readonly #global: number;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(opts: { perClient?: number; global?: number; windowMs?: number; now?: () => number } = {}) {
    this.#perClient = opts.perClient ?? 5;
    this.#global = opts.global ?? 30;
    this.#windowMs = opts.windowMs ?? 15 * 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Seconds until `client` may try again, or 0 when it may try now. */
  retryAfter(client: string): number {
    const now = this.#now();
    const cutoff = now - this.#windowMs;
    this.#globalFailures = this.#globalFailures.filter((t) => t > cutoff);
    const mine = (this.#failures.get(client) ?? []).filter((t) => t > cutoff);
    if (mine.length) this.#failures.set(client, mine);
    else this.#failures.delete(client);
    let until = 0;
    if (mine.length >= this.#perClient) until = Math.max(until, mine[mine.length - this.#perClient]! + this.#windowMs);
    if (this.#globalFailures.length >= this.#global) {
      until = Math.max(until, this.#globalFailures[this.#globalFailures.length - this.#global]! + this.#windowMs);
    }
    return until > now ? Math.ceil((until - now) / 1000) : 0;
  }

  fail(client: string): void {
    const now = this.#now();
    const list = this.#failures.get(client) ?? [];
    list.push(now);
    if (list.length > this.#perClient) list.splice(0, list.length - this.#perClient);
    this.#failures.set(client, list);
    this.#globalFailures.push(now);
    if (this.#globalFailures.length > this.#global) this.#globalFailures.splice(0, this.#globalFailures.length - this.#global);
    if (this.#failures.size > 10_000) {
      // Bounded memory under a flood of addresses: drop the oldest entries.
      const drop = [...this.#failures.keys()].slice(0, this.#failures.size - 10_000);
      for (const k of drop) this.#failures.delete(k);
    }
  }

  succeed(client: string): void {
    this.#failures.delete(client);
  }
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    const k = part.slice(0, i).trim();
    let v = part.slice(i + 1).trim();
    if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    if (!out.has(k)) {
      try {
        out.set(k, decodeURIComponent(v));
      } catch {
        out.set(k, v);
      }
    }
  }
  return out;
}

export function sessionCookie(value: string, opts: { secure: boolean; maxAgeSeconds: number }): string {
  const parts = [`${SESSION_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${opts.maxAgeSeconds}`];
  if (opts.secure) parts.push('Secure');
  return parts.join('; ');
}

/** Resolves the principal of a TCP request from its cookie or Bearer token (null: anonymous). */
export function authenticate(
  req: Request,
  sessions: LoginSessions,
  store: StateStore,
): { principal: Principal | null; badToken: boolean } {
  const authz = req.headers.authorization;
  if (authz !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
    const parsed = m ? parseApiToken(m[1]!) : null;
    const rec = parsed ? store.findToken(parsed.id) : null;
    if (!parsed || !rec || !safeEqual(sha256Hex(parsed.secret), rec.secretHash)) return { principal: null, badToken: true };
    store.touchToken(rec.id);
    return { principal: { kind: 'token', actor: `token:${rec.name}`, tokenId: rec.id }, badToken: false };
  }
  const sid = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
  if (sid) {
    const s = sessions.lookup(sid);
    if (s) return { principal: { kind: 'session', actor: s.user, session: s }, badToken: false };
  }
  return { principal: null, badToken: false };
}
