/**
 * The console's state, in SQLite (DIR/console.db, WAL): the administrator and API tokens, the
 * audit log, the fleet (appliances with what they last said), groups, commands and their
 * answers, the model catalogue, model assignments, enrollment codes and broker accounts.
 *
 * It offers the same account methods as the appliance's state store (so the appliance's login,
 * token and audit routes serve the console unchanged). Writes are synchronous SQLite
 * transactions; the account methods keep the store's async signatures.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { AuditEntry } from '../../appliance/api/audit.js';
import { ADMIN_USER } from '../../appliance/api/auth.js';
import type { ApplianceRecord, CommandRecord, CommandState, GroupRecord } from '../../appliance/api/console.js';
import type { ApplianceInfo, ApplianceState, FleetCommand } from '../../appliance/api/fleet.js';
import { SnapbackError } from '../../appliance/errors.js';
import type { AuditInput, AuditQuery } from '../../appliance/state/state-store.js';
import type { ApiTokenRecord, UserRecord } from '../../appliance/state/schema.js';
import { migrate } from './migrations.js';

export const CONSOLE_DB_FILE = 'console.db';
const AUDIT_LIMIT = 100_000;

interface ApplianceRow {
  name: string;
  group_name: string | null;
  online: number;
  last_seen: string | null;
  info: string | null;
  state: string | null;
  enrolled: number;
  assigned_model: string | null;
  assigned_url: string | null;
  assigned_at: string | null;
  assigned_command: string | null;
}

const APPLIANCE_SELECT =
  'SELECT a.*, s.model_name AS assigned_model, s.url AS assigned_url, s.assigned_at AS assigned_at, s.command_id AS assigned_command FROM appliances a LEFT JOIN assignments s ON s.appliance = a.name';

interface CommandRow {
  id: string;
  appliance: string;
  action: string;
  args: string;
  state: string;
  result: string | null;
  error: string | null;
  actor: string;
  created_at: string;
  sent_at: string | null;
  answered_at: string | null;
}

export interface CatalogueRow {
  id: string;
  name: string;
  size: number;
  regionSize: number;
  hash: string;
  createdAt: string;
}

export interface EnrollCodeRow {
  id: string;
  secretHash: string;
  name: string | null;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
  usedBy: string | null;
}

const json = (v: unknown): string => JSON.stringify(v);
const parse = <T>(s: string | null): T | null => (s === null ? null : (JSON.parse(s) as T));
const now = (): string => new Date().toISOString();

/**
 * Emits 'appliance' (name) when an appliance's record changes, 'command' (CommandRecord) when a
 * command is made or changes state, 'audit' (AuditEntry) on every audit entry.
 */
export class ConsoleStore extends EventEmitter {
  readonly path: string;
  private readonly db: Database.Database;
  /** Prepared statements by their SQL (preparing one costs more than running it). */
  private readonly statements = new Map<string, Database.Statement>();

  private constructor(path: string, db: Database.Database) {
    super();
    this.path = path;
    this.db = db;
  }

