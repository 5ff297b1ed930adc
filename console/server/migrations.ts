/**
 * The console database's schema, as numbered migrations from version 1. The database's
 * user_version is the last migration applied; opening a database runs the missing ones in one
 * transaction each. A database from a newer release (a higher version) is refused, not guessed at.
 */
import type Database from 'better-sqlite3';
import { SnapbackError } from '../../appliance/errors.js';

const MIGRATIONS: readonly string[] = [
  // 1: the first schema.
  `
  CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    password_changed_at TEXT NOT NULL
  );
  CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    last_used_at TEXT
  );
  CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    details TEXT
  );
  CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
  );
  CREATE TABLE appliances (
    name TEXT PRIMARY KEY,
    group_name TEXT REFERENCES groups(name) ON UPDATE CASCADE ON DELETE SET NULL,
    online INTEGER NOT NULL DEFAULT 0,
    last_seen TEXT,
    info TEXT,
    state TEXT,
    enrolled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
  );
  CREATE INDEX appliances_group ON appliances(group_name);
  CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    appliance TEXT NOT NULL,
    action TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    error TEXT,
    actor TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    answered_at TEXT
  );
  CREATE INDEX commands_appliance ON commands(appliance, created_at);
  CREATE INDEX commands_open ON commands(state) WHERE state IN ('queued', 'sent');
  CREATE TABLE models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    region_size INTEGER NOT NULL,
    hash TEXT NOT NULL,
    created_at TEXT NOT NULL
  );
  CREATE TABLE assignments (
    appliance TEXT PRIMARY KEY,
    model_name TEXT NOT NULL,
    url TEXT NOT NULL,
    command_id TEXT NOT NULL,
    assigned_at TEXT NOT NULL,
    actor TEXT NOT NULL
  );
  CREATE TABLE enroll_codes (
    id TEXT PRIMARY KEY,
    secret_hash TEXT NOT NULL,
    name TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT,
    used_by TEXT
  );
  CREATE TABLE broker_accounts (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
  );
  `,
  // 2: the console's own id (its broker client id: two consoles on one broker never share one).
  `
  CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );
  INSERT INTO meta (key, value) VALUES ('console_id', lower(hex(randomblob(8))));
  `,
];

/** The schema version this release writes. */
export const CONSOLE_SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the database to CONSOLE_SCHEMA_VERSION. */
export function migrate(db: Database.Database, path: string): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new SnapbackError('STATE_CORRUPT', `${path} is of schema version ${current}, newer than this release's ${MIGRATIONS.length}: upgrade snapback`, { path });
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
