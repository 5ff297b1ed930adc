/**
 * Enrollment: the console issues one-time codes (an administrator types one into an appliance);
 * the appliance redeems its code once (POST /api/enroll) for its broker account and the CA that
 * signed the broker's certificate. The code's hash is stored, never the code; a code expires,
 * may be bound to one appliance name, and is spent by its first successful use.
 */
import { randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { EnrollReply } from '../../appliance/api/fleet.js';
import { SnapbackError } from '../../appliance/errors.js';
import { HttpError } from '../../appliance/http/http-util.js';
import { randomToken, safeEqual, sha256Hex } from '../../appliance/http/passwords.js';
import type { BrokerAccounts } from './broker-accounts.js';
import { mosquittoPasswordHash } from './broker-accounts.js';
import type { ConsoleStore, EnrollCodeRow } from './console-store.js';

/** Unambiguous letters and digits (no 0/O, 1/I/L, U), as the appliance's setup code. */
const ALPHABET = 'ABCDEFGHJKMNPQRSTVWXYZ23456789';
const DEFAULT_VALID_HOURS = 24;

export interface EnrollmentOptions {
  /** The broker URL appliances are given (mqtt:// or mqtts://, without credentials). */
  brokerUrl: string;
  /** A PEM file with the CA of the broker's certificate, handed to appliances. */
  caFile?: string;
}

export type EnrollCodeInfo = Omit<EnrollCodeRow, 'secretHash'>;

export class Enrollment {
  private readonly store: ConsoleStore;
  private readonly accounts: BrokerAccounts | null;
  private readonly opts: EnrollmentOptions;

  constructor(store: ConsoleStore, accounts: BrokerAccounts | null, opts: EnrollmentOptions) {
    this.store = store;
    this.accounts = accounts;
    this.opts = opts;
  }

  /** Makes a code (shown once: only its hash is kept). */
  create(o: { name?: string; validHours?: number } = {}): EnrollCodeInfo & { code: string } {
    const code = Array.from({ length: 4 }, () => Array.from({ length: 4 }, () => ALPHABET[randomInt(ALPHABET.length)]).join('')).join('-');
    const created = new Date();
    const row = {
      id: randomBytes(6).toString('hex'),
      secretHash: sha256Hex(normalize(code)),
      name: o.name ?? null,
      createdAt: created.toISOString(),
      expiresAt: new Date(created.getTime() + (o.validHours ?? DEFAULT_VALID_HOURS) * 3600_000).toISOString(),
    };
    this.store.addEnrollCode(row);
    return { ...infoOf({ ...row, usedAt: null, usedBy: null }), code };
  }

  list(): EnrollCodeInfo[] {
    return this.store.listEnrollCodes().map(infoOf);
  }

  /**
   * Redeems a code for `name`: a new broker password for the account `name`, written to the
   * broker's files (which it then reloads). 403 for an unknown, used or expired code.
   */
  async redeem(code: string, name: string): Promise<EnrollReply> {
    if (!this.accounts) {
      throw new HttpError(501, 'NOT_SUPPORTED', 'this console does not manage the broker accounts: start it with --broker-password-file and --broker-acl-file');
    }
    const hash = sha256Hex(normalize(code));
    const row = this.store.listEnrollCodes().find((c) => safeEqual(c.secretHash, hash));
    if (!row || row.usedAt !== null) throw new HttpError(403, 'BAD_ENROLL_CODE', 'unknown or already used enrollment code');
    if (Date.parse(row.expiresAt) < Date.now()) throw new HttpError(403, 'BAD_ENROLL_CODE', `this enrollment code expired at ${row.expiresAt}; make a new one on the console`);
    if (row.name !== null && row.name !== name) throw new HttpError(403, 'BAD_ENROLL_CODE', `this enrollment code is for the appliance "${row.name}", not "${name}"`);
    const password = randomToken(24);
    if (!this.store.redeemEnrollCode(row.id, name, await mosquittoPasswordHash(password))) {
      throw new HttpError(403, 'BAD_ENROLL_CODE', 'unknown or already used enrollment code');
    }
    this.store.markEnrolled(name);
    await this.accounts.write();
    return { mqttUrl: this.opts.brokerUrl, username: name, password, caCertificate: this.caPem() };
  }

  private caPem(): string | null {
    if (!this.opts.caFile) return null;
    try {
      return readFileSync(this.opts.caFile, 'utf8');
    } catch (err) {
      throw new SnapbackError('IO_ERROR', `cannot read the broker CA ${this.opts.caFile}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }
}

function normalize(code: string): string {
  return code.toUpperCase().replace(/[\s-]/g, '');
}

function infoOf(r: EnrollCodeRow): EnrollCodeInfo {
  return { id: r.id, name: r.name, createdAt: r.createdAt, expiresAt: r.expiresAt, usedAt: r.usedAt, usedBy: r.usedBy };
}
