/**
 * The management component: the appliance's one outbound link to a fleet console, over MQTT 5
 * (the protocol in appliance/api/fleet.ts, docs/fleet.md).
 *
 * - availability: "online" (retained) once connected; the broker publishes the last will
 *   "offline" (retained) when the link dies without a goodbye (a crash, kill -9, a lost network);
 *   a clean stop publishes "offline" itself.
 * - info (retained): name, version, disk size, start time — on every connect.
 * - state (retained): mode, session, model, regions, errors — on change, at most once a second,
 *   and as a heartbeat every minute.
 * - commands (snapback/NAME/command, QoS 1, from the console's account only — the broker's ACL
 *   says so): each runs through the appliance service like the local API's requests, audited
 *   with actor "console", and is answered on snapback/NAME/response with the request's
 *   correlation data. A command id runs at most once (command-journal.ts), so a broker delivering it again
 *   after a restart gets the first answer again.
 *
 * The session on the broker is persistent (clean start off, long expiry), so commands sent
 * while the appliance is away are delivered when it is back. A lost or refused connection is
 * retried with exponential backoff. The component is optional: it never blocks the daemon, and a
 * missing broker or console is a problem in the status, never a reason to stop serving the disk.
 */
import type { IPublishPacket, MqttClient } from 'mqtt';
import { fleetCommandSchema, fleetTopic, type Availability, type FleetResponse } from '../api/fleet.js';
import type { ModelDownload } from '../api/models.js';
import type { ManagementConnectionState, ManagementStatus, ManagementUpdate } from '../api/management.js';
import type { Component } from '../component.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ApplianceService } from '../session/appliance-service.js';
import { CommandJournal } from './command-journal.js';
import { EnrollmentRefusedError, redeemEnrollmentCode } from './enrollment.js';
import { applianceInfo, applianceState } from './fleet-report.js';
import { runFleetCommand, type FleetAudit, type MaintenanceSetter, type ModelAssigner } from './fleet-commands.js';
import { applianceNameOf, brokerOf, isConsoleUrl, ManagementConfigFile, NO_MANAGEMENT, type BrokerTarget, type ManagementConfig } from './management-config.js';

const log = childLogger('management');

/** How long the broker keeps this appliance's session (its subscription and queued commands) while it is away. */
const SESSION_EXPIRY_S = 7 * 24 * 3600;

const ONLINE: Availability = 'online';
const OFFLINE: Availability = 'offline';

/** `snapback serve --management URL …`: applied at start, over what was saved, and saved. */
export interface ManagementCommandLine {
  url: string;
  applianceName?: string;
  enrollmentCode?: string;
  username?: string;
  password?: string;
  /** PEM text of a CA for an mqtts:// broker or an https:// console. */
  caCertificate?: string;
}

export interface ManagementTiming {
  /** State is published at most this often (default 1000 ms). */
  stateMinIntervalMs: number;
  /** …and at least this often (default 60 s). */
  heartbeatMs: number;
  /** Reconnect backoff: the first wait, doubled per failure up to the max (default 1 s … 60 s). */
  backoffMinMs: number;
  backoffMaxMs: number;
}

export interface ManagementOptions {
  service: ApplianceService;
  stateDir: string;
  audit: FleetAudit;
  /** The active model's download while it arrives (lazy provisioning); default none. */
  activeDownload?: () => ModelDownload | null;
  /** assign-model's work (the model library's URL import and activation); null: not available. */
  assignModel?: ModelAssigner | null;
  /** set-maintenance's work (the maintenance windows and the thawed-boots counter); null: not available. */
  setMaintenance?: MaintenanceSetter | null;
  commandLine?: ManagementCommandLine | null;
  /** Called when the connection state changes (the daemon updates its component health). */
  onChange?: () => void;
  timing?: Partial<ManagementTiming>;
}

export class ManagementComponent implements Component {
  readonly name = 'management';
  private readonly file: ManagementConfigFile;
  private readonly journal: CommandJournal;
  private readonly timing: ManagementTiming;
  private config: ManagementConfig = { ...NO_MANAGEMENT };
  private pendingCode: string | null = null;
  private conn: ManagementStatus['connection'] = { state: 'off', problem: null, since: new Date().toISOString(), lastConnectedAt: null };
  private client: MqttClient | null = null;
  private clientName = '';
  /** Bumped whenever the link is torn down, so callbacks of an old link do nothing. */
  private generation = 0;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private stateTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private lastState: string | null = null;
  private lastStateAt = 0;
  private started = false;
  private readonly onStatus = (): void => this.scheduleState();

