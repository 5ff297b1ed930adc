/**
 * The shape of the state file (lowdb, DESIGN §6), its schema version and the migrations that
 * bring an older file up to date. Every file read is migrated and then validated against these
 * zod schemas; one that does not fit is refused (never repaired by overwriting).
 *
 * To change the shape: bump SCHEMA_VERSION, add a migration from the previous version, and keep
 * the old migrations (a Pi may skip several releases).
 */
import { z } from 'zod';
export const SCHEMA_VERSION = 1;
/** Which host-side transitions end a session (DESIGN §4). */
export const sessionEndPolicySchema = z
    .object({
    /**
     * 'power-cycle': the USB bus went away (`not attached`) and the host enumerated again; a host
     * that only suspends (sleeps) keeps its session.
     * 'bus-reset': also a bus reset without losing power (a warm reboot that keeps USB powered);
     * some hosts reset the bus when they wake, so this can end a session on resume.
     * 'ignore': USB transitions are recorded but never end a session.
     */
    usb: z.enum(['power-cycle', 'bus-reset', 'ignore']),
    /** The host's power LED going dark (GPIO sense, when wired) ends the session. */
    hostPowerOff: z.boolean(),
})
    .strict();
/** Hydration rate limit in bytes per second (the control API's range); null is unlimited. */
export const hydrationRateSchema = z
    .number()
    .int()
    .positive()
    .max(2 ** 40)
    .nullable();
export const settingsSchema = z
    .object({
    /** Mirror of the write log's header (the log is the truth); shown before the daemon is up. */
    protectionMode: z.enum(['frozen', 'thawed']),
    /** Mirror of the restore mode; the daemon applies it at start. */
    restoreMode: z.enum(['instant', 'eager']),
    /** Background restore rate limit in bytes per second; null: unlimited. */
    hydrationRateBytesPerSecond: hydrationRateSchema,
    sessionEndPolicy: sessionEndPolicySchema,
})
    .strict();
export const DEFAULT_SETTINGS = {
    protectionMode: 'frozen',
    restoreMode: 'instant',
    hydrationRateBytesPerSecond: null,
    sessionEndPolicy: { usb: 'power-cycle', hostPowerOff: true },
};
export const userSchema = z
    .object({
    name: z.string().min(1),
    /** scrypt hash in the self-describing form of appliance/http/passwords.ts. */
    passwordHash: z.string().min(1),
    createdAt: z.string(),
    passwordChangedAt: z.string(),
})
    .strict();
export const apiTokenSchema = z
    .object({
    id: z.string().min(1),
    name: z.string(),
    /** SHA-256 (hex) of the token's secret: tokens are long random strings, so no slow hash is needed. */
    secretHash: z.string().regex(/^[0-9a-f]{64}$/),
    createdAt: z.string(),
    createdBy: z.string(),
    lastUsedAt: z.string().nullable(),
})
    .strict();
export const sessionRecordSchema = z.object({
    number: z.number().int().nonnegative(),
    startedAt: z.string(),
    endedAt: z.string().nullable(),
    endReason: z.enum(['daemon-start', 'api', 'button', 'host-power-off', 'usb-reconnect', 'gadget-watchdog']).nullable(),
    mode: z.enum(['frozen', 'thawed']),
    regionsWritten: z.number().int().nonnegative(),
    bytesWritten: z.number().nonnegative(),
    sessionEndMs: z.number().nonnegative().nullable(),
    restoreMs: z.number().nonnegative().nullable(),
    events: z.array(z.object({ at: z.string(), what: z.string() })),
});
export const auditEntrySchema = z
    .object({
    id: z.number().int().positive(),
    at: z.string(),
    actor: z.string(),
    action: z.string(),
    details: z.record(z.unknown()).optional(),
})
    .strict();
export const stateSchema = z
    .object({
    schemaVersion: z.literal(SCHEMA_VERSION),
    settings: settingsSchema,
    users: z.array(userSchema),
    apiTokens: z.array(apiTokenSchema),
    sessions: z.array(sessionRecordSchema),
    audit: z.array(auditEntrySchema),
    /** Next audit entry id (ids never repeat, even after old entries are dropped). */
    nextAuditId: z.number().int().positive(),
})
    .strict();
export function emptyState() {
    return {
        schemaVersion: SCHEMA_VERSION,
        settings: structuredClone(DEFAULT_SETTINGS),
        users: [],
        apiTokens: [],
        sessions: [],
        audit: [],
        nextAuditId: 1,
    };
}
/**
 * Version 0 is a file without `schemaVersion` (written before the field existed, or by hand):
 * whatever it holds is kept, and every missing part gets its default.
 */
export const MIGRATIONS = [
    {
        from: 0,
        describe: 'add schemaVersion; fill in missing settings, users, tokens, history and audit log',
        migrate(data) {
            const base = emptyState();
            const settings = isRecord(data.settings) ? data.settings : {};
            const audit = Array.isArray(data.audit) ? data.audit : [];
            const maxId = audit.reduce((m, e) => (isRecord(e) && typeof e.id === 'number' ? Math.max(m, e.id) : m), 0);
            return {
                ...base,
                ...data,
                schemaVersion: 1,
                settings: {
                    ...base.settings,
                    ...settings,
                    sessionEndPolicy: {
                        ...base.settings.sessionEndPolicy,
                        ...(isRecord(settings.sessionEndPolicy) ? settings.sessionEndPolicy : {}),
                    },
                },
                users: Array.isArray(data.users) ? data.users : [],
                apiTokens: Array.isArray(data.apiTokens) ? data.apiTokens : [],
                sessions: Array.isArray(data.sessions) ? data.sessions : [],
                audit,
                nextAuditId: typeof data.nextAuditId === 'number' ? data.nextAuditId : maxId + 1,
            };
        },
    },
];
export function isRecord(v) {
    return typeof v === 'object' && v !== null && !Array.isArray(v);
}
//# sourceMappingURL=schema.js.map