  static open(dataDir: string): ConsoleStore {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const path = join(dataDir, CONSOLE_DB_FILE);
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (err) {
      throw new SnapbackError('STATE_CORRUPT', `cannot open ${path}: ${(err as Error).message}`, { path }, { cause: err });
    }
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
      migrate(db, path);
    } catch (err) {
      db.close();
      if (err instanceof SnapbackError) throw err;
      throw new SnapbackError('STATE_CORRUPT', `${path} is not a usable console database: ${(err as Error).message}`, { path }, { cause: err });
    }
    return new ConsoleStore(path, db);
  }

  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /**
   * Runs `fn` as one transaction (default durability: see durable()). The broker link applies
   * the fleet's messages in batches this way: a thousand answers are one commit, not a thousand.
   */
  batch<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** This console's id, made once with its database: the same across restarts, different for every data directory. */
  consoleId(): string {
    return (this.stmt("SELECT value FROM meta WHERE key = 'console_id'").get() as { value: string }).value;
  }

  /**
   * Runs `fn` as one transaction that is on disk when it returns (synchronous=FULL). The
   * connection's default is NORMAL: in WAL mode that survives a crash of the console, and a
   * power loss may undo only the last few of the frequent fleet updates (states, acknowledgements,
   * answers), which the appliances publish or answer again. What the console promised someone
   * (a command accepted with 202, a token, a code, an account) is written durably.
   */
  private durable<T>(fn: () => T): T {
    this.db.pragma('synchronous = FULL');
    try {
      return this.db.transaction(fn)();
    } finally {
      this.db.pragma('synchronous = NORMAL');
    }
  }

  // ---- the administrator and API tokens (the appliance's account routes use these) ----------

  admin(): UserRecord | null {
    const r = this.stmt('SELECT * FROM users WHERE name = ?').get(ADMIN_USER) as
      | { name: string; password_hash: string; created_at: string; password_changed_at: string }
      | undefined;
    return r ? { name: r.name, passwordHash: r.password_hash, createdAt: r.created_at, passwordChangedAt: r.password_changed_at } : null;
  }

  hasAdminPassword(): boolean {
    return this.admin() !== null;
  }

  setAdminPasswordHash(passwordHash: string): Promise<void> {
    const t = now();
    this.durable(() =>
      this.db
        .prepare('INSERT INTO users (name, password_hash, created_at, password_changed_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash, password_changed_at = excluded.password_changed_at')
        .run(ADMIN_USER, passwordHash, t, t),
    );
    return Promise.resolve();
  }

  listTokens(): ApiTokenRecord[] {
    return (this.stmt('SELECT * FROM tokens ORDER BY created_at').all() as Record<string, string | null>[]).map(tokenOf);
  }

  findToken(id: string): ApiTokenRecord | null {
    const r = this.stmt('SELECT * FROM tokens WHERE id = ?').get(id) as Record<string, string | null> | undefined;
    return r ? tokenOf(r) : null;
  }

  addToken(rec: ApiTokenRecord): Promise<void> {
    this.durable(() =>
      this.db
        .prepare('INSERT INTO tokens (id, name, secret_hash, created_at, created_by, last_used_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(rec.id, rec.name, rec.secretHash, rec.createdAt, rec.createdBy, rec.lastUsedAt),
    );
    return Promise.resolve();
  }

  removeToken(id: string): Promise<boolean> {
    return Promise.resolve(this.durable(() => this.stmt('DELETE FROM tokens WHERE id = ?').run(id).changes > 0));
  }

  touchToken(id: string, at = new Date()): void {
    this.stmt('UPDATE tokens SET last_used_at = ? WHERE id = ?').run(at.toISOString(), id);
  }

  // ---- the audit log -------------------------------------------------------------------------

  audit(entry: AuditInput): Promise<AuditEntry> {
    const at = now();
    const id = this.durable(() => this.insertAudit(entry, at));
    return Promise.resolve(this.audited(entry, id, at));
  }

  /** Writes an audit entry (inside the caller's transaction); returns its id. */
  private insertAudit(entry: AuditInput, at: string): number {
    const info = this.stmt('INSERT INTO audit (at, actor, action, details) VALUES (?, ?, ?, ?)').run(at, entry.actor, entry.action, entry.details === undefined ? null : json(entry.details));
    const n = Number(info.lastInsertRowid);
    if (n % 1000 === 0) this.stmt('DELETE FROM audit WHERE id <= ?').run(n - AUDIT_LIMIT);
    return n;
  }

  /** The entry as written, to the live stream. */
  private audited(entry: AuditInput, id: number, at: string): AuditEntry {
    const e: AuditEntry = { id, at, actor: entry.actor, action: entry.action, ...(entry.details !== undefined ? { details: structuredClone(entry.details) } : {}) };
    this.emit('audit', e);
    return e;
  }

  /** Audit entries, newest first. */
  listAudit(q: AuditQuery = {}): AuditEntry[] {
    const limit = Math.max(1, Math.min(q.limit ?? 100, 1000));
    const rows = this.stmt('SELECT * FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?')
      .all(q.beforeId ?? Number.MAX_SAFE_INTEGER, limit) as { id: number; at: string; actor: string; action: string; details: string | null }[];
    return rows.map((r) => ({ id: r.id, at: r.at, actor: r.actor, action: r.action, ...(r.details !== null ? { details: JSON.parse(r.details) as Record<string, unknown> } : {}) }));
  }

  // ---- the fleet -------------------------------------------------------------------------------

  private ensureAppliance(name: string): void {
    this.stmt('INSERT OR IGNORE INTO appliances (name, created_at) VALUES (?, ?)').run(name, now());
  }

  /** What the appliance's availability topic says (a retained or a last-will message). */
  setAvailability(name: string, online: boolean): void {
    this.ensureAppliance(name);
    const r = this.stmt('UPDATE appliances SET online = ?, last_seen = ? WHERE name = ? AND online != ?').run(online ? 1 : 0, now(), name, online ? 1 : 0);
    if (r.changes > 0) this.emit('appliance', name);
  }

  setInfo(name: string, info: ApplianceInfo): void {
    this.ensureAppliance(name);
    this.stmt('UPDATE appliances SET info = ?, last_seen = ? WHERE name = ?').run(json(info), now(), name);
    this.emit('appliance', name);
  }

  setState(name: string, state: ApplianceState): void {
    this.ensureAppliance(name);
    this.stmt('UPDATE appliances SET state = ?, last_seen = ? WHERE name = ?').run(json(state), now(), name);
    this.emit('appliance', name);
  }

  /** Heard from it (an answer): only the last-seen time changes. */
  touchAppliance(name: string): void {
    this.stmt('UPDATE appliances SET last_seen = ? WHERE name = ?').run(now(), name);
  }

  markEnrolled(name: string): void {
    this.durable(() => {
      this.ensureAppliance(name);
      this.stmt('UPDATE appliances SET enrolled = 1 WHERE name = ?').run(name);
    });
    this.emit('appliance', name);
  }

  listAppliances(): ApplianceRecord[] {
    return (this.stmt(`${APPLIANCE_SELECT} ORDER BY a.name`).all() as ApplianceRow[]).map(applianceOf);
  }

  appliance(name: string): ApplianceRecord | null {
    const r = this.stmt(`${APPLIANCE_SELECT} WHERE a.name = ?`).get(name) as ApplianceRow | undefined;
    return r ? applianceOf(r) : null;
  }

  /** Forgets an appliance (its commands stay in the history). */
  removeAppliance(name: string): boolean {
    const gone = this.durable(() => {
      this.stmt('DELETE FROM assignments WHERE appliance = ?').run(name);
      return this.stmt('DELETE FROM appliances WHERE name = ?').run(name).changes > 0;
    });
    if (gone) this.emit('appliance', name);
    return gone;
  }

  setApplianceGroup(name: string, group: string | null): void {
    this.durable(() => this.stmt('UPDATE appliances SET group_name = ? WHERE name = ?').run(group, name));
    this.emit('appliance', name);
  }

  // ---- groups ----------------------------------------------------------------------------------

  listGroups(): GroupRecord[] {
    const members = new Map<string, string[]>();
    for (const r of this.stmt('SELECT name, group_name FROM appliances WHERE group_name IS NOT NULL ORDER BY name').all() as { name: string; group_name: string }[]) {
      const list = members.get(r.group_name) ?? [];
      list.push(r.name);
      members.set(r.group_name, list);
    }
    return (this.stmt('SELECT * FROM groups ORDER BY name').all() as { name: string; description: string; created_at: string }[]).map((g) => ({
      name: g.name,
      description: g.description,
      createdAt: g.created_at,
      members: members.get(g.name) ?? [],
    }));
  }

  group(name: string): GroupRecord | null {
    const g = this.stmt('SELECT * FROM groups WHERE name = ?').get(name) as { name: string; description: string; created_at: string } | undefined;
    if (!g) return null;
    const members = (this.stmt('SELECT name FROM appliances WHERE group_name = ? ORDER BY name').all(name) as { name: string }[]).map((r) => r.name);
    return { name: g.name, description: g.description, createdAt: g.created_at, members };
  }

  /** False when a group of that name exists. */
  createGroup(name: string, description: string): boolean {
    return this.durable(() => this.stmt('INSERT OR IGNORE INTO groups (name, description, created_at) VALUES (?, ?, ?)').run(name, description, now()).changes > 0);
  }

  updateGroup(name: string, description: string): boolean {
    return this.durable(() => this.stmt('UPDATE groups SET description = ? WHERE name = ?').run(description, name).changes > 0);
  }

  /** Its members stay, in no group. */
  removeGroup(name: string): boolean {
    const members = this.group(name)?.members ?? [];
    const gone = this.durable(() => this.stmt('DELETE FROM groups WHERE name = ?').run(name).changes > 0);
    for (const m of members) this.emit('appliance', m);
    return gone;
  }

  // ---- commands --------------------------------------------------------------------------------

  /**
   * Records new commands (queued) and, with `audit`, their audit entry, all or none in one durable
   * commit (they are then promised with 202, and sent); with `assignment`, each command's
   * appliance is recorded as assigned that model.
   */
  addCommands(
    cmds: readonly { command: FleetCommand; appliance: string; actor: string }[],
    o: { assignment?: { modelName: string; url: string }; audit?: AuditInput } = {},
  ): CommandRecord[] {
    const t = now();
    const out: CommandRecord[] = [];
    const auditId = this.durable(() => {
      const ins = this.stmt("INSERT INTO commands (id, appliance, action, args, state, actor, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?) RETURNING *");
      const assign = this.stmt(
        'INSERT INTO assignments (appliance, model_name, url, command_id, assigned_at, actor) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(appliance) DO UPDATE SET model_name = excluded.model_name, url = excluded.url, command_id = excluded.command_id, assigned_at = excluded.assigned_at, actor = excluded.actor',
      );
      for (const c of cmds) {
        out.push(commandOf(ins.get(c.command.id, c.appliance, c.command.action, json(c.command.args ?? {}), c.actor, t) as CommandRow));
        if (o.assignment) assign.run(c.appliance, o.assignment.modelName, o.assignment.url, c.command.id, t, c.actor);
      }
      return o.audit ? this.insertAudit(o.audit, t) : null;
    });
    if (o.audit && auditId !== null) this.audited(o.audit, auditId, t);
    for (const c of out) this.emit('command', c);
    return out;
  }

  command(id: string): CommandRecord | null {
    const r = this.stmt('SELECT * FROM commands WHERE id = ?').get(id) as CommandRow | undefined;
    return r ? commandOf(r) : null;
  }

  listCommands(q: { appliance?: string; limit?: number } = {}): CommandRecord[] {
    const limit = q.limit ?? 100;
    const rows =
      q.appliance === undefined
        ? this.stmt('SELECT * FROM commands ORDER BY created_at DESC, rowid DESC LIMIT ?').all(limit)
        : this.stmt('SELECT * FROM commands WHERE appliance = ? ORDER BY created_at DESC, rowid DESC LIMIT ?').all(q.appliance, limit);
    return (rows as CommandRow[]).map(commandOf);
  }

  /** Commands not answered yet (to send, or send again after a reconnect), oldest first. */
  openCommands(appliance?: string): CommandRecord[] {
    const rows =
      appliance === undefined
        ? this.stmt("SELECT * FROM commands WHERE state IN ('queued', 'sent') ORDER BY created_at, rowid").all()
        : this.stmt("SELECT * FROM commands WHERE state IN ('queued', 'sent') AND appliance = ? ORDER BY created_at, rowid").all(appliance);
    return (rows as CommandRow[]).map(commandOf);
  }

  /**
   * Gives up on commands unanswered since before `before` (ISO time): they fail with EXPIRED and
   * are not sent again. Returns how many.
   */
  expireCommands(before: string): number {
    const error = json({ code: 'EXPIRED', message: `no answer from the appliance since ${before}; not sent again` });
    const ids = (this.stmt("SELECT id FROM commands WHERE state IN ('queued', 'sent') AND created_at < ?").all(before) as { id: string }[]).map((r) => r.id);
    if (ids.length === 0) return 0;
    this.durable(() => {
      const upd = this.stmt("UPDATE commands SET state = 'failed', error = ?, answered_at = ? WHERE id = ? AND state IN ('queued', 'sent')");
      for (const id of ids) upd.run(error, now(), id);
    });
    for (const id of ids) this.emit('command', this.command(id)!);
    return ids.length;
  }

  /** The broker accepted the command (PUBACK); an answered command stays answered. */
  markSent(id: string): void {
    const r = this.stmt("UPDATE commands SET state = 'sent', sent_at = ? WHERE id = ? AND state = 'queued' RETURNING *").get(now(), id) as CommandRow | undefined;
    if (r) this.emit('command', commandOf(r));
  }

  /**
   * The appliance's answer. Only the first answer counts, and only from the appliance the
   * command was for: returns false otherwise.
   */
  answerCommand(id: string, appliance: string, answer: { ok: boolean; result?: unknown; error?: { code: string; message: string } }): boolean {
    const t = now();
    const r = this.stmt("UPDATE commands SET state = ?, result = ?, error = ?, answered_at = ?, sent_at = COALESCE(sent_at, ?) WHERE id = ? AND appliance = ? AND state IN ('queued', 'sent') RETURNING *")
      .get(answer.ok ? 'succeeded' : 'failed', answer.result === undefined ? null : json(answer.result), answer.error === undefined ? null : json(answer.error), t, t, id, appliance) as CommandRow | undefined;
    if (!r) return false;
    this.emit('command', commandOf(r));
    return true;
  }

  // ---- model catalogue and assignments --------------------------------------------------------

  addModel(m: CatalogueRow): void {
    this.durable(() => this.stmt('INSERT INTO models (id, name, size, region_size, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)').run(m.id, m.name, m.size, m.regionSize, m.hash, m.createdAt));
  }

  listModels(): CatalogueRow[] {
    return (this.stmt('SELECT * FROM models ORDER BY name').all() as Record<string, string | number>[]).map(modelOf);
  }

  /** A catalogue model by id or by name. */
  findModel(idOrName: string): CatalogueRow | null {
    const r = this.stmt('SELECT * FROM models WHERE id = ? OR name = ? ORDER BY id = ? DESC LIMIT 1').get(idOrName, idOrName, idOrName) as Record<string, string | number> | undefined;
    return r ? modelOf(r) : null;
  }

  removeModel(id: string): boolean {
    return this.durable(() => this.stmt('DELETE FROM models WHERE id = ?').run(id).changes > 0);
  }

  // ---- enrollment and broker accounts ---------------------------------------------------------

  addEnrollCode(c: Omit<EnrollCodeRow, 'usedAt' | 'usedBy'>): void {
    this.durable(() => this.stmt('INSERT INTO enroll_codes (id, secret_hash, name, created_at, expires_at) VALUES (?, ?, ?, ?, ?)').run(c.id, c.secretHash, c.name, c.createdAt, c.expiresAt));
  }

  listEnrollCodes(): EnrollCodeRow[] {
    return (this.stmt('SELECT * FROM enroll_codes ORDER BY created_at DESC').all() as Record<string, string | null>[]).map(enrollCodeOf);
  }

  removeEnrollCode(id: string): boolean {
    return this.durable(() => this.stmt('DELETE FROM enroll_codes WHERE id = ?').run(id).changes > 0);
  }

  /**
   * Spends an enrollment code and records the appliance's broker account, in one transaction:
   * false when the code was used meanwhile (a code is redeemed once).
   */
  redeemEnrollCode(id: string, name: string, brokerPasswordHash: string): boolean {
    return this.durable(() => {
      const t = now();
      const r = this.stmt('UPDATE enroll_codes SET used_at = ?, used_by = ? WHERE id = ? AND used_at IS NULL').run(t, name, id);
      if (r.changes === 0) return false;
      this.putBrokerAccount(name, brokerPasswordHash);
      return true;
    });
  }

  /** Adds or replaces a broker account (its password in the broker's hash format). */
  setBrokerAccount(name: string, passwordHash: string): void {
    this.durable(() => this.putBrokerAccount(name, passwordHash));
  }

  private putBrokerAccount(name: string, passwordHash: string): void {
    this.stmt('INSERT INTO broker_accounts (name, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET password_hash = excluded.password_hash')
      .run(name, passwordHash, now());
  }

  brokerAccounts(): { name: string; passwordHash: string }[] {
    return (this.stmt('SELECT name, password_hash FROM broker_accounts ORDER BY name').all() as { name: string; password_hash: string }[]).map((r) => ({ name: r.name, passwordHash: r.password_hash }));
  }
}

