/**
 * The fleet tests' broker (test/helpers/mosquitto.ts) is a real mosquitto that enforces what
 * the fleet relies on: logins, the fleet ACL (an appliance publishes only under its own
 * snapback/NAME/ and reads only its own commands; only the console commands), mqtts with a
 * self-signed CA, and persistence across a restart (retained messages and the QoS 1 messages
 * queued for a persistent session).
 */
import assert from 'node:assert/strict';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { fleetAcl, Mosquitto } from '../helpers/mosquitto.js';
import { sleep, waitFor } from '../helpers/wait.js';

const USERS = { console: 'console-pw', lab1: 'lab1-pw', lab2: 'lab2-pw' };

async function client(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, ...opts });
}

/** Collects the messages a client receives, as topic → payloads. */
function collect(c: MqttClient): Map<string, string[]> {
  const got = new Map<string, string[]>();
  c.on('message', (topic, payload) => got.set(topic, [...(got.get(topic) ?? []), payload.toString()]));
  return got;
}

describe('the test broker (real mosquitto)', function () {
  this.timeout(60_000);
  const clients: MqttClient[] = [];
  const brokers: Mosquitto[] = [];
  const track = <T extends MqttClient>(c: T): T => (clients.push(c), c);
  const startBroker = async (...a: Parameters<typeof Mosquitto.start>): Promise<Mosquitto> => {
    const b = await Mosquitto.start(...a);
    brokers.push(b);
    return b;
  };

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.endAsync(true).catch(() => undefined);
    for (const b of brokers.splice(0)) await b.stop();
  });

  it('an anonymous broker lets any client publish and subscribe on a loopback port', async () => {
    const broker = await startBroker();
    assert.match(broker.url, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
    const sub = track(await client(broker.url));
    const got = collect(sub);
    await sub.subscribeAsync('snapback/#', { qos: 1 });
    const pub = track(await client(broker.url));
    await pub.publishAsync('snapback/x/state', 'hello', { qos: 1 });
    await waitFor('the message', () => got.get('snapback/x/state')?.[0] === 'hello');
  });

  it('with logins, a wrong password and an anonymous client are refused', async () => {
    const broker = await startBroker({ users: USERS, acl: fleetAcl('console') });
    await assert.rejects(client(broker.url, { username: 'lab1', password: 'wrong' }), /Not authorized|Bad User Name or Password/i);
    await assert.rejects(client(broker.url), /Not authorized|Bad User Name or Password/i);
    const ok = track(await client(broker.url, { username: 'lab1', password: USERS.lab1 }));
    assert.ok(ok.connected);
  });

  it('the fleet ACL: an appliance publishes only its own topics, reads only its own commands, and only the console commands', async () => {
    const broker = await startBroker({ users: USERS, acl: fleetAcl('console') });
    const consoleClient = track(await client(broker.url, { username: 'console', password: USERS.console }));
    const seen = collect(consoleClient);
    await consoleClient.subscribeAsync('snapback/#', { qos: 1 });
    const lab1 = track(await client(broker.url, { username: 'lab1', password: USERS.lab1 }));
    const lab1Got = collect(lab1);
    // lab1 may subscribe to lab2's commands, but the ACL delivers none of them to it.
    await lab1.subscribeAsync(['snapback/lab1/command', 'snapback/lab2/command'], { qos: 1 });

    await lab1.publishAsync('snapback/lab1/state', 'own', { qos: 1 });
    await assert.rejects(lab1.publishAsync('snapback/lab2/state', 'spoof', { qos: 1 }), /Not authorized/i, 'publishing under another appliance is refused');
    await assert.rejects(lab1.publishAsync('snapback/lab1/command', 'self-command', { qos: 1 }), /Not authorized/i, 'an appliance cannot command itself');
    const lab2 = track(await client(broker.url, { username: 'lab2', password: USERS.lab2 }));
    await assert.rejects(lab2.publishAsync('snapback/lab1/command', 'from-lab2', { qos: 1 }), /Not authorized/i, 'an appliance cannot command another');
    await consoleClient.publishAsync('snapback/lab2/command', 'for-lab2', { qos: 1 });
    await consoleClient.publishAsync('snapback/lab1/command', 'for-lab1', { qos: 1 });

    await waitFor('the console to see lab1 state', () => seen.get('snapback/lab1/state')?.includes('own'));
    await waitFor('lab1 to get its command', () => lab1Got.get('snapback/lab1/command')?.includes('for-lab1'));
    await sleep(300); // anything refused would have arrived by now, in order behind these
    assert.equal(seen.get('snapback/lab2/state'), undefined);
    assert.deepEqual(lab1Got.get('snapback/lab1/command'), ['for-lab1']);
    assert.equal(lab1Got.get('snapback/lab2/command'), undefined);
  });

  it('mqtts with the self-signed CA works; without the CA the certificate is refused', async () => {
    const broker = await startBroker({ tls: true });
    assert.ok(broker.caPem?.includes('BEGIN CERTIFICATE'));
    const c = track(await client(broker.tlsUrl, { ca: broker.caPem ?? undefined }));
    await c.publishAsync('snapback/x/state', 'tls', { qos: 1 });
    await assert.rejects(client(broker.tlsUrl), /self.signed|unable to verify|certificate/i);
  });

  it('a restart on the same port keeps retained messages and the QoS 1 messages queued for a persistent session', async () => {
    const broker = await startBroker();
    const url = broker.url;
    const persistent = { clientId: 'lab1', clean: false, properties: { sessionExpiryInterval: 3600 } };
    const sub = track(await client(url, persistent));
    await sub.subscribeAsync('snapback/lab1/command', { qos: 1 });
    await sub.endAsync();
    const pub = track(await client(url));
    await pub.publishAsync('snapback/lab1/state', 'retained-state', { qos: 1, retain: true });
    await pub.publishAsync('snapback/lab1/command', 'queued-command', { qos: 1 });
    await pub.endAsync();

    await broker.restart();
    assert.equal(broker.url, url);
    const back = track(mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, ...persistent, manualConnect: true }));
    const got = collect(back);
    back.connect();
    await waitFor('the queued command', () => got.get('snapback/lab1/command')?.includes('queued-command'));
    await back.subscribeAsync('snapback/lab1/state', { qos: 1 });
    await waitFor('the retained state', () => got.get('snapback/lab1/state')?.includes('retained-state'));
  });
});
