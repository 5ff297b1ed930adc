/**
 * The console's connection to the fleet's MQTT broker (protocol: appliance/api/fleet.ts).
 *
 * - Subscribes to snapback/+/availability, info, state and response, and keeps the fleet table
 *   in the console store live.
 * - Sends each command to its appliance on snapback/NAME/command (QoS 1, MQTT 5 response topic
 *   snapback/NAME/response, correlation data = the command id) and records the appliance's
 *   answer. An answer counts only on the response topic of the appliance the command was for.
 * - Nothing is lost across a broker restart or a lost connection: every command not answered yet
 *   is sent again on each (re)connect and whenever its appliance comes online; the appliance runs
 *   a command id at most once, and an answered command is never sent again. A command unanswered
 *   for a week (an appliance gone for good) fails with EXPIRED instead.
 * - Messages and the broker's acknowledgements are applied to the store in batches, one
 *   transaction per turn of the event loop: a group command's thousand answers are a few commits.
 * - Reconnects with exponential backoff (capped), reset by a successful connect.
 */
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { applianceInfoSchema, applianceNameSchema, applianceStateSchema, availabilitySchema, fleetResponseSchema, fleetTopic, TOPIC_ROOT, type FleetCommand } from '../../appliance/api/fleet.js';
import type { Component } from '../../appliance/component.js';
import { SnapbackError } from '../../appliance/errors.js';
import { childLogger } from '../../appliance/logger.js';
import type { CommandRecord } from '../../appliance/api/console.js';
import type { ConsoleStore } from './console-store.js';

const log = childLogger('fleet-link');

export interface FleetLinkOptions {
  /** mqtt://[user:password@]host:port or mqtts://…; the user is the console's broker account. */
  url: string;
  store: ConsoleStore;
  /** A CA certificate (PEM file) for mqtts:// with a private CA. */
  caFile?: string;
  /** Reconnect backoff: first delay and cap (ms). Default 1 s and 30 s. */
  backoff?: { minMs: number; maxMs: number };
  /** A command unanswered for this long fails with EXPIRED instead of being sent again; default 7 days. */
  commandLifetimeMs?: number;
}