  constructor(private readonly opts: ManagementOptions) {
    this.file = new ManagementConfigFile(opts.stateDir);
    this.journal = new CommandJournal(opts.stateDir);
    this.timing = { stateMinIntervalMs: 1000, heartbeatMs: 60_000, backoffMinMs: 1000, backoffMaxMs: 60_000, ...opts.timing };
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.journal.load();
    let config = await this.file.load();
    const cl = this.opts.commandLine;
    if (cl) {
      config = {
        ...config,
        url: cl.url,
        applianceName: cl.applianceName ?? null,
        username: cl.username ?? null,
        password: cl.password ?? null,
        caCertificate: cl.caCertificate ?? null,
      };
      if (JSON.stringify(config) !== JSON.stringify(await this.file.load())) await this.file.save(config);
      this.pendingCode = cl.enrollmentCode ?? null;
    }
    this.config = config;
    this.started = true;
    this.opts.service.on('status', this.onStatus);
    this.begin();
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.opts.service.off('status', this.onStatus);
    await this.teardown(true);
  }

  get applianceName(): string {
    return applianceNameOf(this.config);
  }

  status(): ManagementStatus {
    const broker = brokerOf(this.config);
    const e = this.config.enrollment;
    const enrolled = e !== null && this.config.url !== null && e.consoleUrl === this.config.url;
    return {
      url: this.config.url,
      applianceName: this.applianceName,
      broker: broker?.url ?? null,
      username: broker?.username ?? null,
      enrolledAt: enrolled ? e.enrolledAt : null,
      connection: { ...this.conn },
    };
  }

  /** The web UI's change: saved, then the link starts over with it. */
  async configure(u: ManagementUpdate): Promise<ManagementStatus> {
    if (!this.started) throw new SnapbackError('CLOSED', 'the management component is not running');
    if (u.url !== null && isConsoleUrl(u.url) && (u.username !== undefined || u.password !== undefined)) throw new SnapbackError('BAD_ARGUMENT', 'a console URL gives the broker login by enrollment: send an enrollmentCode, not a username or password');
    const next: ManagementConfig = {
      ...this.config,
      url: u.url,
      applianceName: u.applianceName === undefined ? this.config.applianceName : u.applianceName,
      username: u.username ?? (u.url === this.config.url ? this.config.username : null),
      password: u.password ?? (u.url === this.config.url ? this.config.password : null),
    };
    await this.file.save(next);
    await this.teardown(true);
    this.config = next;
    this.pendingCode = u.enrollmentCode ?? null;
    this.failures = 0;
    this.begin();
    return this.status();
  }

  // ---- the link ------------------------------------------------------------------------------

  private begin(): void {
    const gen = ++this.generation;
    if (this.config.url === null) return this.setConn('off', null);
    const broker = brokerOf(this.config);
    if (broker) return void this.connect(broker, gen);
    if (this.pendingCode === null) {
      return this.setConn('failed', `not enrolled at ${this.config.url} as ${this.applianceName}: give the enrollment code the console issued (--enrollment-code, or on the Settings page)`);
    }
    void this.enroll(gen);
  }

  private async enroll(gen: number): Promise<void> {
    const url = this.config.url;
    const code = this.pendingCode;
    if (url === null || code === null) return;
    const name = this.applianceName;
    this.setConn('enrolling', null);
    try {
      const reply = await redeemEnrollmentCode(url, { code, name }, { ca: this.config.caCertificate });
      if (gen !== this.generation) return;
      this.pendingCode = null;
      this.config = {
        ...this.config,
        enrollment: { consoleUrl: url, applianceName: name, mqttUrl: reply.mqttUrl, username: reply.username, password: reply.password, caCertificate: reply.caCertificate, enrolledAt: new Date().toISOString() },
      };
      log.info({ console: url, broker: reply.mqttUrl, name }, 'enrolled at the console');
      await this.file.save(this.config).catch((err: unknown) => log.error({ err }, 'saving the enrollment failed: it holds until the daemon stops'));
      if (gen !== this.generation) return;
      const broker = brokerOf(this.config);
      if (broker) await this.connect(broker, gen);
    } catch (err) {
      if (gen !== this.generation) return;
      const message = (err as Error).message;
      if (err instanceof EnrollmentRefusedError) {
        this.pendingCode = null;
        return this.setConn('failed', message);
      }
      this.retry(gen, message, () => void this.enroll(gen));
    }
  }

