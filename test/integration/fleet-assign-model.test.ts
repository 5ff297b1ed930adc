/**
 * assign-model end to end on the appliance's side: the console (an MQTT 5 client with the
 * console's account on a real mosquitto) names a model by its URL on a real nginx; the real
 * daemon imports it into its library and activates it, and the host (a real NBD client) then
 * reads the new model's bytes. Assigning it again reuses it.
 */
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import mqtt, { type MqttClient } from 'mqtt';
import type { AuditEntry } from '../../appliance/api/audit.js';
import type { ApplianceState, FleetResponse } from '../../appliance/api/fleet.js';
import type { ModelList } from '../../appliance/api/models.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { exited, nbdUri, snapback, startServe } from '../helpers/cli.js';
import { fleetAcl, Mosquitto } from '../helpers/mosquitto.js';
import { makeTempDir, nbdsh, type TempDir } from '../helpers/nbd-clients.js';
import { Nginx } from '../helpers/nginx.js';
import { Prng } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const KiB = 1024;
const REGION = 64 * KiB;
const SIZE = 4096 * KiB;
const USERS = { console: 'console-secret', lab1: 'lab1-secret' };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('fleet: assign-model (real mosquitto, real nginx, real daemon and NBD client)', function () {
  this.timeout(240_000);
  let dir: TempDir;
  let nginx: Nginx;
  let broker: Mosquitto;
  let daemon: ChildProcess | null = null;
  let consoleClient: MqttClient | null = null;
  let next: Buffer;

  before(async () => {
    dir = await makeTempDir('snapback-fleet-assign-');
    const root = join(dir.path, 'www');
    mkdirSync(root);
    next = new Prng(2026).bytes(SIZE);
    writeFileSync(join(root, 'win12.img'), next);
    const m = await createManifest(join(root, 'win12.img'), { regionSize: REGION });
    await m.save(manifestPathFor(join(root, 'win12.img')));
    nginx = await Nginx.start(join(dir.path, 'nginx'), { root, rateLimit: 64 * KiB });
    broker = await Mosquitto.start({ users: USERS, acl: fleetAcl('console') });
  });
  after(async () => {
    await consoleClient?.endAsync(true).catch(() => undefined);
    if (daemon) {
      daemon.kill('SIGKILL');
      await exited(daemon);
    }
    await broker?.stop();
    await nginx?.stop();
    await dir?.remove();
  });

  it('the appliance imports the URL, activates it now, answers, and the host reads the new model; assigning it again reuses it', async () => {
    const model = join(dir.path, 'model.img');
    writeFileSync(model, new Prng(1).bytes(SIZE));
    assert.equal(snapback(['model', 'manifest', model, '--region-size', '64K']).code, 0);
    const state = join(dir.path, 'state');
    const r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir.path, 'disk.img'), '--region-size', '64K']);
    assert.equal(r.code, 0, r.stderr);
    const pw = join(dir.path, 'lab1.password');
    writeFileSync(pw, USERS.lab1);
    daemon = await startServe(state, ['--management', broker.url, '--appliance-name', 'lab1', '--management-username', 'lab1', '--management-password-file', pw]);

    const answers = new Map<string, FleetResponse>();
    const states: ApplianceState[] = [];
    consoleClient = await mqtt.connectAsync(broker.url, { protocolVersion: 5, username: 'console', password: USERS.console });
    consoleClient.on('message', (topic, payload) => {
      if (topic === 'snapback/lab1/response') {
        const a = JSON.parse(payload.toString()) as FleetResponse;
        answers.set(a.id, a);
      } else if (topic === 'snapback/lab1/state') states.push(JSON.parse(payload.toString()) as ApplianceState);
    });
    await consoleClient.subscribeAsync(['snapback/lab1/response', 'snapback/lab1/state'], { qos: 1 });
    await waitFor('lab1 state', () => states.length > 0);
    const assign = async (): Promise<FleetResponse> => {
      const id = randomUUID();
      await consoleClient!.publishAsync('snapback/lab1/command', JSON.stringify({ id, action: 'assign-model', args: { url: nginx.url('files', 'win12.img'), name: 'win12', lazy: true, now: true } }), {
        qos: 1,
        properties: { responseTopic: 'snapback/lab1/response', correlationData: Buffer.from(id) },
      });
      return waitFor(`the answer to ${id}`, () => answers.get(id), 120_000);
    };

    const a = await assign();
    assert.equal(a.ok, true, JSON.stringify(a));
    const result = a.result as { model: { name: string; id: string }; takesEffect: string; imported: boolean };
    assert.deepEqual([result.model.name, result.takesEffect, result.imported], ['win12', 'now', true]);
    const s = (await callDaemon(join(state, 'control.sock'), 'GET', '/api/status')) as ApplianceStatus;
    assert.equal(s.model.id, result.model.id);

    // The host reads the new model's bytes.
    const read = async (offset: number): Promise<string> =>
      (await nbdsh(`import hashlib\nh.connect_uri(${JSON.stringify(nbdUri(state))})\nprint(hashlib.sha256(h.pread(${REGION}, ${offset})).hexdigest())`)).trim();
    assert.equal(await read(SIZE - REGION), sha(next.subarray(SIZE - REGION)));
    assert.equal(await read(0), sha(next.subarray(0, REGION)));
    const list = (await callDaemon(join(state, 'control.sock'), 'GET', '/api/models')) as ModelList;
    assert.equal(list.models.find((m) => m.name === 'win12')?.active, true);

    // The fleet sees it: the retained state names the new model.
    await waitFor('the state naming win12', () => states.at(-1)?.model.name === 'win12');
    const audit = ((await callDaemon(join(state, 'control.sock'), 'GET', '/api/audit?limit=1000')) as { entries: AuditEntry[] }).entries;
    const entry = audit.find((e) => e.action === 'model.assign');
    assert.equal(entry?.actor, 'console');
    assert.equal(entry?.details?.model, result.model.id);

    // The same assignment again (a console re-sending a group's): the model is reused, not imported twice.
    const again = await assign();
    assert.equal(again.ok, true, JSON.stringify(again));
    assert.equal((again.result as { imported: boolean }).imported, false);
    const after = (await callDaemon(join(state, 'control.sock'), 'GET', '/api/models')) as ModelList;
    assert.equal(after.models.filter((m) => m.name === 'win12').length, 1);
  });
});
