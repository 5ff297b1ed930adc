/**
 * The console against a real mosquitto (password file and ACL written by the console itself)
 * and appliances speaking the fleet protocol: enrollment, the live fleet table, actions that
 * reach exactly the appliances they name (one, a selection, a group), last-will offline after
 * kill -9, a broker restart that loses nothing and runs nothing twice, the model catalogue with
 * Range, and the API's errors.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import type { CommandRecord } from '../../appliance/api/console.js';
import { ConsoleServer } from '../../console/server/console-server.js';
import { CONSOLE_BROKER_PASSWORD, pidOf, startConsoleRig } from '../helpers/console-rig.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { ProtocolAppliance } from '../helpers/protocol-appliance.js';
import { sleep, waitFor } from '../helpers/wait.js';

const here = dirname(fileURLToPath(import.meta.url));

interface Rig {
  dir: string;
  broker: Mosquitto;
  server: ConsoleServer;
  token: string;
  base: string;
  appliances: ProtocolAppliance[];
  children: ChildProcess[];
}

async function startRig(opts: { tls?: boolean } = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), 'snapback-console-'));
  const { broker, server, token, base } = await startConsoleRig(dir, opts);
  return { dir, broker, server, token, base: base.replace(/\/$/, ''), appliances: [], children: [] };
}

async function stopRig(r: Rig): Promise<void> {
  for (const c of r.children) c.kill('SIGKILL');
  for (const a of r.appliances) await a.close();
  await r.server.stop();
  await r.broker.stop();
  await rm(r.dir, { recursive: true, force: true });
}

interface Reply {
  status: number;
  body: unknown;
  headers: Headers;
}

async function call(r: Rig, method: string, path: string, body?: unknown, opts: { token?: string | null; raw?: string; type?: string } = {}): Promise<Reply> {
  const token = opts.token === undefined ? r.token : opts.token;
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  let payload: string | undefined;
  if (opts.raw !== undefined) {
    payload = opts.raw;
    headers['content-type'] = opts.type ?? 'application/json';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(r.base + path, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: res.status, body: parsed, headers: res.headers };
}

/** An appliance with its own broker account, enrolled through the console's API. */
async function enrolled(r: Rig, name: string): Promise<ProtocolAppliance> {
  const code = await call(r, 'POST', '/api/enroll-codes', { name });
  assert.equal(code.status, 201, JSON.stringify(code.body));
  const creds = await call(r, 'POST', '/api/enroll', { code: (code.body as { code: string }).code, name }, { token: null });
  assert.equal(creds.status, 200, JSON.stringify(creds.body));
  const c = creds.body as { mqttUrl: string; username: string; password: string; caCertificate: string | null };
  // The broker rereads its files on SIGHUP: wait until the new account logs in.
  const a = await waitFor(
    `${name} to log in`,
    () => ProtocolAppliance.connect({ url: c.mqttUrl, name, username: c.username, password: c.password, ...(c.caCertificate !== null ? { ca: c.caCertificate } : {}) }).catch(() => null),
    10_000,
    100,
  );
  r.appliances.push(a);
  await waitFor(`${name} online in the console`, async () => (await fleet(r)).find((x) => x.name === name)?.online === true);
  return a;
}

async function fleet(r: Rig): Promise<{ name: string; online: boolean; mode: string | null; session: number | null; model: string | null; group: string | null }[]> {
  const res = await call(r, 'GET', '/api/appliances');
  assert.equal(res.status, 200);
  return res.body as never;
}

async function answered(r: Rig, id: string): Promise<CommandRecord> {
  return waitFor(`command ${id} to be answered`, async () => {
    const c = (await call(r, 'GET', `/api/commands/${id}`)).body as CommandRecord;
    return c.state === 'succeeded' || c.state === 'failed' ? c : null;
  });
}

describe('the console over mqtts with a self-signed CA', function () {
  this.timeout(120_000);

  it('the console connects with the CA it is given, and enrollment hands appliances the broker\'s mqtts:// URL and that CA', async () => {
    const r = await startRig({ tls: true });
    try {
      const a = await enrolled(r, 'lab-01');
      assert.equal(a.client.options.protocol, 'mqtts');
      const cmd = (await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'thaw' })).body as { id: string };
      assert.equal((await answered(r, cmd.id)).state, 'succeeded');
    } finally {
      await stopRig(r);
    }
  });
});

