/**
 * The state directory: where an appliance keeps its configuration, write log and sockets.
 *   snapback.json   what the state is for: working disk, region size (version 2; version 1, of
 *                   releases before the model library, also named the model: migrated at the
 *                   first start or command, state-migration.ts)
 *   models/         the model library (model-library.ts); the active model is the one the
 *                   write log's header names
 *   write-log.bin   the region log (docs/write-log-format.md)
 *   state.json      settings, users, tokens, session history, audit log (appliance/state)
 *   daemon.pid      held by the running daemon; commands that would write the state refuse it
 *   nbd.sock        the NBD server's unix socket;  control.sock  the CLI's control socket
 */
import { readFileSync, writeFileSync, openSync, closeSync, fsyncSync, renameSync, unlinkSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { SnapbackError } from '../errors.js';

export const CONFIG_FILE = 'snapback.json';
export const LOG_FILE = 'write-log.bin';
export const PID_FILE = 'daemon.pid';

const legacyConfigSchema = z.object({
  version: z.literal(1),
  modelImage: z.string(),
  modelManifest: z.string(),
  disk: z.string(),
  regionSize: z.number().int(),
  createdAt: z.string(),
});
/** snapback.json of a release before the model library: it named one model's files. */
export type LegacyStateConfig = z.infer<typeof legacyConfigSchema>;

const configSchema = z.object({
  version: z.literal(2),
  disk: z.string(),
  regionSize: z.number().int(),
  createdAt: z.string(),
});
export type StateConfig = z.infer<typeof configSchema>;
const anyConfigSchema = z.discriminatedUnion('version', [legacyConfigSchema, configSchema]);

export class StateDir {
  readonly path: string;
  constructor(path: string) {
    this.path = resolve(path);
  }
  get configPath(): string {
    return join(this.path, CONFIG_FILE);
  }
  get logPath(): string {
    return join(this.path, LOG_FILE);
  }
  get pidPath(): string {
    return join(this.path, PID_FILE);
  }
  get nbdSocket(): string {
    return join(this.path, 'nbd.sock');
  }
  get controlSocket(): string {
    return join(this.path, 'control.sock');
  }
  get initialised(): boolean {
    return existsSync(this.configPath);
  }

  /** snapback.json as it is: of this release, or of one before the model library (to migrate). */
  readConfig(): StateConfig | LegacyStateConfig {
    if (!existsSync(this.configPath)) throw new SnapbackError('STATE_MISSING', `${this.path} is not a Snapback state directory (no ${CONFIG_FILE}); run "snapback init" first`);
    try {
      return anyConfigSchema.parse(JSON.parse(readFileSync(this.configPath, 'utf8')));
    } catch (err) {
      throw new SnapbackError('STATE_MISSING', `${this.configPath} is not valid: ${(err as Error).message}`);
    }
  }

  writeConfig(config: StateConfig | LegacyStateConfig): void {
    mkdirSync(this.path, { recursive: true });
    const tmp = `${this.configPath}.tmp`;
    writeFileSync(tmp, JSON.stringify(config, null, 2) + '\n');
    const fd = openSync(tmp, 'r');
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.configPath);
    const dfd = openSync(this.path, 'r');
    fsyncSync(dfd);
    closeSync(dfd);
  }

  /** The pid of a running daemon holding this directory, or null. */
  runningDaemon(): number | null {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidPath, 'utf8').trim());
    } catch {
      return null;
    }
    if (!Number.isInteger(pid) || pid <= 0) return null;
    if (pid === process.pid) return pid;
    try {
      process.kill(pid, 0);
      return pid;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
    }
  }

  /** Refuses (STATE_LOCKED) if a daemon runs on this directory. */
  assertNotInUse(what: string): void {
    const pid = this.runningDaemon();
    if (pid !== null && pid !== process.pid) throw new SnapbackError('STATE_LOCKED', `${this.path} is in use by a running daemon (pid ${pid}); stop it before "${what}", or use the daemon's commands`);
  }

  /** Takes the directory for this process (the daemon); a stale pid file is replaced. */
  lock(): () => void {
    this.assertNotInUse('serve');
    mkdirSync(this.path, { recursive: true });
    try {
      unlinkSync(this.pidPath);
    } catch {
      /* none */
    }
    const fd = openSync(this.pidPath, 'wx', 0o644);
    writeFileSync(fd, `${process.pid}\n`);
    closeSync(fd);
    return () => {
      try {
        if (readFileSync(this.pidPath, 'utf8').trim() === String(process.pid)) unlinkSync(this.pidPath);
      } catch {
        /* gone */
      }
    };
  }
}