function tokenOf(r: Record<string, string | null>): ApiTokenRecord {
  return { id: r.id!, name: r.name!, secretHash: r.secret_hash!, createdAt: r.created_at!, createdBy: r.created_by!, lastUsedAt: r.last_used_at ?? null };
}

function applianceOf(r: ApplianceRow): ApplianceRecord {
  const info = parse<ApplianceInfo>(r.info);
  const state = parse<ApplianceState>(r.state);
  return {
    name: r.name,
    group: r.group_name,
    online: r.online === 1,
    lastSeen: r.last_seen,
    mode: state?.mode ?? null,
    restoreMode: state?.restoreMode ?? null,
    session: state?.session.number ?? null,
    sessionStartedAt: state?.session.startedAt ?? null,
    model: state?.model.name ?? null,
    modelId: state?.model.id ?? null,
    download: state?.download ?? null,
    errors: state?.errors ?? [],
    version: info?.version ?? null,
    diskSize: info?.diskSize ?? null,
    startedAt: info?.startedAt ?? null,
    stateUpdatedAt: state?.updatedAt ?? null,
    enrolled: r.enrolled === 1,
    assigned: r.assigned_model !== null ? { model: r.assigned_model, url: r.assigned_url!, at: r.assigned_at!, command: r.assigned_command! } : null,
  };
}

function commandOf(r: CommandRow): CommandRecord {
  return {
    id: r.id,
    appliance: r.appliance,
    action: r.action as CommandRecord['action'],
    args: JSON.parse(r.args) as Record<string, unknown>,
    state: r.state as CommandState,
    result: parse<unknown>(r.result),
    error: parse<{ code: string; message: string }>(r.error),
    actor: r.actor,
    createdAt: r.created_at,
    sentAt: r.sent_at,
    answeredAt: r.answered_at,
  };
}

function modelOf(r: Record<string, string | number>): CatalogueRow {
  return { id: String(r.id), name: String(r.name), size: Number(r.size), regionSize: Number(r.region_size), hash: String(r.hash), createdAt: String(r.created_at) };
}

function enrollCodeOf(r: Record<string, string | null>): EnrollCodeRow {
  return { id: r.id!, secretHash: r.secret_hash!, name: r.name ?? null, createdAt: r.created_at!, expiresAt: r.expires_at!, usedAt: r.used_at ?? null, usedBy: r.used_by ?? null };
}
