/**
 * The web UI's own JSON endpoints (the control API proper — status, session end, mode, regions,
 * sessions, metrics — is createApiRouter in api-routes.ts):
 *
 *   GET    /api/auth/state           public: is a password set, am I logged in, my CSRF token
 *   POST   /api/auth/setup           public, first start only: {password} sets it and logs in
 *   POST   /api/auth/login           public: {password} → session cookie + CSRF token
 *   POST   /api/auth/logout
 *   POST   /api/auth/password        {currentPassword, newPassword} (CLI: {newPassword})
 *   GET    /api/tokens               API tokens (never their secrets)
 *   POST   /api/tokens               {name} → the token, shown once
 *   DELETE /api/tokens/:id           revoke
 *   GET    /api/settings
 *   POST   /api/settings             {hydrationRateBytesPerSecond?, sessionEndPolicy?: {usb?, hostPowerOff?}}
 *   GET    /api/audit?limit=&before= the audit log, newest first
 *   GET    /api/export/sessions.csv  the session history as CSV
 *   GET    /api/model                the active model and the last verification
 *   POST   /api/model/verify         start verifying the model ({} body)
 *   GET    /api/events               server-sent events (live-events.ts)
 *
 * Every body, parameter and query is validated with zod (.strict(): unknown keys are refused);
 * a bad one is answered 400 before anything changes. Each change is written to the audit log.
 */
import express from 'express';
import { z } from 'zod';
import { hydrationRateSchema, sessionEndPolicySchema } from '../state/schema.js';
import { ADMIN_USER } from '../state/state-store.js';
import { sessionCookie } from './auth.js';
import { HttpError, asyncHandler, hostOfHeader, isLoopbackHost, redact, validate } from './http-util.js';
import { canVerifyModel } from './model-verify.js';
import { hashPassword, newApiToken, sha256Hex, verifyPassword } from './passwords.js';
export const MIN_PASSWORD_LENGTH = 8;
const newPassword = z
    .string({ required_error: 'required' })
    .min(MIN_PASSWORD_LENGTH, `at least ${MIN_PASSWORD_LENGTH} characters`)
    .max(256, 'at most 256 characters')
    .refine((s) => s.trim().length > 0, 'must not be only spaces');
const setupBody = z.object({ password: newPassword }).strict();
const loginBody = z
    .object({ username: z.literal(ADMIN_USER).optional(), password: z.string({ required_error: 'required' }).min(1).max(1024) })
    .strict();
const passwordBody = z.object({ currentPassword: z.string().min(1).max(1024).optional(), newPassword }).strict();
const tokenBody = z
    .object({
    name: z
        .string({ required_error: 'required' })
        .trim()
        .min(1, 'required')
        .max(64, 'at most 64 characters')
        .regex(/^[\w .@:-]+$/, 'letters, digits, spaces and . _ @ : - only'),
})
    .strict();
const tokenParams = z.object({ id: z.string().regex(/^[0-9a-f]{12}$/, 'not a token id') }).strict();
const settingsBody = z
    .object({
    hydrationRateBytesPerSecond: hydrationRateSchema.optional(),
    sessionEndPolicy: sessionEndPolicySchema.partial().strict().optional(),
})
    .strict()
    .refine((b) => b.hydrationRateBytesPerSecond !== undefined || b.sessionEndPolicy !== undefined, 'nothing to change');
const auditQuery = z
    .object({
    limit: z.coerce.number().int().min(1).max(1000).optional(),
    before: z.coerce.number().int().positive().optional(),
})
    .strict();
