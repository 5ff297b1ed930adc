/**
 * The appliance's small, slowly changing state: settings, the administrator's
 * password hash, API tokens, the session history and the audit log, in one JSON file
 * (`DIR/state.json`, mode 0600) managed by lowdb with a durable (fsync'ing) adapter.
 *
 * - Every mutation changes the in-memory data synchronously, then writes the whole file; the
 *   returned promise resolves once that write is durable. Concurrent mutations share writes.
 * - A state file that cannot be parsed or does not fit the schema is refused with a
 *   StateCorruptError (code STATE_CORRUPT); nothing is overwritten. An older schema is migrated
 *   (the original is kept beside it as state.json.v<N>.bak) and written back.
 * - Nothing here touches the write log: per-region state lives in the binary log, never here.
 *
 * - A write that fails (the filesystem is full) leaves the change in memory: it goes out with
 *   the next write that succeeds, and `writeError` says what went wrong until then.
 *
 * The settings here (the hydration rate) have this store as their one owner: whoever changes
 * them, listeners of 'settings' apply them. The protection and restore modes are not settings:
 * the write log's header holds them. The USB and GPIO policies live in gadget.json / gpio.json.
 *
 * Events: 'settings' (settings: Settings), 'audit' (entry: AuditEntry), 'write-error' (err).
 */
import { EventEmitter } from 'node:events';
import { copyFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Low } from 'lowdb';
import type { SessionRecord } from '../api/sessions.js';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';
import { childLogger } from '../logger.js';
import { DurableJsonFile, StateCorruptError } from './durable-json-file.js';
import {
  MIGRATIONS,
  SCHEMA_VERSION,
  emptyState,
  isRecord,
  settingsSchema,
  stateSchema,
  type ApiTokenRecord,
  type AuditEntry,
  type Settings,
  type StateData,
  type UserRecord,
} from './schema.js';

export { StateCorruptError } from './durable-json-file.js';
export type { ApiTokenRecord, AuditEntry, Settings, UserRecord } from './schema.js';
export { DEFAULT_SETTINGS, SCHEMA_VERSION } from './schema.js';

const log = childLogger('state');

export const STATE_FILE_NAME = 'state.json';
/** The administrator account's name (the appliance has one administrator). */
export const ADMIN_USER = 'admin';

export interface StateStoreOptions {
  /** Sessions kept in the history (oldest dropped first). Default 1000. */
  sessionHistoryLimit?: number;
  /** Audit entries kept (oldest dropped first). Default 5000. */
  auditLimit?: number;
}

export interface AuditInput {
  /** Who: 'admin' (web UI), 'cli' (control socket), 'token:NAME', 'system', 'button', … */
  actor: string;
  /** What, as a dotted verb: 'session.end', 'mode.set', 'auth.login', … */
  action: string;
  details?: Record<string, unknown>;
}

export interface AuditQuery {
  /** Entries with an id below this one (paging backwards). */
  beforeId?: number;
  /** At most this many, newest first. Default 100. */
  limit?: number;
}

export class StateStore extends EventEmitter {
  readonly path: string;
  private readonly db: Low<StateData>;
  private readonly sessionLimit: number;
  private readonly auditLimit: number;
  private version = 0;
  private durable = 0;
  private inflight: Promise<void> | null = null;
  private closed = false;
  private lastWriteError: string | null = null;

  private constructor(path: string, db: Low<StateData>, opts: StateStoreOptions) {
    super();
    this.path = path;
    this.db = db;
    this.sessionLimit = opts.sessionHistoryLimit ?? 1000;
    this.auditLimit = opts.auditLimit ?? 5000;
  }

  /**
   * Reads and validates DIR/state.json (migrating in memory) without writing anything: the
   * daemon's check before it starts. Rejects as open() would; a missing file is fine.
   */
  static async check(stateDir: string): Promise<void> {
    const path = join(stateDir, STATE_FILE_NAME);
    const raw = (await new DurableJsonFile<StateData>(path).read()) as unknown;
    if (raw !== null) migrate(path, raw);
  }