describe('the console (real mosquitto, appliances speaking the fleet protocol)', function () {
  this.timeout(120_000);
  let r: Rig;
  beforeEach(async () => {
    r = await startRig();
  });
  afterEach(async () => {
    await stopRig(r);
  });

  it('enrollment: a one-time code buys a broker account that the broker accepts; a used, foreign or unknown code is refused', async () => {
    const a = await enrolled(r, 'lab-01');
    assert.ok(a.client.connected);
    const codes = (await call(r, 'GET', '/api/enroll-codes')).body as { name: string; usedBy: string | null }[];
    assert.equal(codes[0]?.usedBy, 'lab-01');
    const code = ((await call(r, 'POST', '/api/enroll-codes', { name: 'lab-02' })).body as { code: string }).code;
    const wrongName = await call(r, 'POST', '/api/enroll', { code, name: 'lab-03' }, { token: null });
    assert.equal(wrongName.status, 403);
    assert.match((wrongName.body as { message: string }).message, /for the appliance "lab-02"/);
    assert.equal((await call(r, 'POST', '/api/enroll', { code, name: 'lab-02' }, { token: null })).status, 200);
    const again = await call(r, 'POST', '/api/enroll', { code, name: 'lab-02' }, { token: null });
    assert.deepEqual([again.status, (again.body as { error: string }).error], [403, 'BAD_ENROLL_CODE']);
    assert.equal((await call(r, 'POST', '/api/enroll', { code: 'AAAA-BBBB-CCCC-DDDD', name: 'lab-09' }, { token: null })).status, 403);
    // A wrong password is refused by the broker; the ACL the console wrote keeps lab-01 to its own topics.
    await assert.rejects(mqtt.connectAsync(r.broker.url, { protocolVersion: 5, username: 'lab-01', password: 'wrong', reconnectPeriod: 0 }), /Not authorized|Bad User Name or Password/i);
    await assert.rejects(a.client.publishAsync('snapback/lab-02/state', '{}', { qos: 1 }), /Not authorized/i);
    await assert.rejects(a.client.publishAsync('snapback/lab-01/command', '{}', { qos: 1 }), /Not authorized/i);
  });

  it('live state: the fleet table shows what each appliance publishes', async () => {
    const a = await enrolled(r, 'lab-01');
    let row = (await fleet(r)).find((x) => x.name === 'lab-01')!;
    assert.deepEqual([row.online, row.mode, row.session, row.model], [true, 'frozen', 1, 'win11-lab']);
    await a.publishState({ mode: 'thawed', session: { number: 7, startedAt: new Date().toISOString() } });
    row = await waitFor('the new state', async () => (await fleet(r)).find((x) => x.name === 'lab-01' && x.session === 7));
    assert.equal(row.mode, 'thawed');
  });

  it('every action reaches the appliance it names and no other, and its answer is the command\'s result', async () => {
    const a1 = await enrolled(r, 'lab-01');
    const a2 = await enrolled(r, 'lab-02');
    const actions = [
      { action: 'end-session' },
      { action: 'freeze' },
      { action: 'thaw' },
      { action: 'restore-mode', mode: 'eager' },
      { action: 'assign-model', url: 'https://models.example/win11.img', name: 'win11' },
    ];
    const ids: string[] = [];
    for (const body of actions) {
      const res = await call(r, 'POST', '/api/appliances/lab-01/actions', body);
      assert.equal(res.status, 202, JSON.stringify(res.body));
      const id = (res.body as { id: string }).id;
      ids.push(id);
      const c = await answered(r, id);
      assert.deepEqual([c.state, c.appliance, c.result], ['succeeded', 'lab-01', { action: body.action, by: 'lab-01' }]);
    }
    assert.deepEqual(a1.ran.map((c) => c.id), ids);
    assert.deepEqual(a1.ran.map((c) => c.action), actions.map((x) => x.action));
    assert.deepEqual(a1.ran[3]?.args, { mode: 'eager' });
    assert.deepEqual(a1.ran[4]?.args, { url: 'https://models.example/win11.img', name: 'win11', lazy: true });
    assert.deepEqual(a2.received, []);
    const audit = (await call(r, 'GET', '/api/audit?limit=50')).body as { entries: { action: string }[] };
    assert.ok(audit.entries.some((e) => e.action === 'fleet.restore-mode'));
  });

  it('a group action reaches the whole group and nobody else; a selection reaches exactly the selection', async () => {
    const [a1, a2, a3] = [await enrolled(r, 'lab-01'), await enrolled(r, 'lab-02'), await enrolled(r, 'lab-03')];
    assert.equal((await call(r, 'POST', '/api/groups', { name: 'room 101', description: 'first floor' })).status, 201);
    for (const n of ['lab-01', 'lab-02']) assert.equal((await call(r, 'POST', `/api/appliances/${n}/group`, { group: 'room 101' })).status, 200);
    assert.deepEqual(((await call(r, 'GET', '/api/groups/room%20101')).body as { members: string[] }).members, ['lab-01', 'lab-02']);
    const res = await call(r, 'POST', '/api/groups/room%20101/actions', { action: 'freeze' });
    assert.equal(res.status, 202);
    const cmds = (res.body as { commands: { id: string; appliance: string }[] }).commands;
    assert.deepEqual(cmds.map((c) => c.appliance).sort(), ['lab-01', 'lab-02']);
    for (const c of cmds) await answered(r, c.id);
    assert.deepEqual([a1.ran.length, a2.ran.length, a3.ran.length], [1, 1, 0]);

    const sel = await call(r, 'POST', '/api/actions', { appliances: ['lab-03'], groups: ['room 101'], action: 'thaw' });
    assert.equal(sel.status, 202, JSON.stringify(sel.body));
    for (const c of (sel.body as { commands: { id: string }[] }).commands) await answered(r, c.id);
    assert.deepEqual([a1.ran.length, a2.ran.length, a3.ran.length], [2, 2, 1]);
    assert.equal((await call(r, 'DELETE', '/api/groups/room%20101')).status, 204);
    assert.equal((await fleet(r)).find((x) => x.name === 'lab-01')?.group, null);
  });

  it('set-maintenance: a maintenance window sent to a group reaches each member with its fields, is audited, and a malformed one is refused before anything is sent', async () => {
    const [a1, a2, a3] = [await enrolled(r, 'lab-01'), await enrolled(r, 'lab-02'), await enrolled(r, 'lab-03')];
    assert.equal((await call(r, 'POST', '/api/groups', { name: 'room-102' })).status, 201);
    for (const n of ['lab-01', 'lab-02']) assert.equal((await call(r, 'POST', `/api/appliances/${n}/group`, { group: 'room-102' })).status, 200);
    const window = { name: 'nightly', schedule: '0 2 * * 1-5', timeZone: 'Europe/Berlin', durationMinutes: 90, after: 'capture' };
    const res = await call(r, 'POST', '/api/groups/room-102/actions', { action: 'set-maintenance', windows: [window], thawBoots: 2 });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    for (const c of (res.body as { commands: { id: string }[] }).commands) assert.equal((await answered(r, c.id)).state, 'succeeded');
    for (const a of [a1, a2]) {
      assert.deepEqual(a.ran.map((c) => c.action), ['set-maintenance']);
      const args = a.ran[0]!.args as { windows: Record<string, unknown>[]; thawBoots: number };
      assert.deepEqual([args.windows.length, args.thawBoots], [1, 2]);
      assert.deepEqual({ ...args.windows[0], graceSeconds: undefined, modelName: undefined, wakeOnLan: undefined }, { ...window, graceSeconds: undefined, modelName: undefined, wakeOnLan: undefined });
    }
    assert.deepEqual(a3.ran, [], 'lab-03, outside the group, got nothing');
    const audit = (await call(r, 'GET', '/api/audit?limit=50')).body as { entries: { action: string; details?: { groups?: string[]; count?: number } }[] };
    const entry = audit.entries.find((e) => e.action === 'fleet.set-maintenance');
    assert.deepEqual([entry?.details?.groups, entry?.details?.count], [['room-102'], 2]);

    // Refused with the field named, and nothing sent: a bad name, nothing to set.
    const bad = await call(r, 'POST', '/api/appliances/lab-03/actions', { action: 'set-maintenance', windows: [{ ...window, name: 'no spaces' }] });
    assert.equal(bad.status, 400);
    assert.match((bad.body as { message: string }).message, /windows\.0\.name/);
    const empty = await call(r, 'POST', '/api/appliances/lab-03/actions', { action: 'set-maintenance' });
    assert.equal(empty.status, 400);
    assert.match((empty.body as { message: string }).message, /windows and\/or thawBoots/);
    assert.deepEqual(a3.received, []);
  });

  it('an appliance killed with SIGKILL shows offline through its last will', async () => {
    const code = ((await call(r, 'POST', '/api/enroll-codes', { name: 'lab-07' })).body as { code: string }).code;
    const creds = (await call(r, 'POST', '/api/enroll', { code, name: 'lab-07' }, { token: null })).body as { mqttUrl: string; password: string };
    const child = spawn(process.execPath, [join(here, '..', 'helpers', 'protocol-appliance-main.js'), creds.mqttUrl, 'lab-07', 'lab-07', creds.password], { stdio: ['ignore', 'pipe', 'inherit'] });
    r.children.push(child);
    await waitFor('lab-07 online', async () => (await fleet(r)).find((x) => x.name === 'lab-07')?.online === true);
    child.kill('SIGKILL');
    await waitFor('lab-07 offline', async () => (await fleet(r)).find((x) => x.name === 'lab-07')?.online === false);
  });

  it('a broker restart: the console and appliances reconnect; commands sent meanwhile arrive, nothing is lost or run twice', async () => {
    const a1 = await enrolled(r, 'lab-01');
    const before = (await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'freeze' })).body as { id: string };
    await answered(r, before.id);
    await r.broker.stop({ remove: false });
    await waitFor('the console to notice', () => !r.server.link.connected);
    // Commands made while the broker is down wait, queued, in the console's database.
    const during = [];
    for (const action of ['thaw', 'end-session', 'freeze']) {
      const res = await call(r, 'POST', '/api/appliances/lab-01/actions', { action });
      assert.equal(res.status, 202);
      assert.equal((res.body as { state: string }).state, 'queued');
      during.push((res.body as { id: string }).id);
    }
    await r.broker.resume();
    await writeFile(join(r.dir, 'mosquitto.pid'), `${pidOf(r.broker.confPath)}\n`);
    await waitFor('the console to reconnect', () => r.server.link.connected, 30_000);
    for (const id of during) assert.equal((await answered(r, id)).state, 'succeeded');
    await sleep(500); // a repeat would have arrived by now
    const ranIds = a1.ran.map((c) => c.id);
    assert.deepEqual(ranIds, [before.id, ...during], 'every command ran once, in order');
    assert.equal(a1.received.filter((c) => c.id === before.id).length, 1, 'a command answered before the restart is not sent again');
    await waitFor('lab-01 online again', async () => (await fleet(r)).find((x) => x.name === 'lab-01')?.online === true);
  });

  it('two consoles on one broker, and a restarted console, each keep their own client id: none knocks another off', async () => {
    const first = r.server.link.clientId;
    const other = new ConsoleServer({
      dataDir: join(r.dir, 'console-2'),
      listen: { host: '127.0.0.1', port: 0 },
      mqttUrl: r.broker.url.replace('mqtt://', `mqtt://console:${CONSOLE_BROKER_PASSWORD}@`),
      backoff: { minMs: 100, maxMs: 1000 },
    });
    try {
      await other.start();
      await waitFor('the second console to connect', () => other.link.connected);
      assert.notEqual(other.link.clientId, first);
      const a1 = await enrolled(r, 'lab-01');
      // Both consoles hear the fleet; the first still commands it.
      await waitFor('lab-01 in the second console', () => other.store.appliance('lab-01')?.online === true);
      const cmd = (await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'thaw' })).body as { id: string };
      assert.equal((await answered(r, cmd.id)).state, 'succeeded');
      assert.deepEqual(a1.ran.map((c) => c.id), [cmd.id]);
    } finally {
      await other.stop();
    }
    // The first console restarted on its data directory is the same client (its persistent session).
    await r.server.stop();
    r.server = new ConsoleServer({
      dataDir: join(r.dir, 'console'),
      listen: { host: '127.0.0.1', port: 0 },
      mqttUrl: r.broker.url.replace('mqtt://', `mqtt://console:${CONSOLE_BROKER_PASSWORD}@`),
      backoff: { minMs: 100, maxMs: 1000 },
    });
    await r.server.start();
    await waitFor('the restarted console to connect', () => r.server.link.connected);
    assert.equal(r.server.link.clientId, first);
    const log = r.broker.log();
    assert.doesNotMatch(log, /already connected, closing old connection/, 'no console took over another\'s connection');
    assert.equal(log.split(` as ${first} `).length - 1, 2, 'the first console connected once, and once more after its restart');
  });

  it('the model catalogue: an upload is served with Range beside its manifest, and assign-model sends its URL', async () => {
    const a1 = await enrolled(r, 'lab-01');
    const image = Buffer.alloc(3 << 20);
    for (let i = 0; i < image.length; i += 4096) image.writeUInt32LE(i, i);
    const up = await fetch(`${r.base}/api/models?name=win11-lab`, { method: 'POST', headers: { authorization: `Bearer ${r.token}`, 'content-type': 'application/octet-stream' }, body: image });
    assert.equal(up.status, 201, await up.clone().text());
    const model = (await up.json()) as { id: string; name: string; size: number; url: string };
    assert.deepEqual([model.name, model.size], ['win11-lab', image.length]);
    assert.equal(model.url, `${r.base}/models/${model.id}/image`);
    const range = await fetch(model.url, { headers: { range: 'bytes=1048576-1052671' } });
    assert.equal(range.status, 206);
    assert.ok(Buffer.from(await range.arrayBuffer()).equals(image.subarray(1048576, 1052672)));
    const head = await fetch(model.url, { method: 'HEAD' });
    assert.deepEqual([head.status, head.headers.get('content-length'), head.headers.get('accept-ranges')], [200, String(image.length), 'bytes']);
    const manifest = (await (await fetch(`${model.url}.manifest.json`)).json()) as { id: string; size: number; name: string };
    assert.deepEqual([manifest.id, manifest.size, manifest.name], [model.id, image.length, 'win11-lab']);
    assert.equal((await call(r, 'POST', '/api/models?name=win11-lab', undefined, { raw: 'x', type: 'application/octet-stream' })).status, 409);

    const res = await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'assign-model', model: 'win11-lab' });
    await answered(r, (res.body as { id: string }).id);
    assert.deepEqual(a1.ran[0]?.args, { url: model.url, name: 'win11-lab', lazy: true });
    const row = ((await call(r, 'GET', '/api/appliances/lab-01')).body as { assigned: { model: string; url: string; command: string; at: string } }).assigned;
    assert.deepEqual(row, { model: 'win11-lab', url: model.url, command: (res.body as { id: string }).id, at: row.at });

    assert.equal((await call(r, 'DELETE', `/api/models/${model.id}`)).status, 204);
    assert.equal((await fetch(model.url)).status, 404);
    assert.deepEqual((await call(r, 'GET', '/api/models')).body, []);
  });

  it('tokens and bad input get clear errors: no or bad token, unknown appliance, bad action, malformed body', async () => {
    await enrolled(r, 'lab-01');
    const err = (x: Reply) => [x.status, (x.body as { error: string }).error];
    assert.deepEqual(err(await call(r, 'GET', '/api/appliances', undefined, { token: null })), [401, 'UNAUTHENTICATED']);
    assert.deepEqual(err(await call(r, 'GET', '/api/appliances', undefined, { token: 'sbk_000000000000_' + 'x'.repeat(43) })), [401, 'UNAUTHENTICATED']);
    const unknown = await call(r, 'POST', '/api/appliances/lab-99/actions', { action: 'freeze' });
    assert.deepEqual(err(unknown), [404, 'NOT_FOUND']);
    assert.match((unknown.body as { message: string }).message, /no appliance named "lab-99"/);
    const bad = await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'explode' });
    assert.deepEqual(err(bad), [400, 'BAD_ARGUMENT']);
    assert.match((bad.body as { message: string }).message, /action/);
    const noMode = await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'restore-mode' });
    assert.deepEqual(err(noMode), [400, 'BAD_ARGUMENT']);
    assert.match((noMode.body as { message: string }).message, /mode/);
    assert.deepEqual(err(await call(r, 'POST', '/api/appliances/lab-01/actions', undefined, { raw: '{"action": ' })), [400, 'BAD_ARGUMENT']);
    assert.deepEqual(err(await call(r, 'POST', '/api/appliances/lab-01/actions', undefined, { raw: 'action=freeze', type: 'application/x-www-form-urlencoded' })), [415, 'UNSUPPORTED_MEDIA_TYPE']);
    assert.deepEqual(err(await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'assign-model' })), [400, 'BAD_ARGUMENT']);
    assert.deepEqual(err(await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'assign-model', model: 'nope' })), [404, 'NOT_FOUND']);
    assert.deepEqual(err(await call(r, 'POST', '/api/actions', { action: 'freeze' })), [400, 'BAD_ARGUMENT']);
    assert.deepEqual(err(await call(r, 'POST', '/api/groups/nope/actions', { action: 'freeze' })), [404, 'NOT_FOUND']);
    assert.deepEqual(err(await call(r, 'GET', '/api/commands/nope')), [404, 'NOT_FOUND']);
    assert.deepEqual(err(await call(r, 'GET', '/api/nothing')), [404, 'NOT_FOUND']);
    // Nothing of this reached the appliance.
    assert.deepEqual(r.appliances[0]!.received, []);
  });

  it('live updates: GET /api/events streams changed appliances and commands; a page without a login leads to the login', async () => {
    const a = await enrolled(r, 'lab-01');
    const ctl = new AbortController();
    const res = await fetch(`${r.base}/api/events`, { headers: { authorization: `Bearer ${r.token}` }, signal: ctl.signal });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const pump = (async () => {
      for (;;) {
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done) return;
        text += Buffer.from(value!).toString();
      }
    })();
    await a.publishState({ session: { number: 42, startedAt: new Date().toISOString() } });
    await waitFor('an appliances event with session 42', () => /event: appliances\ndata: .*"name":"lab-01".*"session":42/.test(text));
    const cmd = (await call(r, 'POST', '/api/appliances/lab-01/actions', { action: 'freeze' })).body as { id: string };
    await waitFor('a commands event with the answer', () => new RegExp(`event: commands\\ndata: .*"id":"${cmd.id}".*"state":"succeeded"`).test(text));
    ctl.abort();
    await pump;
    const page = await fetch(`${r.base}/`, { headers: { accept: 'text/html' }, redirect: 'manual' });
    assert.deepEqual([page.status, page.headers.get('location')], [303, '/login']);
  });

  it('the OpenAPI document describes every route the console serves, and nothing else', async () => {
    const doc = (await call(r, 'GET', '/api/openapi.json', undefined, { token: null })).body as { info: { title: string }; paths: Record<string, Record<string, unknown>> };
    assert.equal(doc.info.title, 'Snapback console API');
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)).sort();
    const served = r.server.http
      .expressRoutes()
      .filter((e) => e.path.startsWith('/api/') || e.path.startsWith('/models/')) // the web UI's pages are not API
      .map((e) => `${e.method.toUpperCase()} ${e.path.replace(/:([A-Za-z_]\w*)/g, '{$1}')}`)
      .sort();
    assert.deepEqual(documented, served);
    for (const p of ['/api/appliances', '/api/appliances/{name}/actions', '/api/commands/{id}', '/api/groups', '/api/models', '/api/enroll', '/api/audit', '/api/tokens']) assert.ok(doc.paths[p], p);
  });
});
