/**
 * The console (snapback console serve): its database, the broker link, the broker's account
 * files, the model catalogue, enrollment, the dispatcher of actions, and the HTTP API, started in
 * that order and stopped in reverse.
 */
import { join } from 'node:path';
import type { Component } from '../../appliance/component.js';
import type { LoginsOptions } from '../../appliance/http/auth.js';
import type { LoginRateLimitOptions } from '../../appliance/http/login-rate-limit.js';
import { childLogger } from '../../appliance/logger.js';
import { BrokerAccounts, type BrokerFilesOptions } from './broker-accounts.js';
import { Catalogue } from './catalogue.js';
import { ConsoleHttp } from './console-http.js';
import { ConsoleStore } from './console-store.js';
import { Dispatcher } from './dispatcher.js';
import { Enrollment } from './enrollment.js';
import { FleetLink, parseBrokerUrl } from './fleet-link.js';

const log = childLogger('console');

export interface ConsoleOptions {
  dataDir: string;
  listen: { host: string; port: number };
  /** The broker, with the console's account: mqtt://console:PASSWORD@HOST:PORT. */
  mqttUrl: string;
  /** The broker URL enrolled appliances are given (default: --mqtt without its credentials). */
  applianceMqttUrl?: string;
  /** The CA of the broker's certificate (PEM): the console trusts it and hands it to appliances. */
  brokerCaFile?: string;
  /** The broker's password and ACL files the console maintains (and the pid file to SIGHUP). */
  brokerFiles?: BrokerFilesOptions;
  /** The console's URL as appliances reach it (catalogue URLs); default its listen address. */
  publicUrl?: string;
  hostNames?: readonly string[];
  tls?: { key: string | Buffer; cert: string | Buffer };
  /** Tests: broker reconnect backoff, login lifetimes, rate limits. */
  backoff?: { minMs: number; maxMs: number };
  logins?: LoginsOptions;
  rateLimit?: LoginRateLimitOptions;
}

export class ConsoleServer implements Component {
  readonly name = 'console';
  readonly store: ConsoleStore;
  readonly link: FleetLink;
  readonly http: ConsoleHttp;
  private readonly accounts: BrokerAccounts | null;
  private readonly opts: ConsoleOptions;

  constructor(opts: ConsoleOptions) {
    this.opts = opts;
    const broker = parseBrokerUrl(opts.mqttUrl);
    this.store = ConsoleStore.open(opts.dataDir);
    this.link = new FleetLink({ url: opts.mqttUrl, store: this.store, ...(opts.brokerCaFile ? { caFile: opts.brokerCaFile } : {}), ...(opts.backoff ? { backoff: opts.backoff } : {}) });
    this.accounts = opts.brokerFiles ? new BrokerAccounts(this.store, opts.brokerFiles) : null;
    const catalogue = new Catalogue(opts.dataDir, this.store, () => this.publicUrl());
    const bare = new URL(broker.toString());
    bare.username = '';
    bare.password = '';
    const enrollment = new Enrollment(this.store, this.accounts, {
      brokerUrl: opts.applianceMqttUrl ?? bare.toString().replace(/\/$/, ''),
      ...(opts.brokerCaFile ? { caFile: opts.brokerCaFile } : {}),
    });
    const dispatcher = new Dispatcher(this.store, this.link, catalogue);
    this.http = new ConsoleHttp({
      deps: { store: this.store, link: this.link, dispatcher, catalogue, enrollment },
      listen: opts.listen,
      ...(opts.hostNames ? { hostNames: opts.hostNames } : {}),
      ...(opts.tls ? { tls: opts.tls } : {}),
      ...(opts.logins ? { logins: opts.logins } : {}),
      ...(opts.rateLimit ? { rateLimit: opts.rateLimit } : {}),
    });
  }

  /** The console's base URL for appliances (ends with '/'). */
  publicUrl(): string {
    if (this.opts.publicUrl) return this.opts.publicUrl.endsWith('/') ? this.opts.publicUrl : `${this.opts.publicUrl}/`;
    return this.http.address().url;
  }

  async start(): Promise<void> {
    if (this.accounts) {
      const account = this.link.account;
      const password = decodeURIComponent(parseBrokerUrl(this.opts.mqttUrl).password);
      if (account !== null) await this.accounts.setConsoleAccount(account, password);
      else await this.accounts.write();
    }
    await this.http.start();
    await this.link.start();
    log.info({ dataDir: this.opts.dataDir, db: join(this.opts.dataDir, 'console.db') }, 'console started');
  }

  async stop(): Promise<void> {
    await this.http.stop();
    await this.link.stop();
    this.store.close();
  }
}