  /**
   * Opens (or, on first start, creates) DIR/state.json. Rejects with STATE_MISSING when DIR does
   * not exist and with StateCorruptError when the file is unusable.
   */
  static async open(stateDir: string, opts: StateStoreOptions = {}): Promise<StateStore> {
    try {
      const st = await stat(stateDir);
      if (!st.isDirectory()) throw new SnapbackError('STATE_MISSING', `${stateDir} is not a directory`, { stateDir });
    } catch (err) {
      if (err instanceof SnapbackError) throw err;
      throw new SnapbackError('STATE_MISSING', `the state directory ${stateDir} does not exist`, { stateDir }, { cause: err });
    }
    const path = join(stateDir, STATE_FILE_NAME);
    const adapter = new DurableJsonFile<StateData>(path);
    await adapter.removeLeftovers();
    const raw = (await adapter.read()) as unknown;
    const db = new Low<StateData>(adapter, emptyState());
    const store = new StateStore(path, db, opts);
    if (raw === null) {
      log.info({ path }, 'creating the state file');
      await store.persist();
      return store;
    }
    const { data, migratedFrom } = migrate(path, raw);
    db.data = data;
    store.trim();
    if (migratedFrom !== null) {
      const backup = `${path}.v${migratedFrom}.bak`;
      await copyFile(path, backup);
      log.info({ path, from: migratedFrom, to: SCHEMA_VERSION, backup }, 'migrated the state file');
      await store.persist();
    }
    return store;
  }

  // ---- settings ----------------------------------------------------------------------------

  settings(): Settings {
    return structuredClone(this.data.settings);
  }

  /**
   * Merges `patch` into the settings. The result is validated first: an invalid patch rejects
   * with BAD_ARGUMENT and changes nothing.
   */
  async updateSettings(patch: Partial<Settings>): Promise<Settings> {
    this.assertOpen();
    const parsed = settingsSchema.safeParse({ ...this.data.settings, ...patch });
    if (!parsed.success) {
      throw new SnapbackError('BAD_ARGUMENT', `invalid settings: ${formatZodIssues(parsed.error)}`);
    }
    this.data.settings = parsed.data;
    const p = this.persist();
    this.emit('settings', structuredClone(parsed.data));
    await p;
    return structuredClone(parsed.data);
  }

  // ---- users -------------------------------------------------------------------------------

  /** The administrator, or null before the first password is set. */
  admin(): UserRecord | null {
    const u = this.data.users.find((x) => x.name === ADMIN_USER);
    return u ? { ...u } : null;
  }

  hasAdminPassword(): boolean {
    return this.admin() !== null;
  }

  /** Sets (or replaces) the administrator's password hash. */
  async setAdminPasswordHash(passwordHash: string): Promise<void> {
    this.assertOpen();
    if (!passwordHash) throw new SnapbackError('BAD_ARGUMENT', 'empty password hash');
    const now = new Date().toISOString();
    const u = this.data.users.find((x) => x.name === ADMIN_USER);
    if (u) {
      u.passwordHash = passwordHash;
      u.passwordChangedAt = now;
    } else {
      this.data.users.push({ name: ADMIN_USER, passwordHash, createdAt: now, passwordChangedAt: now });
    }
    await this.persist();
  }

  // ---- API tokens --------------------------------------------------------------------------

  listTokens(): ApiTokenRecord[] {
    return this.data.apiTokens.map((t) => ({ ...t }));
  }

  findToken(id: string): ApiTokenRecord | null {
    const t = this.data.apiTokens.find((x) => x.id === id);
    return t ? { ...t } : null;
  }

  async addToken(rec: ApiTokenRecord): Promise<void> {
    this.assertOpen();
    if (this.data.apiTokens.some((t) => t.id === rec.id)) throw new SnapbackError('BAD_ARGUMENT', `token id ${rec.id} exists`);
    this.data.apiTokens.push({ ...rec });
    await this.persist();
  }

  /** Revokes a token; false when there was none with that id. */
  async removeToken(id: string): Promise<boolean> {
    this.assertOpen();
    const i = this.data.apiTokens.findIndex((t) => t.id === id);
    if (i < 0) return false;
    this.data.apiTokens.splice(i, 1);
    await this.persist();
    return true;
  }

  /**
   * Notes a token's use. Kept in memory and written with the next write (a token used every few
   * seconds by a monitoring script must not wear the SD card).
   */
  touchToken(id: string, at = new Date()): void {
    const t = this.data.apiTokens.find((x) => x.id === id);
    if (t) t.lastUsedAt = at.toISOString();
  }

  // ---- session history ---------------------------------------------------------------------

  /** Adds a session to the history or replaces the one with the same number. */
  async upsertSession(r: SessionRecord): Promise<void> {
    this.assertOpen();
    const copy = structuredClone(r);
    const list = this.data.sessions;
    const i = list.findIndex((s) => s.number === r.number);
    if (i >= 0) list[i] = copy;
    else {
      list.push(copy);
      list.sort((a, b) => a.number - b.number);
    }
    this.trim();
    await this.persist();
  }