  private async connect(broker: BrokerTarget, gen: number): Promise<void> {
    const name = this.applianceName;
    this.clientName = name;
    this.setConn(this.conn.lastConnectedAt ? 'reconnecting' : 'connecting', this.conn.problem);
    let lastError: string | null = null;
    // The MQTT client is loaded only by an appliance that is managed (it costs memory).
    const mqtt = (await import('mqtt')).default;
    if (gen !== this.generation) return;
    const client = mqtt.connect(broker.url, {
      protocolVersion: 5,
      clientId: `snapback-appliance-${name}`,
      clean: false,
      properties: { sessionExpiryInterval: SESSION_EXPIRY_S },
      keepalive: 30,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      ...(broker.username !== null ? { username: broker.username } : {}),
      ...(broker.password !== null ? { password: broker.password } : {}),
      ...(broker.caCertificate !== null ? { ca: broker.caCertificate } : {}),
      will: { topic: fleetTopic(name, 'availability'), payload: Buffer.from(OFFLINE), qos: 1, retain: true },
    });
    this.client = client;
    // Commands arrive one at a time; each is acknowledged to the broker once it is recorded as
    // started, and then runs in the background (a session end may take minutes).
    client.handleMessage = (packet, done) => {
      this.receive(packet, gen).then(
        () => done(),
        (err: unknown) => done(err as Error),
      );
    };
    client.on('connect', () => {
      if (gen !== this.generation) return;
      this.failures = 0;
      lastError = null;
      this.conn.lastConnectedAt = new Date().toISOString();
      this.setConn('connected', null);
      log.info({ broker: broker.url, name }, 'connected to the fleet broker');
      client.subscribe(fleetTopic(name, 'command'), { qos: 1 }, (err) => {
        if (err) log.error({ err }, 'subscribing to the command topic failed');
      });
      this.publish(fleetTopic(name, 'availability'), ONLINE, true);
      this.publish(fleetTopic(name, 'info'), JSON.stringify(applianceInfo(name, this.opts.service.status())), true);
      this.lastState = null;
      this.publishState();
      this.startHeartbeat();
    });
    client.on('error', (err) => {
      lastError = err.message;
    });
    client.on('close', () => {
      if (gen !== this.generation) return;
      this.stopHeartbeat();
      const why = `${broker.url}: ${lastError ?? 'the connection closed'}`;
      if (this.conn.state === 'connected') log.warn({ problem: why }, 'lost the fleet broker; reconnecting');
      this.retry(gen, why, () => client.reconnect({ incomingStore: client.incomingStore, outgoingStore: client.outgoingStore }));
    });
  }

