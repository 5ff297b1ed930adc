/**
 * The console's headline flow with real parts: a model uploaded to the console's catalogue is
 * assigned to a group of two real appliance daemons; each provisions it lazily from the
 * catalogue's Range-serving URL, and a real NBD client on each reads the model's bytes while
 * the download is still running. The catalogue is reached through a real nginx that limits each
 * connection's rate (a slow link between the lab and the console), so the whole image cannot
 * have arrived by the time the host reads. One broker, one console, one nginx for the file.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import type { ApplianceRecord, CatalogueModel, CommandRecord } from '../../appliance/api/console.js';
import type { ModelList } from '../../appliance/api/models.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import type { ConsoleServer } from '../../console/server/console-server.js';
import { exited, nbdUri, snapback, startServe } from '../helpers/cli.js';
import { consoleApi, startConsoleRig } from '../helpers/console-rig.js';
import type { Mosquitto } from '../helpers/mosquitto.js';
import { makeTempDir, nbdsh, type TempDir } from '../helpers/nbd-clients.js';
import { Nginx } from '../helpers/nginx.js';
import { Prng } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1 << 20;
/** 16 regions of 1 MiB (the catalogue's manifest region size). */
const SIZE = 16 * MiB;
/** Per connection: an appliance's few parallel fetches need well over 10 s for the whole image. */
const LINK_RATE = 256 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

describe('the console provisions a group from its catalogue (real mosquitto, nginx, daemons, NBD clients)', function () {
  this.timeout(240_000);
  let dir: TempDir;
  let broker: Mosquitto;
  let nginx: Nginx;
  let server: ConsoleServer;
  let token: string;
  let base: string;
  const children: ChildProcess[] = [];

  before(async () => {
    dir = await makeTempDir('snapback-console-group-');
    // Appliances reach the catalogue through the slow link; the API (enrollment) directly.
    const port = await freePort();
    nginx = await Nginx.start(join(dir.path, 'nginx'), { root: dir.path, upstream: `http://127.0.0.1:${port}`, rateLimit: LINK_RATE });
    ({ broker, server, token, base } = await startConsoleRig(dir.path, { port, publicUrl: nginx.url('proxy', '') }));
  });

  after(async () => {
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      await exited(c);
    }
    await server?.stop();
    await broker?.stop();
    await nginx?.stop();
    await dir?.remove();
  });

  const api = <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => consoleApi<T>({ base, token }, method, path, body);
  const row = async (name: string): Promise<ApplianceRecord | undefined> => (await api<ApplianceRecord[]>('GET', '/api/appliances')).body.find((a) => a.name === name);

  /** A real appliance daemon, on a model of its own, enrolled with a code from the console. */
  async function appliance(name: string, initial: string): Promise<string> {
    const state = join(dir.path, name);
    const r = snapback(['init', '--state-dir', state, '--model', initial, '--disk', `${state}.disk`]);
    assert.equal(r.code, 0, r.stderr);
    const code = await api<{ code: string }>('POST', '/api/enroll-codes', { name });
    assert.equal(code.status, 201);
    children.push(await startServe(state, ['--management', base, '--appliance-name', name, '--enrollment-code', code.body.code]));
    await waitFor(`${name} online in the console`, async () => (await row(name))?.online === true, 60_000);
    return state;
  }

  it('a catalogue model assigned to a group is provisioned lazily by each member, whose host reads it before the download ends', async () => {
    const initial = join(dir.path, 'initial.img');
    closeSync(openSync(initial, 'w'));
    truncateSync(initial, SIZE); // all zeros, sparse: quick to set up
    assert.equal(snapback(['model', 'manifest', initial]).code, 0);
    const states = await Promise.all(['room101-a', 'room101-b'].map((n) => appliance(n, initial)));
    assert.equal((await api('POST', '/api/groups', { name: 'room101' })).status, 201);
    for (const n of ['room101-a', 'room101-b']) assert.equal((await api('POST', `/api/appliances/${n}/group`, { group: 'room101' })).status, 200);

    // The model, uploaded to the console's catalogue.
    const image = new Prng(2026).bytes(SIZE);
    const up = await fetch(`${base}api/models?name=win12`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body: image });
    assert.equal(up.status, 201, await up.clone().text());
    const model = (await up.json()) as CatalogueModel;
    assert.ok(model.url.startsWith(nginx.url('proxy', 'models/')), model.url);

    // Assigned to the group, in force at once: each member answers once its model is active.
    const res = await api<{ commands: { id: string; appliance: string }[] }>('POST', '/api/groups/room101/actions', { action: 'assign-model', model: 'win12', now: true });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    assert.deepEqual(res.body.commands.map((c) => c.appliance).sort(), ['room101-a', 'room101-b']);
    for (const c of res.body.commands) {
      const done = await waitFor(
        `${c.appliance} to answer`,
        async () => {
          const cmd = (await api<CommandRecord>('GET', `/api/commands/${c.id}`)).body;
          return cmd.state === 'succeeded' || cmd.state === 'failed' ? cmd : null;
        },
        120_000,
      );
      assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
      assert.deepEqual((done.result as { model: { id: string }; takesEffect: string }).model.id, model.id);
    }

    // Each host reads the new model's bytes (the last region, and a piece of the first; all at once)…
    const read = async (state: string, length: number, offset: number): Promise<string> =>
      (await nbdsh(`import hashlib\nh.connect_uri(${JSON.stringify(nbdUri(state))})\nprint(hashlib.sha256(h.pread(${length}, ${offset})).hexdigest())`)).trim();
    const reads = await Promise.all(states.flatMap((s) => [read(s, MiB, SIZE - MiB), read(s, 4096, 8192)]));
    assert.deepEqual(reads, states.flatMap(() => [sha(image.subarray(SIZE - MiB)), sha(image.subarray(8192, 8192 + 4096))]));
    // … while the rest of the image is still on its way (lazy, not a whole download first).
    for (const state of states) {
      const m = ((await callDaemon(join(state, 'control.sock'), 'GET', '/api/models')) as ModelList).models.find((x) => x.id === model.id);
      assert.equal(m?.active, true);
      assert.equal(m?.complete, false, 'the download had ended before the host read: the test proves nothing');
    }
    // The console's fleet table shows each member on the model, its download in progress.
    for (const n of ['room101-a', 'room101-b']) {
      const r = await waitFor(`${n}'s download in the console`, async () => {
        const x = await row(n);
        return x?.modelId === model.id && x.download !== null ? x : null;
      });
      assert.equal(r.assigned?.model, 'win12');
      assert.ok(r.download!.regionsDone < r.download!.regionsTotal);
    }
  });
});
