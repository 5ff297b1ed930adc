/**
 * A light appliance for the console's tests: an MQTT client speaking the fleet protocol
 * (appliance/api/fleet.ts) the way an appliance does — availability with a last will, retained
 * info and state, commands read from its own command topic and answered on the response topic
 * with the request's correlation data, each command id run at most once (a repeat gets the first
 * answer again). It runs nothing: it records what it was asked. The console's tests use it
 * where many appliances or a broker-level trick are needed; the fleet's end-to-end tests use real
 * appliance daemons.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { fleetCommandSchema, fleetTopic, type ApplianceState, type FleetCommand, type FleetResponse } from '../../appliance/api/fleet.js';

export interface ProtocolApplianceOptions {
  url: string;
  name: string;
  username?: string;
  password?: string;
  ca?: string;
  /** The state published at connect (and by publishState). */
  state?: Partial<ApplianceState>;
}

export function applianceState(over: Partial<ApplianceState> = {}): ApplianceState {
  return {
    mode: 'frozen',
    restoreMode: 'instant',
    session: { number: 1, startedAt: '2026-01-01T00:00:00.000Z' },
    model: { id: 'a'.repeat(64), name: 'win11-lab' },
    download: null,
    regions: { total: 100, pending: 0, writtenThisSession: 0 },
    errors: [],
    updatedAt: new Date().toISOString(),
    ...over,
  };
}

export class ProtocolAppliance {
  /** Every command message received, in order (repeats included). */
  readonly received: FleetCommand[] = [];
  /** The commands run (each id once). */
  readonly ran: FleetCommand[] = [];
  private readonly answers = new Map<string, FleetResponse>();
  private state: ApplianceState;

  private constructor(
    readonly name: string,
    readonly client: MqttClient,
    state: ApplianceState,
  ) {
    this.state = state;
  }

  static async connect(o: ProtocolApplianceOptions): Promise<ProtocolAppliance> {
    const client = mqtt.connect(o.url, {
      protocolVersion: 5,
      clientId: `appliance-${o.name}`,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      reconnectPeriod: 200,
      connectTimeout: 5000,
      ...(o.username !== undefined ? { username: o.username, password: o.password ?? '' } : {}),
      ...(o.ca !== undefined ? { ca: o.ca } : {}),
      will: { topic: fleetTopic(o.name, 'availability'), payload: Buffer.from('offline'), qos: 1, retain: true },
      manualConnect: true,
    });
    const a = new ProtocolAppliance(o.name, client, applianceState(o.state));
    client.on('message', (topic, payload, packet) => a.onCommand(topic, payload, packet.properties?.responseTopic, packet.properties?.correlationData));
    client.on('connect', () => {
      void a.announce();
    });
    const first = new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
    });
    client.connect();
    await first;
    await client.subscribeAsync(fleetTopic(o.name, 'command'), { qos: 1 });
    return a;
  }

  private async announce(): Promise<void> {
    const c = this.client;
    await c.publishAsync(fleetTopic(this.name, 'info'), JSON.stringify({ name: this.name, version: '0.1.0-test', diskSize: 1 << 30, startedAt: new Date().toISOString() }), { qos: 1, retain: true });
    await this.publishState();
    await c.publishAsync(fleetTopic(this.name, 'availability'), 'online', { qos: 1, retain: true });
  }

  async publishState(over: Partial<ApplianceState> = {}): Promise<void> {
    this.state = { ...this.state, ...over, updatedAt: new Date().toISOString() };
    await this.client.publishAsync(fleetTopic(this.name, 'state'), JSON.stringify(this.state), { qos: 1, retain: true });
  }

  private onCommand(topic: string, payload: Buffer, responseTopic: string | undefined, correlationData: Buffer | undefined): void {
    if (topic !== fleetTopic(this.name, 'command')) return;
    const parsed = fleetCommandSchema.safeParse(JSON.parse(payload.toString('utf8')));
    if (!parsed.success) return;
    const cmd = parsed.data;
    this.received.push(cmd);
    let answer = this.answers.get(cmd.id);
    if (!answer) {
      this.ran.push(cmd);
      answer = { id: cmd.id, ok: true, result: { action: cmd.action, by: this.name } };
      this.answers.set(cmd.id, answer);
    }
    void this.client.publishAsync(responseTopic ?? fleetTopic(this.name, 'response'), JSON.stringify(answer), {
      qos: 1,
      ...(correlationData ? { properties: { correlationData } } : {}),
    });
  }

  /** Leaves cleanly (says offline first, as a daemon stopping does). */
  async close(): Promise<void> {
    if (this.client.connected) await this.client.publishAsync(fleetTopic(this.name, 'availability'), 'offline', { qos: 1, retain: true }).catch(() => undefined);
    await this.client.endAsync(true).catch(() => undefined);
  }
}
