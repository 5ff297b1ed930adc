/**
 * The appliance's side of the fleet, with real parts: a real mosquitto (logins, the fleet ACL,
 * persistence, mqtts) started by the test on loopback, real `snapback serve` daemons with
 * `--management`, and the console played by an MQTT 5 client with the console's account,
 * speaking the protocol of appliance/api/fleet.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { AuditEntry } from '../../appliance/api/audit.js';
import type { EnrollReply, EnrollRequest, FleetCommand, FleetResponse } from '../../appliance/api/fleet.js';
import type { ManagementStatus } from '../../appliance/api/management.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import { exited, snapback, startServe } from '../helpers/cli.js';
import { fleetAcl, freePort, Mosquitto } from '../helpers/mosquitto.js';
import { runTool } from '../helpers/nbd-clients.js';
import { Prng } from '../helpers/prng.js';
import { sleep, waitFor } from '../helpers/wait.js';

const SIZE = 4 << 20;
const USERS = { console: 'console-secret', lab1: 'lab1-secret', lab2: 'lab2-secret', visitor: 'visitor-secret' };

/** The console's side: one MQTT 5 client that sees every topic and sends commands. */
class TestConsole {
  readonly seen = new Map<string, string[]>();
  private readonly answers = new Map<string, FleetResponse & { correlation: string }>();

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      const text = payload.toString();
      this.seen.set(topic, [...(this.seen.get(topic) ?? []), text]);
      if (topic.endsWith('/response')) {
        const r = JSON.parse(text) as FleetResponse;
        this.answers.set(r.id, { ...r, correlation: packet.properties?.correlationData?.toString() ?? '' });
      }
    });
  }

  static async connect(url: string, opts: IClientOptions = {}): Promise<TestConsole> {
    const c = new TestConsole(mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 500, manualConnect: true, ...opts }));
    c.client.connect();
    await new Promise<void>((resolve, reject) => {
      c.client.once('connect', () => resolve());
      c.client.once('error', reject);
    });
    await c.client.subscribeAsync('snapback/#', { qos: 1 });
    return c;
  }

  last(topic: string): string | undefined {
    return this.seen.get(topic)?.at(-1);
  }

  lastJson<T>(topic: string): T | undefined {
    const t = this.last(topic);
    return t === undefined ? undefined : (JSON.parse(t) as T);
  }

  async send(name: string, action: FleetCommand['action'], args?: Record<string, unknown>, id: string = randomUUID()): Promise<string> {
    const cmd: FleetCommand = { id, action, ...(args ? { args } : {}) };
    await this.client.publishAsync(`snapback/${name}/command`, JSON.stringify(cmd), {
      qos: 1,
      properties: { responseTopic: `snapback/${name}/response`, correlationData: Buffer.from(`corr-${id}`) },
    });
    return id;
  }

  answer(id: string): Promise<FleetResponse & { correlation: string }> {
    return waitFor(`the answer to command ${id}`, () => this.answers.get(id), 30_000);
  }

  async command(name: string, action: FleetCommand['action'], args?: Record<string, unknown>): Promise<FleetResponse & { correlation: string }> {
    return this.answer(await this.send(name, action, args));
  }

  end(): Promise<void> {
    return this.client.endAsync(true);
  }
}