  /** The session history, oldest first. */
  listSessions(): SessionRecord[] {
    return structuredClone(this.data.sessions) as SessionRecord[];
  }

  // ---- audit log ---------------------------------------------------------------------------

  /** Appends to the audit log (timestamped now); resolves once it is durable. */
  async audit(entry: AuditInput): Promise<AuditEntry> {
    this.assertOpen();
    const e: AuditEntry = {
      id: this.data.nextAuditId++,
      at: new Date().toISOString(),
      actor: entry.actor,
      action: entry.action,
      ...(entry.details !== undefined ? { details: structuredClone(entry.details) } : {}),
    };
    this.data.audit.push(e);
    this.trim();
    const p = this.persist();
    this.emit('audit', structuredClone(e));
    await p;
    return structuredClone(e);
  }

  /** Audit entries, newest first. */
  listAudit(q: AuditQuery = {}): AuditEntry[] {
    const limit = Math.max(1, Math.min(q.limit ?? 100, this.auditLimit));
    const out: AuditEntry[] = [];
    const list = this.data.audit;
    for (let i = list.length - 1; i >= 0 && out.length < limit; i--) {
      const e = list[i]!;
      if (q.beforeId !== undefined && e.id >= q.beforeId) continue;
      out.push(structuredClone(e));
    }
    return out;
  }

  /** Why the last write of the state file failed; null once a write succeeds. */
  get writeError(): string | null {
    return this.lastWriteError;
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Resolves once every change made so far is durable. */
  async flush(): Promise<void> {
    if (this.durable < this.version || this.inflight) await this.persist();
  }

  /** Flushes and refuses further changes. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
  }

  // ---- internals ---------------------------------------------------------------------------

  private get data(): StateData {
    return this.db.data;
  }

  private assertOpen(): void {
    if (this.closed) throw new SnapbackError('CLOSED', 'the state store is closed');
  }

  private trim(): void {
    const d = this.data;
    if (d.sessions.length > this.sessionLimit) d.sessions.splice(0, d.sessions.length - this.sessionLimit);
    if (d.audit.length > this.auditLimit) d.audit.splice(0, d.audit.length - this.auditLimit);
  }

  /**
   * Makes the current in-memory data durable. Writes never overlap; callers that arrive while a
   * write is running share the next one.
   */
  private async persist(): Promise<void> {
    const want = ++this.version;
    while (this.durable < want) {
      if (!this.inflight) {
        const snapshot = this.version;
        this.inflight = this.db
          .write()
          .then(
            () => {
              this.durable = Math.max(this.durable, snapshot);
              this.lastWriteError = null;
            },
            (err: unknown) => {
              this.lastWriteError = err instanceof Error ? err.message : String(err);
              this.emit('write-error', err);
              throw err;
            },
          )
          .finally(() => {
            this.inflight = null;
          });
      }
      await this.inflight;
    }
  }
}

function migrate(path: string, raw: unknown): { data: StateData; migratedFrom: number | null } {
  if (!isRecord(raw)) {
    throw new StateCorruptError(path, 'invalid', `the state file ${path} does not hold a JSON object; it was left untouched`);
  }
  const v0 = raw.schemaVersion ?? 0;
  if (typeof v0 !== 'number' || !Number.isInteger(v0) || v0 < 0) {
    throw new StateCorruptError(path, 'invalid', `the state file ${path} has an invalid schemaVersion ${JSON.stringify(v0)}; it was left untouched`);
  }
  if (v0 > SCHEMA_VERSION) {
    throw new StateCorruptError(
      path,
      'newer-schema',
      `the state file ${path} has schema version ${v0}, written by a newer Snapback; this one reads up to version ${SCHEMA_VERSION}. It was left untouched.`,
    );
  }
  let data: Record<string, unknown> = raw;
  for (let v = v0; v < SCHEMA_VERSION; v++) {
    const m = MIGRATIONS.find((x) => x.from === v);
    if (!m) throw new StateCorruptError(path, 'invalid', `no migration from state schema version ${v}`);
    data = m.migrate(data);
  }
  const parsed = stateSchema.safeParse(data);
  if (!parsed.success) {
    const why = formatZodIssues(parsed.error);
    throw new StateCorruptError(path, 'invalid', `the state file ${path} does not match schema version ${SCHEMA_VERSION} (${why}); it was left untouched`);
  }
  return { data: parsed.data, migratedFrom: v0 === SCHEMA_VERSION ? null : v0 };
}
