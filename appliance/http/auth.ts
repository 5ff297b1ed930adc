/**
 * Who is asking: logins (cookie), API tokens (Bearer) and the trusted control socket. ("Login"
 * here is a browser's logged-in state; "session" in Snapback means the host's session only.)
 *
 * - Logins live in memory only (a daemon restart logs everyone out). Each has its own CSRF
 *   token, sent by the browser in X-CSRF-Token on every state-changing request.
 * - API tokens are checked against their SHA-256 hash in the state store; they need no CSRF
 *   token (a browser never sends them on its own).
 * - Requests arriving on the unix control socket (mode 0600, owner only) are the CLI: actor 'cli'.
 */
import type { Request } from 'express';
import type { StateStore } from '../state/state-store.js';
import { parseApiToken, randomToken, safeEqual, sha256Hex } from './passwords.js';

export type Principal =
  | { kind: 'cli'; actor: 'cli' }
  | { kind: 'login'; actor: string; login: Login }
  | { kind: 'token'; actor: string; tokenId: string };

export interface Login {
  id: string;
  csrfToken: string;
  user: string;
  createdAt: number;
  lastSeenAt: number;
}

/** The login cookie's name (kept from earlier releases, so an upgrade logs nobody out). */
export const LOGIN_COOKIE = 'snapback_session';

export interface LoginsOptions {
  /** A login unused for this long ends (ms). Default 12 h. */
  idleMs?: number;
  /** A login ends this long after it began whatever happens (ms). Default 7 days. */
  absoluteMs?: number;
  /** Most logins at once; the least recently used goes first. Default 64. */
  max?: number;
  now?: () => number;
}

/** The live logins. */
export class Logins {
  private readonly byId = new Map<string, Login>();
  readonly idleMs: number;
  readonly absoluteMs: number;
  private readonly max: number;
  private readonly now: () => number;
  /** Called with a login's id when it ends (logout, password change, expiry). */
  onEnd: (id: string) => void = () => undefined;

  constructor(opts: LoginsOptions = {}) {
    this.idleMs = opts.idleMs ?? 12 * 3600_000;
    this.absoluteMs = opts.absoluteMs ?? 7 * 24 * 3600_000;
    this.max = opts.max ?? 64;
    this.now = opts.now ?? Date.now;
  }

  create(user: string): Login {
    this.prune();
    while (this.byId.size >= this.max) {
      let oldest: Login | null = null;
      for (const s of this.byId.values()) if (!oldest || s.lastSeenAt < oldest.lastSeenAt) oldest = s;
      if (!oldest) break;
      this.end(oldest.id);
    }
    const now = this.now();
    const s: Login = { id: randomToken(32), csrfToken: randomToken(32), user, createdAt: now, lastSeenAt: now };
    this.byId.set(s.id, s);
    return s;
  }

  /** The live login with this id (and marks it used), or null. */
  lookup(id: string): Login | null {
    const s = this.byId.get(id);
    if (!s) return null;
    const now = this.now();
    if (now - s.lastSeenAt > this.idleMs || now - s.createdAt > this.absoluteMs) {
      this.end(id);
      return null;
    }
    s.lastSeenAt = now;
    return s;
  }

  end(id: string): void {
    if (this.byId.delete(id)) this.onEnd(id);
  }

  /** Ends every login except `keepId`. */
  endAll(keepId?: string): void {
    for (const id of [...this.byId.keys()]) if (id !== keepId) this.end(id);
  }

  /** Ends the logins that have expired (the component calls this periodically). */
  prune(): void {
    const now = this.now();
    for (const s of [...this.byId.values()]) {
      if (now - s.lastSeenAt > this.idleMs || now - s.createdAt > this.absoluteMs) this.end(s.id);
    }
  }

  get size(): number {
    return this.byId.size;
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

export function loginCookie(value: string, opts: { secure: boolean; maxAgeSeconds: number }): string {
  const parts = [`${LOGIN_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${opts.maxAgeSeconds}`];
  if (opts.secure) parts.push('Secure');
  return parts.join('; ');
}

/** Resolves the principal of a TCP request from its cookie or Bearer token (null: anonymous). */
export function authenticate(
  req: Request,
  logins: Logins,
  store: Pick<StateStore, 'findToken' | 'touchToken'>,
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
  const id = parseCookies(req.headers.cookie).get(LOGIN_COOKIE);
  if (id) {
    const login = logins.lookup(id);
    if (login) return { principal: { kind: 'login', actor: login.user, login }, badToken: false };
  }
  return { principal: null, badToken: false };
}
