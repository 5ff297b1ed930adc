/**
 * The console with real parts end to end: a real mosquitto whose password and ACL files the
 * console writes, the console (`snapback console serve` in-process), and real appliance daemons
 * (`snapback serve --management CONSOLE --enrollment-code CODE`) that enroll, connect and run
 * the console's commands through their own service: live state, actions that reach exactly the
 * appliance or group they name, last will after kill -9, and a broker restart that loses
 * nothing and runs nothing twice.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEntry } from '../../appliance/api/audit.js';
import type { ApplianceRecord, CommandRecord } from '../../appliance/api/console.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import type { ConsoleServer } from '../../console/server/console-server.js';
import { exited, snapback, startServe } from '../helpers/cli.js';
import { consoleApi, pidOf, startConsoleRig } from '../helpers/console-rig.js';
import type { Mosquitto } from '../helpers/mosquitto.js';
import { Prng } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const SIZE = 4 << 20;

describe('the console with real appliance daemons (real mosquitto)', function () {
  this.timeout(240_000);
  let dir: string;
  let model: string;
  let broker: Mosquitto;
  let server: ConsoleServer;
  let token: string;
  let base: string;
  const children: ChildProcess[] = [];
  let serial = 0;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-console-fleet-'));
    model = join(dir, 'model.img');
    writeFileSync(model, new Prng(7).bytes(SIZE));
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  beforeEach(async () => {
    ({ broker, server, token, base } = await startConsoleRig(join(dir, `run-${++serial}`)));
  });

  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await exited(c);
    }
    await server.stop();
    await broker.stop();
  });

  const api = <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => consoleApi<T>({ base, token }, method, path, body);

  const control = (state: string): string => join(state, 'control.sock');
  const status = async (state: string): Promise<ApplianceStatus> => (await callDaemon(control(state), 'GET', '/api/status')) as ApplianceStatus;
  const consoleAudit = async (state: string): Promise<AuditEntry[]> =>
    ((await callDaemon(control(state), 'GET', '/api/audit?limit=1000')) as { entries: AuditEntry[] }).entries.filter((e) => e.actor === 'console');
  const row = async (name: string): Promise<ApplianceRecord | undefined> => (await api<ApplianceRecord[]>('GET', '/api/appliances')).body.find((a) => a.name === name);

  /** A real appliance daemon enrolled with a code from the console. */
  async function appliance(name: string): Promise<{ state: string; child: ChildProcess }> {
    const state = join(dir, `${name}-${serial}`);
    const r = snapback(['init', '--state-dir', state, '--model', model, '--disk', `${state}.disk`]);
    assert.equal(r.code, 0, r.stderr);
    const code = await api<{ code: string }>('POST', '/api/enroll-codes', { name });
    assert.equal(code.status, 201);
    const child = await startServe(state, ['--management', base, '--appliance-name', name, '--enrollment-code', code.body.code]);
    children.push(child);
    await waitFor(`${name} online in the console`, async () => (await row(name))?.online === true, 60_000);
    return { state, child };
  }

  async function act(path: string, body: unknown): Promise<CommandRecord[]> {
    const res = await api<{ id: string } | { commands: { id: string }[] }>('POST', path, body);
    assert.equal(res.status, 202, JSON.stringify(res.body));
    const ids = 'commands' in res.body ? res.body.commands.map((c) => c.id) : [res.body.id];
    return Promise.all(
      ids.map((id) =>
        waitFor(
          `command ${id} answered`,
          async () => {
            const c = (await api<CommandRecord>('GET', `/api/commands/${id}`)).body;
            return c.state === 'succeeded' || c.state === 'failed' ? c : null;
          },
          60_000,
        ),
      ),
    );
  }

  it('enrolled daemons appear live; every action reaches the daemon it names and no other; a group action reaches the whole group', async () => {
    const [lab1, lab2, lab3] = [await appliance('lab-01'), await appliance('lab-02'), await appliance('lab-03')];
    const s1 = await status(lab1.state);
    const r1 = (await row('lab-01'))!;
    assert.deepEqual([r1.mode, r1.session, r1.model, r1.enrolled], [s1.mode, s1.session.number, 'model.img', true]);

    const [thaw] = await act('/api/appliances/lab-01/actions', { action: 'thaw' });
    assert.deepEqual([thaw!.state, thaw!.result], ['succeeded', { mode: 'thawed' }]);
    const [ended] = await act('/api/appliances/lab-01/actions', { action: 'end-session' });
    assert.equal(ended!.state, 'succeeded', JSON.stringify(ended));
    const [eager] = await act('/api/appliances/lab-01/actions', { action: 'restore-mode', mode: 'eager' });
    assert.equal(eager!.state, 'succeeded', JSON.stringify(eager));
    const after1 = await status(lab1.state);
    assert.deepEqual([after1.mode, after1.restoreMode, after1.session.number], ['thawed', 'eager', s1.session.number + 1]);
    assert.deepEqual((await consoleAudit(lab1.state)).map((e) => e.details?.command).sort(), [thaw!.id, ended!.id, eager!.id].sort());
    assert.deepEqual(await consoleAudit(lab2.state), [], 'lab-02 got nothing');
    assert.deepEqual(await consoleAudit(lab3.state), [], 'lab-03 got nothing');
    await waitFor('the fleet table shows lab-01 thawed in its new session', async () => {
      const r = await row('lab-01');
      return r?.mode === 'thawed' && r.session === s1.session.number + 1;
    });

    assert.equal((await api('POST', '/api/groups', { name: 'room 101' })).status, 201);
    for (const n of ['lab-02', 'lab-03']) assert.equal((await api('POST', `/api/appliances/${n}/group`, { group: 'room 101' })).status, 200);
    const group = await act('/api/groups/room%20101/actions', { action: 'thaw' });
    assert.deepEqual(group.map((c) => [c.appliance, c.state]).sort(), [['lab-02', 'succeeded'], ['lab-03', 'succeeded']]);
    assert.deepEqual([(await status(lab2.state)).mode, (await status(lab3.state)).mode], ['thawed', 'thawed']);
    assert.equal((await consoleAudit(lab1.state)).length, 3, 'lab-01, outside the group, got nothing more');
  });

  it('a daemon killed with kill -9 shows offline; a broker restart loses nothing and runs nothing twice', async () => {
    const lab1 = await appliance('lab-01');
    const lab2 = await appliance('lab-02');
    lab2.child.kill('SIGKILL');
    await exited(lab2.child);
    await waitFor('lab-02 offline by its last will', async () => (await row('lab-02'))?.online === false, 60_000);

    const before = (await status(lab1.state)).session.number;
    const [first] = await act('/api/appliances/lab-01/actions', { action: 'end-session' });
    assert.equal(first!.state, 'succeeded');
    await broker.stop({ remove: false });
    await waitFor('the console to notice', () => !server.link.connected);
    const queued = await api<{ id: string; state: string }>('POST', '/api/appliances/lab-01/actions', { action: 'end-session' });
    assert.deepEqual([queued.status, queued.body.state], [202, 'queued']);
    await broker.resume();
    writeFileSync(join(dir, `run-${serial}`, 'mosquitto.pid'), `${pidOf(broker.confPath)}\n`);
    const done = await waitFor(
      'the queued command answered after the restart',
      async () => {
        const c = (await api<CommandRecord>('GET', `/api/commands/${queued.body.id}`)).body;
        return c.state === 'succeeded' ? c : null;
      },
      90_000,
    );
    assert.equal(done.appliance, 'lab-01');
    assert.equal((await status(lab1.state)).session.number, before + 2, 'two commands, two session ends: none lost, none run twice');
    assert.deepEqual((await consoleAudit(lab1.state)).filter((e) => e.action === 'session.end').map((e) => e.details?.command).sort(), [first!.id, queued.body.id].sort());
    await waitFor('lab-01 online again', async () => (await row('lab-01'))?.online === true, 60_000);
  });
});