const emptyBody = z.object({}).strict();
const noQuery = z.object({}).strict();
export function principalOf(res) {
    return res.locals.principal ?? null;
}
function needPrincipal(res) {
    const p = principalOf(res);
    if (!p)
        throw new HttpError(401, 'UNAUTHENTICATED', 'log in first');
    return p;
}
/** Marks the request as audited, so the generic audit of state-changing requests skips it. */
async function audit(deps, res, actor, action, details) {
    res.locals.audited = true;
    await deps.store.audit({ actor, action, ...(details ? { details } : {}) });
}
function clientOf(req) {
    return req.socket.remoteAddress ?? 'control-socket';
}
function setSessionCookie(req, res, deps, value, maxAgeSeconds) {
    res.setHeader('Set-Cookie', sessionCookie(value, { secure: req.secure, maxAgeSeconds: maxAgeSeconds ?? Math.floor(deps.sessions.absoluteMs / 1000) }));
}
export function createUiRouter(deps) {
    const { service, store, sessions, limiter, live } = deps;
    const r = express.Router();
    r.get('/api/auth/state', (req, res) => {
        validate(noQuery, req.query, 'query');
        const p = principalOf(res);
        res.json({
            passwordSet: store.hasAdminPassword(),
            authenticated: p !== null,
            via: p?.kind ?? null,
            actor: p?.actor ?? null,
            csrfToken: p?.kind === 'session' ? p.session.csrfToken : null,
            minPasswordLength: MIN_PASSWORD_LENGTH,
        });
    });
    r.post('/api/auth/setup', asyncHandler(async (req, res) => {
        const body = validate(setupBody, req.body, 'body');
        const p = principalOf(res);
        if (store.hasAdminPassword())
            throw new HttpError(409, 'ALREADY_SET', 'the administrator password is already set; log in instead');
        // Before a password exists the listener is loopback-only; refusing other Host names keeps a
        // DNS-rebinding page in the administrator's browser from claiming the appliance first.
        if (p?.kind !== 'cli' && !isLoopbackHost(hostOfHeader(req.headers.host))) {
            throw new HttpError(403, 'FORBIDDEN', 'the first password can only be set through a loopback address (localhost)');
        }
        const hash = await hashPassword(body.password);
        if (store.hasAdminPassword())
            throw new HttpError(409, 'ALREADY_SET', 'the administrator password is already set; log in instead');
        await store.setAdminPasswordHash(hash);
        const s = sessions.create(ADMIN_USER);
        setSessionCookie(req, res, deps, s.id);
        await audit(deps, res, p?.kind === 'cli' ? 'cli' : ADMIN_USER, 'auth.password-set', { client: clientOf(req) });
        res.status(201).json({ csrfToken: s.csrfToken });
    }));
    r.post('/api/auth/login', asyncHandler(async (req, res) => {
        const body = validate(loginBody, req.body, 'body');
        const client = clientOf(req);
        const wait = limiter.retryAfter(client);
        if (wait > 0) {
            throw new HttpError(429, 'RATE_LIMITED', `too many failed logins; try again in ${wait} s`, { 'Retry-After': String(wait) });
        }
        const admin = store.admin();
        if (!admin)
            throw new HttpError(409, 'SETUP_REQUIRED', 'no password is set yet; set one first');
        // Count the attempt as a failure before checking it, so parallel guesses cannot all slip
        // through before the first one is counted; a success clears it.
        limiter.fail(client);
        const ok = await verifyPassword(body.password, admin.passwordHash);
        if (!ok) {
            await audit(deps, res, 'anonymous', 'auth.login-failed', { client });
            throw new HttpError(401, 'BAD_CREDENTIALS', 'wrong password');
        }
        limiter.succeed(client);
        const old = principalOf(res);
        if (old?.kind === 'session')
            sessions.end(old.session.id);
        const s = sessions.create(ADMIN_USER);
        setSessionCookie(req, res, deps, s.id);
        await audit(deps, res, ADMIN_USER, 'auth.login', { client });
        res.json({ csrfToken: s.csrfToken });
    }));
    r.post('/api/auth/logout', asyncHandler(async (req, res) => {
        validate(emptyBody, req.body ?? {}, 'body');
        const p = needPrincipal(res);
        if (p.kind !== 'session')
            throw new HttpError(400, 'BAD_ARGUMENT', 'only a browser session can log out');
        sessions.end(p.session.id);
        setSessionCookie(req, res, deps, '', 0);
        await audit(deps, res, p.actor, 'auth.logout', { client: clientOf(req) });
        res.status(204).end();
    }));
    r.post('/api/auth/password', asyncHandler(async (req, res) => {
        const body = validate(passwordBody, req.body, 'body');
        const p = needPrincipal(res);
        if (p.kind === 'token')
            throw new HttpError(403, 'FORBIDDEN', 'API tokens cannot change the password');
        if (p.kind === 'session') {
            if (body.currentPassword === undefined)
                throw new HttpError(400, 'BAD_ARGUMENT', 'body.currentPassword: required');
            const client = clientOf(req);
            const wait = limiter.retryAfter(client);
            if (wait > 0)
                throw new HttpError(429, 'RATE_LIMITED', `too many failed attempts; try again in ${wait} s`, { 'Retry-After': String(wait) });
            const admin = store.admin();
            limiter.fail(client);
            if (!admin || !(await verifyPassword(body.currentPassword, admin.passwordHash))) {
                await audit(deps, res, p.actor, 'auth.password-change-failed', { client });
                throw new HttpError(403, 'BAD_CREDENTIALS', 'the current password is wrong');
            }
            limiter.succeed(client);
        }
        await store.setAdminPasswordHash(await hashPassword(body.newPassword));
        // Everyone else logged in with the old password is logged out.
        sessions.endAll(p.kind === 'session' ? p.session.id : undefined);
        await audit(deps, res, p.actor, 'auth.password-change');
        res.status(204).end();
    }));
    // ---- API tokens ----
    const needTokenManager = (res) => {
        const p = needPrincipal(res);
        if (p.kind === 'token')
            throw new HttpError(403, 'FORBIDDEN', 'API tokens cannot manage API tokens');
        return p;
    };
    r.get('/api/tokens', (req, res) => {
        validate(noQuery, req.query, 'query');
        needTokenManager(res);
        res.json({
            tokens: store.listTokens().map((t) => ({ id: t.id, name: t.name, createdAt: t.createdAt, createdBy: t.createdBy, lastUsedAt: t.lastUsedAt })),
        });
    });
    r.post('/api/tokens', asyncHandler(async (req, res) => {
        const body = validate(tokenBody, req.body, 'body');
        const p = needTokenManager(res);
        if (store.listTokens().length >= 100)
            throw new HttpError(409, 'TOO_MANY', 'at most 100 API tokens; revoke one first');
        const t = newApiToken();
        const createdAt = new Date().toISOString();
        await store.addToken({ id: t.id, name: body.name, secretHash: sha256Hex(t.secret), createdAt, createdBy: p.actor, lastUsedAt: null });
        await audit(deps, res, p.actor, 'token.create', { id: t.id, name: body.name });
        res.status(201).json({ id: t.id, name: body.name, createdAt, token: t.token });
    }));
    r.delete('/api/tokens/:id', asyncHandler(async (req, res) => {
        const { id } = validate(tokenParams, req.params, 'params');
        const p = needTokenManager(res);
        const rec = store.findToken(id);
        if (!rec || !(await store.removeToken(id)))
            throw new HttpError(404, 'NOT_FOUND', `no API token ${id}`);
        await audit(deps, res, p.actor, 'token.revoke', { id, name: rec.name });
        res.status(204).end();
    }));
    // ---- settings ----
    r.get('/api/settings', (req, res) => {
        validate(noQuery, req.query, 'query');
        needPrincipal(res);
        res.json(store.settings());
    });
    r.post('/api/settings', asyncHandler(async (req, res) => {
        const body = validate(settingsBody, req.body, 'body');
        const p = needPrincipal(res);
        if (body.hydrationRateBytesPerSecond !== undefined)
            service.setHydrationRate(body.hydrationRateBytesPerSecond);
        const next = await store.updateSettings({
            ...(body.hydrationRateBytesPerSecond !== undefined ? { hydrationRateBytesPerSecond: body.hydrationRateBytesPerSecond } : {}),
            ...(body.sessionEndPolicy ? { sessionEndPolicy: stripUndefined(body.sessionEndPolicy) } : {}),
        });
        await audit(deps, res, p.actor, 'settings.update', { changes: redact(body) });
        res.json(next);
    }));
    // ---- audit log, session export ----
    r.get('/api/audit', (req, res) => {
        const q = validate(auditQuery, req.query, 'query');
        needPrincipal(res);
        res.json({ entries: store.listAudit({ limit: q.limit ?? 100, ...(q.before !== undefined ? { beforeId: q.before } : {}) }) });
    });
    r.get('/api/export/sessions.csv', (req, res) => {
        validate(noQuery, req.query, 'query');
        needPrincipal(res);
        res.setHeader('Content-Type', 'text/csv; charset=utf-8');
        res.setHeader('Content-Disposition', 'attachment; filename="snapback-sessions.csv"');
        res.send(sessionsCsv(service.sessions()));
    });
    // ---- model ----
    r.get('/api/model', (req, res) => {
        validate(noQuery, req.query, 'query');
        needPrincipal(res);
        const st = service.status();
        res.json({ model: st.model, canVerify: canVerifyModel(service), verify: canVerifyModel(service) ? service.modelVerifyStatus() : null });
    });
    r.post('/api/model/verify', asyncHandler(async (req, res) => {
        validate(emptyBody, req.body ?? {}, 'body');
        const p = needPrincipal(res);
        if (!canVerifyModel(service))
            throw new HttpError(501, 'NOT_SUPPORTED', 'this daemon cannot verify the model from the web UI');
        if (service.modelVerifyStatus().state === 'running')
            throw new HttpError(409, 'BUSY', 'a verification is already running');
        const st = service.startModelVerify();
        await audit(deps, res, p.actor, 'model.verify', { model: service.status().model.id });
        res.status(202).json(st);
    }));
    // ---- live updates ----
    r.get('/api/events', (req, res) => {
        validate(noQuery, req.query, 'query');
        const p = needPrincipal(res);
        if (!live.attach(res, p.kind === 'session' ? p.session.id : null)) {
            throw new HttpError(503, 'BUSY', 'too many live-update streams are open');
        }
    });
    return r;
}
function stripUndefined(o) {
    return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
export const SESSION_CSV_COLUMNS = [
    'number',
    'startedAt',
    'endedAt',
    'endReason',
    'mode',
    'regionsWritten',
    'bytesWritten',
    'sessionEndMs',
    'restoreMs',
    'events',
];
export function sessionsCsv(list) {
    const rows = [SESSION_CSV_COLUMNS.join(',')];
    for (const s of [...list].sort((a, b) => a.number - b.number)) {
        rows.push([
            s.number,
            s.startedAt,
            s.endedAt ?? '',
            s.endReason ?? '',
            s.mode,
            s.regionsWritten,
            s.bytesWritten,
            s.sessionEndMs ?? '',
            s.restoreMs ?? '',
            s.events.map((e) => `${e.at} ${e.what}`).join('; '),
        ]
            .map(csvField)
            .join(','));
    }
    return rows.join('\r\n') + '\r\n';
}
function csvField(v) {
    let s = String(v);
    // A spreadsheet would run a cell that starts like a formula.
    if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s))
        s = `'${s}`;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}
//# sourceMappingURL=ui-routes.js.map