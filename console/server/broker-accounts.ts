/**
 * The broker's accounts, in mosquitto's own files: the password file (mosquitto_passwd's
 * format, PBKDF2-SHA512 "$7$") and the ACL file, both written from the console store whenever an
 * appliance enrolls, then mosquitto is asked to reload them (SIGHUP to the pid in its pid file).
 *
 * The ACL gives the console's account the whole snapback/ tree; each appliance may publish only
 * its own availability, info, state and response and read only its own command topic. Other
 * brokers: docs/console.md.
 */
import { pbkdf2, randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { TOPIC_ROOT, fleetTopic } from '../../appliance/api/fleet.js';
import { SnapbackError, fromSystemError } from '../../appliance/errors.js';
import { childLogger } from '../../appliance/logger.js';
import type { ConsoleStore } from './console-store.js';

const log = childLogger('broker-accounts');
const pbkdf2Async = promisify(pbkdf2);

/** mosquitto_passwd's defaults (mosquitto 2): PBKDF2-SHA512, 101 iterations, 12-byte salt, 64-byte key. */
const ITERATIONS = 101;

/** A password in mosquitto's password-file form: $7$ITERATIONS$SALT$HASH (base64). */
export async function mosquittoPasswordHash(password: string): Promise<string> {
  const salt = randomBytes(12);
  const key = await pbkdf2Async(password, salt, ITERATIONS, 64, 'sha512');
  return `$7$${ITERATIONS}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export interface BrokerFilesOptions {
  /** The broker's password file (mosquitto's password_file). */
  passwordFile: string;
  /** The broker's ACL file (mosquitto's acl_file). */
  aclFile: string;
  /** The broker's pid file: it gets SIGHUP after each change (mosquitto then rereads both files). */
  pidFile?: string;
}

export class BrokerAccounts {
  private readonly opts: BrokerFilesOptions;
  private readonly store: ConsoleStore;
  private writing: Promise<void> = Promise.resolve();
  /** The console's own account (whole snapback/ tree); null: the broker needs no login. */
  private consoleAccount: string | null = null;

  constructor(store: ConsoleStore, opts: BrokerFilesOptions) {
    this.store = store;
    this.opts = opts;
  }

  /**
   * Records the console's own account (full access to snapback/#) and writes both files. At
   * start: the console's password may have changed since the files were written.
   */
  async setConsoleAccount(name: string, password: string): Promise<void> {
    this.store.setBrokerAccount(name, await mosquittoPasswordHash(password));
    this.consoleAccount = name;
    await this.write();
  }

  /** Writes both files from the store and asks the broker to reload them (one write at a time). */
  write(): Promise<void> {
    const next = this.writing.then(() => this.writeNow());
    this.writing = next.catch(() => undefined);
    return next;
  }

  private async writeNow(): Promise<void> {
    const accounts = this.store.brokerAccounts();
    const passwd = accounts.map((a) => `${a.name}:${a.passwordHash}\n`).join('');
    const acl = [
      '# Written by snapback console from its database: edits here are overwritten.',
      '# Every appliance publishes only its own status and answers, and reads only its own commands.',
      '',
    ];
    if (this.consoleAccount !== null) acl.push(`user ${this.consoleAccount}`, `topic readwrite ${TOPIC_ROOT}/#`, '');
    for (const a of accounts) {
      if (a.name === this.consoleAccount) continue;
      acl.push(
        `user ${a.name}`,
        ...(['availability', 'info', 'state', 'response'] as const).map((t) => `topic write ${fleetTopic(a.name, t)}`),
        `topic read ${fleetTopic(a.name, 'command')}`,
        '',
      );
    }
    await writeAtomically(this.opts.passwordFile, passwd);
    await writeAtomically(this.opts.aclFile, acl.join('\n'));
    await this.reload();
  }

  private async reload(): Promise<void> {
    if (!this.opts.pidFile) return;
    let pid: number;
    try {
      pid = Number((await readFile(this.opts.pidFile, 'utf8')).trim());
    } catch (err) {
      log.warn({ err, pidFile: this.opts.pidFile }, 'cannot read the broker pid file: the broker keeps its old accounts until it reloads');
      return;
    }
    if (!Number.isInteger(pid) || pid <= 1) throw new SnapbackError('BAD_ARGUMENT', `${this.opts.pidFile} holds no process id`);
    try {
      process.kill(pid, 'SIGHUP');
    } catch (err) {
      log.warn({ err, pid }, 'cannot signal the broker: it keeps its old accounts until it reloads');
    }
  }
}

/** Replaces a file's content in one step (a reader never sees half a file); mode 0640. */
async function writeAtomically(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, text, { mode: 0o640, flush: true });
    await rename(tmp, path);
  } catch (err) {
    throw fromSystemError(err, `cannot write ${path}`);
  }
}