/** Checks a broker URL's form (the CLI's --mqtt). */
export function parseBrokerUrl(text: string): URL {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new SnapbackError('BAD_ARGUMENT', `"${text}" is not a broker URL (mqtt://HOST:PORT or mqtts://HOST:PORT)`);
  }
  if (!['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(u.protocol)) throw new SnapbackError('BAD_ARGUMENT', `"${text}": the broker URL must start with mqtt://, mqtts://, ws:// or wss://`);
  return u;
}

/** What the broker connection hands the store: a fleet message, or the broker's acknowledgement of a command. */
type Inbound = { topic: string; payload: Buffer; correlationData: Buffer | undefined } | { sent: string };

export class FleetLink implements Component {
  readonly name = 'fleet-link';
  private readonly opts: FleetLinkOptions;
  private client: MqttClient | null = null;
  private delayMs: number;
  private readonly inbox: Inbound[] = [];

  constructor(opts: FleetLinkOptions) {
    this.opts = opts;
    this.delayMs = opts.backoff?.minMs ?? 1000;
  }

  /**
   * The MQTT client id: snapback-console-ID, ID the console's own (kept in its database). A
   * restarted console takes its persistent session back; a second console on the same broker
   * has its own and does not knock the first off.
   */
  get clientId(): string {
    return `snapback-console-${this.opts.store.consoleId()}`;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** The console's broker account (the user of the URL), or null when the broker needs no login. */
  get account(): string | null {
    const u = parseBrokerUrl(this.opts.url);
    return u.username === '' ? null : decodeURIComponent(u.username);
  }

  /** Connects in the background: the console serves its API whether or not the broker is up. */
  start(): Promise<void> {
    if (this.client) return Promise.resolve();
    const u = parseBrokerUrl(this.opts.url);
    const backoff = this.opts.backoff ?? { minMs: 1000, maxMs: 30_000 };
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId: this.clientId,
      // A persistent session: answers published while the console is away wait at the broker.
      clean: false,
      properties: { sessionExpiryInterval: 7 * 24 * 3600 },
      reconnectPeriod: backoff.minMs,
      connectTimeout: 10_000,
      keepalive: 30,
      ...(u.username !== '' ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) } : {}),
      ...(this.opts.caFile ? { ca: readFileSync(this.opts.caFile) } : {}),
    };
    const bare = `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
    const client = mqtt.connect(bare, options);
    this.client = client;
    client.on('connect', () => {
      this.delayMs = backoff.minMs;
      client.options.reconnectPeriod = backoff.minMs;
      log.info({ broker: bare }, 'connected to the broker');
      const topics = ['availability', 'info', 'state', 'response'].map((t) => `${TOPIC_ROOT}/+/${t}`);
      client.subscribe(topics, { qos: 1 }, (err) => {
        if (err) {
          log.error({ err }, 'cannot subscribe to the fleet topics');
          return;
        }
        this.sendOpen();
      });
    });
    client.on('close', () => {
      // Exponential backoff for the next attempt (mqtt.js reads the period when it schedules one).
      client.options.reconnectPeriod = this.delayMs;
      this.delayMs = Math.min(this.delayMs * 2, backoff.maxMs);
    });
    client.on('error', (err) => log.warn({ err: err.message }, 'broker connection error'));
    client.on('message', (topic, payload, packet) => this.queue({ topic, payload, correlationData: packet.properties?.correlationData }));
    return Promise.resolve();
  }

  async stop(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (c) await c.endAsync(true).catch(() => undefined);
    this.drain(); // what arrived before the end is kept
  }

  /** Publishes a command (recorded in the store first); without a connection it waits for the next connect. */
  send(cmd: CommandRecord): void {
    const c = this.client;
    if (!c?.connected) return;
    const body: FleetCommand = { id: cmd.id, action: cmd.action, args: cmd.args };
    c.publish(
      fleetTopic(cmd.appliance, 'command'),
      JSON.stringify(body),
      { qos: 1, properties: { responseTopic: fleetTopic(cmd.appliance, 'response'), correlationData: Buffer.from(cmd.id), contentType: 'application/json' } },
      (err) => {
        if (err) log.warn({ err: err.message, id: cmd.id }, 'a command was not accepted by the broker; it is sent again on reconnect');
        else this.queue({ sent: cmd.id });
      },
    );
  }

  /** Sends every unanswered command (of one appliance, or all). */
  private sendOpen(appliance?: string): void {
    const expired = this.opts.store.expireCommands(new Date(Date.now() - (this.opts.commandLifetimeMs ?? 7 * 24 * 3600_000)).toISOString());
    if (expired > 0) log.warn({ count: expired }, 'commands unanswered for too long have expired');
    const open = this.opts.store.openCommands(appliance);
    if (open.length > 0) log.info({ count: open.length, appliance }, 'sending unanswered commands');
    for (const cmd of open) this.send(cmd);
  }

  /** Queues a message or an acknowledgement; the queue is applied in one transaction once the current I/O is done. */
  private queue(item: Inbound): void {
    this.inbox.push(item);
    if (this.inbox.length === 1) setImmediate(() => this.drain());
  }

  private drain(): void {
    const items = this.inbox.splice(0);
    if (items.length === 0) return;
    const cameOnline: string[] = [];
    this.opts.store.batch(() => {
      for (const item of items) {
        if ('sent' in item) {
          this.opts.store.markSent(item.sent);
          continue;
        }
        try {
          if (this.onMessage(item.topic, item.payload, item.correlationData)) cameOnline.push(item.topic.split('/')[1]!);
        } catch (err) {
          log.error({ err, topic: item.topic }, 'a fleet message could not be handled');
        }
      }
    });
    if (this.client) for (const name of cameOnline) this.sendOpen(name);
  }

  /** Applies one fleet message to the store; true when it says that an appliance came online. */
  private onMessage(topic: string, payload: Buffer, correlationData: Buffer | undefined): boolean {
    const parts = topic.split('/');
    if (parts.length !== 3 || parts[0] !== TOPIC_ROOT) return false;
    const name = parts[1]!;
    const kind = parts[2]!;
    if (!applianceNameSchema.safeParse(name).success) return false;
    if (payload.length === 0) return false; // a cleared retained message
    const { store } = this.opts;
    if (kind === 'availability') {
      const a = availabilitySchema.safeParse(payload.toString('utf8').trim());
      if (!a.success) {
        log.warn({ topic }, 'ignoring an availability that is neither online nor offline');
        return false;
      }
      const wasOnline = store.appliance(name)?.online ?? false;
      store.setAvailability(name, a.data === 'online');
      return a.data === 'online' && !wasOnline;
    }
    const body = parseJson(payload);
    if (kind === 'info') {
      const info = applianceInfoSchema.safeParse(body);
      if (info.success) store.setInfo(name, info.data);
      else log.warn({ topic }, 'ignoring a malformed info message');
    } else if (kind === 'state') {
      const state = applianceStateSchema.safeParse(body);
      if (state.success) store.setState(name, state.data);
      else log.warn({ topic }, 'ignoring a malformed state message');
    } else if (kind === 'response') {
      const r = fleetResponseSchema.safeParse(body);
      if (!r.success) {
        log.warn({ topic }, 'ignoring a malformed response');
        return false;
      }
      const id = correlationData ? correlationData.toString('utf8') : r.data.id;
      if (id !== r.data.id) {
        log.warn({ topic, id, bodyId: r.data.id }, 'ignoring a response whose correlation data and id differ');
        return false;
      }
      store.touchAppliance(name);
      const answer = { ok: r.data.ok, ...(r.data.result !== undefined ? { result: r.data.result } : {}), ...(r.data.error ? { error: r.data.error } : {}) };
      if (!store.answerCommand(id, name, answer)) log.debug({ id, appliance: name }, 'an answer to no open command of this appliance (a repeat, or not ours)');
    }
    return false;
  }
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