  private retry(gen: number, problem: string, again: () => void): void {
    const wait = Math.min(this.timing.backoffMaxMs, this.timing.backoffMinMs * 2 ** Math.min(this.failures, 16));
    this.failures++;
    this.setConn('reconnecting', `${problem}; trying again in ${Math.round(wait / 1000)} s`);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (gen === this.generation) again();
    }, wait * (0.8 + 0.4 * Math.random()));
  }

  /** Ends the link; `goodbye`: says "offline" first, as the last will would. */
  private async teardown(goodbye: boolean): Promise<void> {
    this.generation++;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.stateTimer) clearTimeout(this.stateTimer);
    this.retryTimer = this.stateTimer = null;
    this.stopHeartbeat();
    const client = this.client;
    this.client = null;
    if (client) {
      if (goodbye && client.connected) {
        await Promise.race([client.publishAsync(fleetTopic(this.clientName, 'availability'), OFFLINE, { qos: 1, retain: true }).catch(() => undefined), new Promise((r) => setTimeout(r, 2000))]);
      }
      await client.endAsync(!client.connected).catch(() => undefined);
    }
    this.setConn('off', null);
  }

  private setConn(state: ManagementConnectionState, problem: string | null): void {
    const changed = this.conn.state !== state || this.conn.problem !== problem;
    if (this.conn.state !== state) this.conn.since = new Date().toISOString();
    this.conn.state = state;
    this.conn.problem = problem;
    if (changed) this.opts.onChange?.();
  }

  private publish(topic: string, payload: string, retain: boolean, properties?: { correlationData?: Buffer }): void {
    this.client?.publish(topic, payload, { qos: 1, retain, ...(properties ? { properties } : {}) }, (err) => {
      if (err) log.warn({ err, topic }, 'publishing failed');
    });
  }

  // ---- state ---------------------------------------------------------------------------------

  private scheduleState(): void {
    if (this.conn.state !== 'connected' || this.stateTimer) return;
    const wait = this.lastStateAt + this.timing.stateMinIntervalMs - Date.now();
    if (wait <= 0) return this.publishState();
    this.stateTimer = setTimeout(() => {
      this.stateTimer = null;
      this.publishState();
    }, wait);
  }

  private publishState(force = false): void {
    if (this.conn.state !== 'connected' || !this.client?.connected) return;
    const body = JSON.stringify(applianceState(this.opts.service.status(), this.opts.activeDownload?.() ?? null));
    if (!force && body === this.lastState) return;
    this.lastState = body;
    this.lastStateAt = Date.now();
    const state = { ...(JSON.parse(body) as object), updatedAt: new Date().toISOString() };
    this.publish(fleetTopic(this.clientName, 'state'), JSON.stringify(state), true);
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.publishState(true), this.timing.heartbeatMs);
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  // ---- commands ------------------------------------------------------------------------------

  private async receive(packet: IPublishPacket, gen: number): Promise<void> {
    const name = this.clientName;
    if (packet.topic !== fleetTopic(name, 'command')) return;
    // Answers go to this appliance's response topic, whatever the request names: the broker's ACL
    // allows no other, and an answer must never land on the appliance's state or availability.
    const responseTopic = fleetTopic(name, 'response');
    if (packet.properties?.responseTopic !== undefined && packet.properties.responseTopic !== responseTopic) {
      log.warn({ asked: packet.properties.responseTopic }, `a fleet command named another response topic; answering on ${responseTopic}`);
    }
    const correlationData = packet.properties?.correlationData;
    const answer = (r: FleetResponse): void => {
      if (gen === this.generation) this.publish(responseTopic, JSON.stringify(r), false, correlationData ? { correlationData } : undefined);
    };
    let raw: unknown;
    try {
      raw = JSON.parse(packet.payload.toString());
    } catch {
      raw = null;
    }
    const parsed = fleetCommandSchema.safeParse(raw);
    if (!parsed.success) {
      const id = raw && typeof raw === 'object' && typeof (raw as { id?: unknown }).id === 'string' ? (raw as { id: string }).id : '';
      log.warn({ issues: parsed.error.issues }, 'a fleet command that is not one');
      return answer({ id, ok: false, error: { code: 'BAD_ARGUMENT', message: `not a fleet command: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}` } });
    }
    const cmd = parsed.data;
    const seen = await this.journal.begin(cmd.id);
    if (seen.kind === 'answered') return answer(seen.response);
    if (seen.kind === 'running') return;
    if (seen.kind === 'interrupted') {
      return answer({ id: cmd.id, ok: false, error: { code: 'INTERRUPTED', message: 'the appliance restarted while this command ran; it was not run again' } });
    }
    log.info({ id: cmd.id, action: cmd.action }, 'fleet command');
    void runFleetCommand(cmd, this.opts.service, this.opts.audit, this.opts.assignModel ?? null, this.opts.setMaintenance ?? null)
      .then(
        (result): FleetResponse => ({ id: cmd.id, ok: true, ...(result !== undefined ? { result } : {}) }),
        (err: unknown): FleetResponse => {
          log.warn({ err, id: cmd.id, action: cmd.action }, 'fleet command failed');
          const code = err instanceof SnapbackError ? err.code : 'INTERNAL';
          return { id: cmd.id, ok: false, error: { code, message: err instanceof Error ? err.message : String(err) } };
        },
      )
      .then(async (response) => {
        await this.journal.finish(response).catch((err: unknown) => log.error({ err }, 'recording a fleet command answer failed'));
        answer(response);
      });
  }
}
