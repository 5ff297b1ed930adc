import { parseApiToken, randomToken, safeEqual, sha256Hex } from './passwords.js';
export const SESSION_COOKIE = 'snapback_session';
export class LoginSessions {
    #byId = new Map();
    idleMs;
    absoluteMs;
    #max;
    #now;
    /** Called with a session's id when it ends (logout, password change, expiry). */
    onEnd = () => undefined;
    constructor(opts = {}) {
        this.idleMs = opts.idleMs ?? 12 * 3600_000;
        this.absoluteMs = opts.absoluteMs ?? 7 * 24 * 3600_000;
        this.#max = opts.max ?? 64;
        this.#now = opts.now ?? Date.now;
    }
    create(user) {
        this.prune();
        while (this.#byId.size >= this.#max) {
            let oldest = null;
            for (const s of this.#byId.values())
                if (!oldest || s.lastSeenAt < oldest.lastSeenAt)
                    oldest = s;
            if (!oldest)
                break;
            this.end(oldest.id);
        }
        const now = this.#now();
        const s = { id: randomToken(32), csrfToken: randomToken(32), user, createdAt: now, lastSeenAt: now };
        this.#byId.set(s.id, s);
        return s;
    }
    /** The live session with this id (and marks it used), or null. */
    lookup(id) {
        const s = this.#byId.get(id);
        if (!s)
            return null;
        const now = this.#now();
        if (now - s.lastSeenAt > this.idleMs || now - s.createdAt > this.absoluteMs) {
            this.end(id);
            return null;
        }
        s.lastSeenAt = now;
        return s;
    }
    end(id) {
        if (this.#byId.delete(id))
            this.onEnd(id);
    }
    /** Ends every session except `keepId`. */
    endAll(keepId) {
        for (const id of [...this.#byId.keys()])
            if (id !== keepId)
                this.end(id);
    }
    prune() {
        const now = this.#now();
        for (const s of [...this.#byId.values()]) {
            if (now - s.lastSeenAt > this.idleMs || now - s.createdAt > this.absoluteMs)
                this.end(s.id);
        }
    }
    get size() {
        return this.#byId.size;
    }
}
/**
 * Login rate limiting: at most `perClient` failed attempts per client address within `windowMs`,
 * and at most `global` failures from everyone within the same window (a distributed guesser).
 * While limited, even a right password is refused.
 */
export class LoginRateLimiter {
    #failures = new Map();
    #globalFailures = [];
    #perClient;
    #global;
    #windowMs;
    #now;
    constructor(opts = {}) {
        this.#perClient = opts.perClient ?? 5;
        this.#global = opts.global ?? 30;
        this.#windowMs = opts.windowMs ?? 15 * 60_000;
        this.#now = opts.now ?? Date.now;
    }
    /** Seconds until `client` may try again, or 0 when it may try now. */
    retryAfter(client) {
        const now = this.#now();
        const cutoff = now - this.#windowMs;
        this.#globalFailures = this.#globalFailures.filter((t) => t > cutoff);
        const mine = (this.#failures.get(client) ?? []).filter((t) => t > cutoff);
        if (mine.length)
            this.#failures.set(client, mine);
        else
            this.#failures.delete(client);
        let until = 0;
        if (mine.length >= this.#perClient)
            until = Math.max(until, mine[mine.length - this.#perClient] + this.#windowMs);
        if (this.#globalFailures.length >= this.#global) {
            until = Math.max(until, this.#globalFailures[this.#globalFailures.length - this.#global] + this.#windowMs);
        }
        return until > now ? Math.ceil((until - now) / 1000) : 0;
    }
    fail(client) {
        const now = this.#now();
        const list = this.#failures.get(client) ?? [];
        list.push(now);
        if (list.length > this.#perClient)
            list.splice(0, list.length - this.#perClient);
        this.#failures.set(client, list);
        this.#globalFailures.push(now);
        if (this.#globalFailures.length > this.#global)
            this.#globalFailures.splice(0, this.#globalFailures.length - this.#global);
        if (this.#failures.size > 10_000) {
            // Bounded memory under a flood of addresses: drop the oldest entries.
            const drop = [...this.#failures.keys()].slice(0, this.#failures.size - 10_000);
            for (const k of drop)
                this.#failures.delete(k);
        }
    }
    succeed(client) {
        this.#failures.delete(client);
    }
}
export function parseCookies(header) {
    const out = new Map();
    if (!header)
        return out;
    for (const part of header.split(';')) {
        const i = part.indexOf('=');
        if (i <= 0)
            continue;
        const k = part.slice(0, i).trim();
        let v = part.slice(i + 1).trim();
        if (v.startsWith('"') && v.endsWith('"'))
            v = v.slice(1, -1);
        if (!out.has(k)) {
            try {
                out.set(k, decodeURIComponent(v));
            }
            catch {
                out.set(k, v);
            }
        }
    }
    return out;
}
export function sessionCookie(value, opts) {
    const parts = [`${SESSION_COOKIE}=${value}`, 'Path=/', 'HttpOnly', 'SameSite=Strict', `Max-Age=${opts.maxAgeSeconds}`];
    if (opts.secure)
        parts.push('Secure');
    return parts.join('; ');
}
/** Resolves the principal of a TCP request from its cookie or Bearer token (null: anonymous). */
export function authenticate(req, sessions, store) {
    const authz = req.headers.authorization;
    if (authz !== undefined) {
        const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
        const parsed = m ? parseApiToken(m[1]) : null;
        const rec = parsed ? store.findToken(parsed.id) : null;
        if (!parsed || !rec || !safeEqual(sha256Hex(parsed.secret), rec.secretHash))
            return { principal: null, badToken: true };
        store.touchToken(rec.id);
        return { principal: { kind: 'token', actor: `token:${rec.name}`, tokenId: rec.id }, badToken: false };
    }
    const sid = parseCookies(req.headers.cookie).get(SESSION_COOKIE);
    if (sid) {
        const s = sessions.lookup(sid);
        if (s)
            return { principal: { kind: 'session', actor: s.user, session: s }, badToken: false };
    }
    return { principal: null, badToken: false };
}
//# sourceMappingURL=auth.js.map