describe('fleet: the appliance side (real mosquitto, real daemons)', function () {
  this.timeout(180_000);
  let dir: string;
  let model: string;
  const children: ChildProcess[] = [];
  const brokers: Mosquitto[] = [];
  const consoles: TestConsole[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-fleet-'));
    model = join(dir, 'model.img');
    writeFileSync(model, new Prng(12).bytes(SIZE));
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  afterEach(async () => {
    for (const c of consoles.splice(0)) await c.end().catch(() => undefined);
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await exited(c);
    }
    for (const b of brokers.splice(0)) await b.stop();
  });

  let serial = 0;
  /** A fresh state directory for an appliance (its own disk, the shared model). */
  function stateFor(name: string): string {
    const state = join(dir, `${name}-${++serial}`);
    const r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(state + '.disk')]);
    assert.equal(r.code, 0, r.stderr);
    return state;
  }

  async function serve(state: string, args: string[]): Promise<ChildProcess> {
    const child = await startServe(state, args);
    children.push(child);
    return child;
  }

  /** An appliance with its broker login (a password file, as an administrator would give it). */
  async function appliance(name: keyof typeof USERS, broker: Mosquitto, state = stateFor(name), url = broker.url, extra: string[] = []): Promise<{ state: string; child: ChildProcess }> {
    const pw = join(dir, `${name}.password`);
    writeFileSync(pw, `${USERS[name]}\n`, { mode: 0o600 });
    const child = await serve(state, ['--management', url, '--appliance-name', name, '--management-username', name, '--management-password-file', pw, ...extra]);
    return { state, child };
  }

  async function loginBroker(opts: { tls?: boolean } = {}): Promise<Mosquitto> {
    const b = await Mosquitto.start({ users: USERS, acl: fleetAcl('console'), ...opts });
    brokers.push(b);
    return b;
  }

  async function consoleOn(url: string, opts: IClientOptions = { username: 'console', password: USERS.console }): Promise<TestConsole> {
    const c = await TestConsole.connect(url, opts);
    consoles.push(c);
    return c;
  }

  const control = (state: string): string => join(state, 'control.sock');
  const status = async (state: string): Promise<ApplianceStatus> => (await callDaemon(control(state), 'GET', '/api/status')) as ApplianceStatus;
  const audit = async (state: string): Promise<AuditEntry[]> => ((await callDaemon(control(state), 'GET', '/api/audit?limit=1000')) as { entries: AuditEntry[] }).entries;
  const management = async (state: string): Promise<ManagementStatus> => (await callDaemon(control(state), 'GET', '/api/management')) as ManagementStatus;

  it('with an anonymous broker, --management URL --appliance-name NAME alone publishes retained availability, info and state', async () => {
    const broker = await Mosquitto.start();
    brokers.push(broker);
    const state = stateFor('solo');
    await serve(state, ['--management', broker.url, '--appliance-name', 'solo']);
    await waitFor('the appliance online', async () => (await management(state)).connection.state === 'connected');
    // A console that connects afterwards gets all three from the broker's retained copies.
    const c = await consoleOn(broker.url, {});
    await waitFor('retained availability, info and state', () => c.last('snapback/solo/availability') === 'online' && c.last('snapback/solo/info') && c.last('snapback/solo/state'));
    const info = c.lastJson<{ name: string; version: string; diskSize: number }>('snapback/solo/info')!;
    assert.equal(info.name, 'solo');
    assert.equal(info.diskSize, SIZE);
    const st = c.lastJson<{ mode: string; session: { number: number }; model: { name: string }; regions: { total: number } }>('snapback/solo/state')!;
    const s = await status(state);
    assert.equal(st.mode, s.mode);
    assert.equal(st.session.number, s.session.number);
    assert.equal(st.model.name, 'model.img');
    assert.equal(st.regions.total, s.regions.total);
    const comp = s.components.find((x) => x.name === 'management');
    assert.deepEqual(comp && { state: comp.state, problem: comp.problem }, { state: 'running', problem: null });
  });

  it('each command reaches the appliance it names and no other, runs, is audited with actor console, and is answered with its correlation data', async () => {
    const broker = await loginBroker();
    const [lab1, lab2] = await Promise.all([appliance('lab1', broker), appliance('lab2', broker)]);
    const c = await consoleOn(broker.url);
    await waitFor('both online', () => c.last('snapback/lab1/availability') === 'online' && c.last('snapback/lab2/availability') === 'online');
    const before1 = await status(lab1.state);
    const before2 = await status(lab2.state);

    const thaw = await c.command('lab1', 'thaw');
    assert.deepEqual({ ok: thaw.ok, result: thaw.result, correlation: thaw.correlation }, { ok: true, result: { mode: 'thawed' }, correlation: `corr-${thaw.id}` });
    const ended = await c.command('lab1', 'end-session');
    assert.equal(ended.ok, true, JSON.stringify(ended));
    const eager = await c.command('lab1', 'restore-mode', { mode: 'eager' });
    assert.equal(eager.ok, true, JSON.stringify(eager));

    const after1 = await status(lab1.state);
    assert.equal(after1.mode, 'thawed');
    assert.equal(after1.restoreMode, 'eager');
    assert.equal(after1.session.number, before1.session.number + 1);
    const after2 = await status(lab2.state);
    assert.deepEqual([after2.mode, after2.restoreMode, after2.session.number], [before2.mode, before2.restoreMode, before2.session.number], 'lab2 is untouched');

    const entries1 = (await audit(lab1.state)).filter((e) => e.actor === 'console');
    assert.deepEqual(entries1.map((e) => [e.action, e.details?.command]).sort(), [
      ['mode.set', thaw.id],
      ['restore-mode.set', eager.id],
      ['session.end', ended.id],
    ].sort());
    assert.deepEqual((await audit(lab2.state)).filter((e) => e.actor === 'console'), []);
    const sessions = (await callDaemon(control(lab1.state), 'GET', '/api/sessions')) as { sessions: { number: number; endReason: string | null }[] };
    assert.equal(sessions.sessions.find((x) => x.number === before1.session.number)?.endReason, 'console');

    // The retained state follows (throttled, but it gets there).
    await waitFor('lab1 state thawed', () => c.lastJson<{ mode: string }>('snapback/lab1/state')?.mode === 'thawed');
    assert.equal(c.lastJson<{ mode: string }>('snapback/lab2/state')?.mode, before2.mode);

    // A bad request and an action this appliance cannot do are answered with an error, not run.
    const bad = await c.command('lab1', 'restore-mode', { mode: 'sometimes' });
    assert.deepEqual([bad.ok, bad.error?.code], [false, 'BAD_ARGUMENT']);
    assert.equal((await status(lab1.state)).restoreMode, 'eager');
    const badAssign = await c.command('lab1', 'assign-model', { url: 'ftp://x/y.img', name: 'm' });
    assert.deepEqual([badAssign.ok, badAssign.error?.code], [false, 'BAD_ARGUMENT']);
    const garbage = await (async () => {
      await c.client.publishAsync('snapback/lab1/command', '{"id":"junk-1","action":"format-disk"}', { qos: 1, properties: { responseTopic: 'snapback/lab1/response', correlationData: Buffer.from('junk') } });
      return c.answer('junk-1');
    })();
    assert.deepEqual([garbage.ok, garbage.error?.code, garbage.correlation], [false, 'BAD_ARGUMENT', 'junk']);
    // A request naming the appliance's state topic as its response topic is answered on the response topic only.
    const statesBefore = c.seen.get('snapback/lab1/state')?.length ?? 0;
    await c.client.publishAsync('snapback/lab1/command', JSON.stringify({ id: 'aimed-at-state', action: 'restore-mode', args: { mode: 'eager' } }), { qos: 1, properties: { responseTopic: 'snapback/lab1/state' } });
    assert.equal((await c.answer('aimed-at-state')).ok, true);
    assert.equal((c.seen.get('snapback/lab1/state') ?? []).slice(statesBefore).some((t) => t.includes('aimed-at-state')), false);
  });

  it('assign-model: a name the appliance already has for a model from another source is refused, and nothing changes', async () => {
    const broker = await loginBroker();
    const state = stateFor('lab1');
    const other = join(dir, 'other.img');
    writeFileSync(other, new Prng(99).bytes(SIZE));
    const r = snapback(['model', 'import', other, '--name', 'win11', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    const lab1 = await appliance('lab1', broker, state);
    const c = await consoleOn(broker.url);
    await waitFor('lab1 online', () => c.last('snapback/lab1/availability') === 'online');
    const before = await status(lab1.state);
    const a = await c.command('lab1', 'assign-model', { url: 'http://127.0.0.1:9/win11.img', name: 'win11', lazy: true });
    assert.deepEqual([a.ok, a.error?.code], [false, 'ALREADY_EXISTS'], JSON.stringify(a));
    assert.match(a.error?.message ?? '', /named win11 from another source/);
    const after = await status(lab1.state);
    assert.deepEqual([after.model.id, after.session.number], [before.model.id, before.session.number]);
    assert.deepEqual((await audit(lab1.state)).filter((e) => e.action === 'model.assign'), []);
  });

  it('serve refuses fleet flags that cannot work, before anything starts', () => {
    const state = stateFor('flags');
    let r = snapback(['serve', '--state-dir', state, '--enrollment-code', 'X', '--gadget', 'off', '--gpio', 'off']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--enrollment-code need --management URL/);
    r = snapback(['serve', '--state-dir', state, '--management', 'ftp://broker:21', '--gadget', 'off', '--gpio', 'off']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /must start with mqtt:\/\/, mqtts:\/\//);
    r = snapback(['serve', '--state-dir', state, '--management', 'mqtt://127.0.0.1:1883', '--appliance-name', 'lab/1', '--gadget', 'off', '--gpio', 'off']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /an appliance name is 1-64 letters/);
    r = snapback(['serve', '--state-dir', state, '--management', 'mqtt://127.0.0.1:1883', '--management-password-file', join(dir, 'no-such-file'), '--gadget', 'off', '--gpio', 'off']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--management-password-file .*no-such-file/);
  });

  it('an appliance killed with kill -9 shows offline through its last will', async () => {
    const broker = await loginBroker();
    const lab1 = await appliance('lab1', broker);
    const c = await consoleOn(broker.url);
    await waitFor('lab1 online', () => c.last('snapback/lab1/availability') === 'online');
    lab1.child.kill('SIGKILL');
    await exited(lab1.child);
    // keepalive is 30 s; the broker sees the TCP connection close at once and publishes the will.
    await waitFor('lab1 offline by its last will', () => c.last('snapback/lab1/availability') === 'offline', 60_000);
  });

  it('a broker restart: the appliance reconnects, and a command sent around the restart runs exactly once', async () => {
    const broker = await loginBroker();
    const lab1 = await appliance('lab1', broker);
    let c = await consoleOn(broker.url);
    await waitFor('lab1 online', () => c.last('snapback/lab1/availability') === 'online');
    const before = (await status(lab1.state)).session.number;

    // The command goes to the broker, which is then restarted at once; the console, not sure it
    // was delivered, sends the same command again afterwards.
    const id = await c.send('lab1', 'end-session');
    await broker.restart();
    await waitFor('lab1 to reconnect', async () => (await management(lab1.state)).connection.state === 'connected', 60_000);
    c = await consoleOn(broker.url);
    await c.send('lab1', 'end-session', undefined, id);
    const answer = await c.answer(id);
    assert.equal(answer.ok, true, JSON.stringify(answer));
    await sleep(500); // a second run, were there one, would be underway by now
    assert.equal((await status(lab1.state)).session.number, before + 1, 'the session ended once');
    assert.equal((await audit(lab1.state)).filter((e) => e.action === 'session.end' && e.details?.command === id).length, 1);

    // A command sent while the appliance is away waits in its broker session, through another
    // broker restart, and runs once when it is back.
    lab1.child.kill('SIGTERM');
    await exited(lab1.child);
    await waitFor('lab1 offline (its goodbye)', () => c.last('snapback/lab1/availability') === 'offline');
    const queued = await c.send('lab1', 'thaw');
    await broker.restart();
    c = await consoleOn(broker.url);
    await serve(lab1.state, ['--management', broker.url, '--appliance-name', 'lab1', '--management-username', 'lab1', '--management-password-file', join(dir, 'lab1.password')]);
    const a2 = await c.answer(queued);
    assert.equal(a2.ok, true, JSON.stringify(a2));
    assert.equal((await status(lab1.state)).mode, 'thawed');
    assert.equal((await audit(lab1.state)).filter((e) => e.details?.command === queued).length, 1);
  });

  it("the ACL: an appliance's publication to another's topics is refused, and a command from an account that is not the console's never reaches the appliance", async () => {
    const broker = await loginBroker();
    const [lab1, lab2] = await Promise.all([appliance('lab1', broker), appliance('lab2', broker)]);
    const c = await consoleOn(broker.url);
    await waitFor('both states', () => c.last('snapback/lab1/state') && c.last('snapback/lab2/state'));
    const lab2State = c.last('snapback/lab2/state');

    // lab1's own account (what its daemon logs in with) tries to speak for lab2.
    const asLab1 = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0, username: 'lab1', password: USERS.lab1, clientId: 'lab1-impostor' });
    try {
      await assert.rejects(asLab1.publishAsync('snapback/lab2/state', '{"mode":"thawed"}', { qos: 1, retain: true }), /Not authorized/);
      await assert.rejects(asLab1.publishAsync('snapback/lab2/availability', 'offline', { qos: 1, retain: true }), /Not authorized/);
      await assert.rejects(asLab1.publishAsync('snapback/lab2/command', JSON.stringify({ id: 'from-lab1', action: 'thaw' }), { qos: 1 }), /Not authorized/);
    } finally {
      await asLab1.endAsync(true);
    }
    // Another account (a visitor with a valid login) tries to command lab1.
    const visitor = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 0, username: 'visitor', password: USERS.visitor });
    try {
      await assert.rejects(visitor.publishAsync('snapback/lab1/command', JSON.stringify({ id: 'from-visitor', action: 'thaw' }), { qos: 1, properties: { responseTopic: 'snapback/lab1/response' } }), /Not authorized/);
    } finally {
      await visitor.endAsync(true);
    }
    // The console's own command after these is answered: the appliance was listening all along.
    const ok = await c.command('lab1', 'restore-mode', { mode: 'eager' });
    assert.equal(ok.ok, true);
    assert.equal((await status(lab1.state)).mode, 'frozen', "the visitor's and lab1's thaw never ran");
    assert.equal((await status(lab2.state)).mode, 'frozen');
    for (const st of [lab1.state, lab2.state]) assert.deepEqual((await audit(st)).filter((e) => /from-/.test(String(e.details?.command))), []);
    // lab2's own heartbeat may have republished its state meanwhile (a newer updatedAt); what
    // must not have changed is what the state says.
    const withoutTime = (text: unknown): unknown => {
      const { updatedAt: _at, ...rest } = JSON.parse(String(text)) as { updatedAt?: string };
      return rest;
    };
    assert.deepEqual(withoutTime(c.last('snapback/lab2/state')), withoutTime(lab2State), "lab2's retained state is its own");
    assert.equal(c.last('snapback/lab2/availability'), 'online');
  });

  it('mqtts with a self-signed CA (--management-ca)', async () => {
    const broker = await loginBroker({ tls: true });
    const ca = join(dir, 'broker-ca.pem');
    writeFileSync(ca, broker.caPem!);
    const lab1 = await appliance('lab1', broker, undefined, broker.tlsUrl, ['--management-ca', ca]);
    await waitFor('connected over mqtts', async () => (await management(lab1.state)).connection.state === 'connected');
    const c = await consoleOn(broker.tlsUrl, { username: 'console', password: USERS.console, ca: broker.caPem! });
    await waitFor('lab1 online', () => c.last('snapback/lab1/availability') === 'online');
    assert.equal((await c.command('lab1', 'thaw')).ok, true);
  });

  it('a broker missing at start: the disk is served, the status shows management failed and reconnecting, and it connects once the broker is there', async () => {
    const port = await freePort();
    const state = stateFor('early');
    await serve(state, ['--management', `mqtt://127.0.0.1:${port}`, '--appliance-name', 'early']);
    const m = await waitFor('management reconnecting', async () => {
      const s = await status(state);
      return s.components.find((x) => x.name === 'management' && x.state === 'failed');
    });
    assert.match(m.problem ?? '', /reconnecting.*127\.0\.0\.1.*ECONNREFUSED/);
    // The disk is served all the same.
    const info = await runTool('nbdinfo', ['--size', `nbd+unix:///snapback?socket=${join(state, 'nbd.sock')}`]);
    assert.equal(Number(info.stdout.trim()), SIZE);

    const broker = await Mosquitto.start({ port });
    brokers.push(broker);
    const c = await consoleOn(broker.url, {});
    await waitFor('the appliance online once the broker is up', () => c.last('snapback/early/availability') === 'online', 90_000);
    const s = await status(state);
    assert.equal(s.components.find((x) => x.name === 'management')?.state, 'running');
  });
  /** The console's enrollment endpoint as the appliance sees it: one code, valid once, for one name. */
  async function enrollmentEndpoint(code: string, name: string, reply: EnrollReply, tls?: { key: string; cert: string }): Promise<{ url: string; calls: EnrollRequest[]; server: Server }> {
    const calls: EnrollRequest[] = [];
    let used = false;
    const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const r = JSON.parse(body) as EnrollRequest;
        calls.push(r);
        res.setHeader('Content-Type', 'application/json');
        if (req.method !== 'POST' || req.url !== '/api/enroll') return res.writeHead(404).end('{"error":"NOT_FOUND","message":"no"}');
        if (r.code !== code || r.name !== name || used) return res.writeHead(403).end('{"error":"FORBIDDEN","message":"unknown or used enrollment code"}');
        used = true;
        res.writeHead(200).end(JSON.stringify(reply));
      });
    };
    const server: Server = tls ? createHttpsServer(tls, handler) : createServer(handler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a = server.address();
    return { url: `${tls ? 'https' : 'http'}://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`, calls, server };
  }

  it('enrollment over https (the console\'s certificate from a private CA): the one-time code is redeemed once for the broker login and CA, kept 0600 in the state directory and used from then on', async () => {
    const broker = await loginBroker({ tls: true });
    // The console's https certificate: the test CA's, as the broker's (127.0.0.1).
    const tls = { key: readFileSync(join(broker.dir, 'server.key'), 'utf8'), cert: readFileSync(join(broker.dir, 'server.pem'), 'utf8') };
    const endpoint = await enrollmentEndpoint('7KQ2-MX9D', 'lab2', { mqttUrl: broker.tlsUrl, username: 'lab2', password: USERS.lab2, caCertificate: broker.caPem }, tls);
    const ca = join(dir, 'console-ca.pem');
    writeFileSync(ca, broker.caPem!);
    try {
      const state = stateFor('lab2');
      const first = await serve(state, ['--management', endpoint.url, '--appliance-name', 'lab2', '--enrollment-code', '7KQ2-MX9D', '--management-ca', ca]);
      await waitFor('connected with the enrolled login', async () => (await management(state)).connection.state === 'connected');
      const m = await management(state);
      assert.equal(m.broker, broker.tlsUrl);
      assert.equal(m.username, 'lab2');
      assert.ok(m.enrolledAt);
      assert.equal(JSON.stringify(m).includes(USERS.lab2), false, 'the status never shows the password');
      const saved = join(state, 'management.json');
      assert.equal(statSync(saved).mode & 0o777, 0o600);
      assert.match(readFileSync(saved, 'utf8'), /BEGIN CERTIFICATE/);
      const c = await consoleOn(broker.tlsUrl, { username: 'console', password: USERS.console, ca: broker.caPem! });
      assert.equal((await c.command('lab2', 'thaw')).ok, true);

      // The next start needs only the console's URL: the saved login is used, the code is not sent again.
      first.kill('SIGTERM');
      await exited(first);
      await serve(state, ['--management', endpoint.url, '--appliance-name', 'lab2', '--management-ca', ca]);
      await waitFor('connected again', async () => (await management(state)).connection.state === 'connected');
      assert.equal((await c.command('lab2', 'freeze')).ok, true);
      assert.equal(endpoint.calls.length, 1, 'the code was redeemed once');
    } finally {
      endpoint.server.close();
    }
  });

  it('enrollment: a refused code fails with the console\'s reason, and the disk is served', async () => {
    const endpoint = await enrollmentEndpoint('RIGHT', 'lab1', { mqttUrl: 'mqtt://127.0.0.1:1', username: 'lab1', password: 'x', caCertificate: null });
    try {
      const state = stateFor('lab1');
      await serve(state, ['--management', endpoint.url, '--appliance-name', 'lab1', '--enrollment-code', 'WRONG']);
      const comp = await waitFor('management failed', async () => (await status(state)).components.find((x) => x.name === 'management' && x.state === 'failed'));
      assert.match(comp.problem ?? '', /refused the enrollment code \(HTTP 403\): unknown or used enrollment code/);
      assert.equal((await management(state)).connection.state, 'failed');
      assert.equal(endpoint.calls.length, 1, 'a refused code is not tried again');
      const info = await runTool('nbdinfo', ['--size', `nbd+unix:///snapback?socket=${join(state, 'nbd.sock')}`]);
      assert.equal(Number(info.stdout.trim()), SIZE);
    } finally {
      endpoint.server.close();
    }
  });

  it('the settings API (the web UI\'s): POST /api/management connects, is audited without secrets, and url null switches it off with a goodbye', async () => {
    const broker = await loginBroker();
    const state = stateFor('webset');
    await serve(state, []);
    assert.equal((await management(state)).connection.state, 'off');
    assert.equal((await status(state)).components.find((x) => x.name === 'management')?.state, 'off');
    const c = await consoleOn(broker.url);
    await callDaemon(control(state), 'POST', '/api/management', { url: broker.url, applianceName: 'lab1', username: 'lab1', password: USERS.lab1 });
    await waitFor('connected', async () => (await management(state)).connection.state === 'connected');
    await waitFor('lab1 online', () => c.last('snapback/lab1/availability') === 'online');
    const entry = (await audit(state)).find((e) => e.action === 'management.set');
    assert.ok(entry, 'audited');
    assert.equal(entry.actor, 'cli');
    assert.equal(JSON.stringify(entry).includes(USERS.lab1), false, 'no password in the audit log');
    // A bad URL is refused before anything changes.
    await assert.rejects(callDaemon(control(state), 'POST', '/api/management', { url: 'ftp://x' }), /mqtt:\/\/, mqtts:\/\/|BAD_ARGUMENT/);
    assert.equal((await management(state)).connection.state, 'connected');

    await callDaemon(control(state), 'POST', '/api/management', { url: null });
    await waitFor('lab1 offline (a clean goodbye)', () => c.last('snapback/lab1/availability') === 'offline');
    assert.equal((await management(state)).connection.state, 'off');
  });
});
