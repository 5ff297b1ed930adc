/**
 * The shape of the state file (lowdb; see docs/architecture.md), its schema version and the
 * migrations that
 * bring an older file up to date. Every file read is migrated and then validated against these
 * zod schemas; one that does not fit is refused (never repaired by overwriting).
 *
 * To change the shape: bump SCHEMA_VERSION, add a migration from the previous version, and keep
 * the old migrations (a Pi may skip several releases).
 */
import { z } from 'zod';
import { auditEntrySchema } from '../api/audit.js';
import { sessionRecordSchema } from '../api/sessions.js';
import { settingsSchema, type Settings } from '../api/settings.js';
import { DEFAULT_MAINTENANCE_SETTINGS } from '../api/maintenance.js';

export const SCHEMA_VERSION = 2;

// The settings, session records and audit entries are also the HTTP API's: one definition, in
// the API contract (appliance/api).
export { hydrationRateSchema } from '../api/modes.js';
export { settingsSchema, type Settings } from '../api/settings.js';
export { sessionRecordSchema } from '../api/sessions.js';
export { auditEntrySchema, type AuditEntry } from '../api/audit.js';

export const DEFAULT_SETTINGS: Settings = {
  hydrationRateBytesPerSecond: null,
  maintenance: structuredClone(DEFAULT_MAINTENANCE_SETTINGS),
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
export type UserRecord = z.infer<typeof userSchema>;

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
export type ApiTokenRecord = z.infer<typeof apiTokenSchema>;

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
export type StateData = z.infer<typeof stateSchema>;

export function emptyState(): StateData {
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

export interface Migration {
  /** The schema version this migration reads; it returns data of version `from + 1`. */
  from: number;
  describe: string;
  migrate(data: Record<string, unknown>): Record<string, unknown>;
}

/**
 * Version 0 is a file without `schemaVersion` (written before the field existed, or by hand):
 * whatever it holds is kept, and every missing part gets its default.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    from: 0,
    describe: 'add schemaVersion; fill in missing settings, users, tokens, history and audit log',
    migrate(data) {
      const base = V1_DEFAULTS;
      const settings = isRecord(data.settings) ? data.settings : {};
      const audit = Array.isArray(data.audit) ? data.audit : [];
      const maxId = audit.reduce<number>((m, e) => (isRecord(e) && typeof e.id === 'number' ? Math.max(m, e.id) : m), 0);
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
  {
    from: 1,
    describe: 'drop the settings nothing applied: the mirrors of the modes (the write log holds them) and sessionEndPolicy (gadget.json and gpio.json hold the policies)',
    migrate(data) {
      const settings = isRecord(data.settings) ? data.settings : {};
      const { protectionMode: _mode, restoreMode: _restore, sessionEndPolicy: _policy, ...rest } = settings;
      return { ...data, schemaVersion: 2, settings: rest };
    },
  },
];

/** Version 1's defaults, which the migration from version 0 fills in. */
const V1_DEFAULTS = {
  settings: {
    protectionMode: 'frozen',
    restoreMode: 'instant',
    hydrationRateBytesPerSecond: null,
    sessionEndPolicy: { usb: 'power-cycle', hostPowerOff: true },
  },
  users: [],
  apiTokens: [],
  sessions: [],
  audit: [],
  nextAuditId: 1,
};

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
