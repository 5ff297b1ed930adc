/**
 * Activating a model before it is downloaded: a daemon on a local model A, `model import URL
 * --lazy` of B from a real nginx (slow, so its download is still running), `model activate B
 * --now`, and a real NBD client reading regions of B that have not arrived yet (fetched first,
 * B's bytes). Switching back to A keeps B's download going, and activating B again takes that
 * download over; B then completes in the library and the host reads all of B.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { callDaemon } from '../../appliance/cli/control-client.js';
import type { ModelList } from '../../appliance/api/models.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { Nginx } from '../helpers/nginx.js';
import { makeImage, makeTempDir, nbdsh, type TempDir } from '../helpers/nbd-clients.js';
import { exited, nbdUri, snapback, startServe } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const KiB = 1024;
const REGION = 64 * KiB;
const SIZE = 8192 * KiB; // 128 regions: a host read ~4 s through /slow/ at 16 KiB/s
const REGIONS = SIZE / REGION;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('activating a lazily provisioned model before it is downloaded (daemon, real nginx, real NBD client)', function () {
  this.timeout(240_000);
  let dir: TempDir;
  let root: string;
  let a: Buffer;
  let b: Buffer;
  let nginx: Nginx;
  let daemon: ChildProcess | null = null;

  before(async function () {
    dir = await makeTempDir('snapback-lazy-activate-');
    root = join(dir.path, 'www');
    mkdirSync(root);
    a = await makeImage(join(dir.path, 'a.img'), SIZE);
    // B: A with its last 16 regions and region 3 changed (what the switch restores)
    b = Buffer.from(a);
    b.fill(0xb0, SIZE - 16 * REGION);
    b.fill(0x3b, 3 * REGION, 4 * REGION);
    await writeFile(join(root, 'b.img'), b);
    await (await createManifest(join(root, 'b.img'), { regionSize: REGION })).save(manifestPathFor(join(root, 'b.img')));
    nginx = await Nginx.start(join(dir.path, 'nginx'), { root, rateLimit: 16 * KiB });
  });
  after(async function () {
    if (daemon) {
      daemon.kill('SIGKILL');
      await exited(daemon);
    }
    await nginx?.stop();
    await dir?.remove();
  });

  it('model activate B --now while B is still arriving: the host reads B at once (regions not here yet fetched first), switching away keeps its download, and B completes', async function () {
    const state = join(dir.path, 'state');
    await copyFile(join(dir.path, 'a.img'), join(dir.path, 'a-model.img'));
    // the regions of B's manifest, so that the switch compares the two region by region
    await (await createManifest(join(dir.path, 'a-model.img'), { regionSize: REGION })).save(manifestPathFor(join(dir.path, 'a-model.img')));
    const init = snapback(['init', '--state-dir', state, '--model', join(dir.path, 'a-model.img'), '--disk', join(dir.path, 'disk.img')]);
    assert.equal(init.code, 0, init.stderr);
    daemon = await startServe(state);
    const models = async () => ((await callDaemon(join(state, 'control.sock'), 'GET', '/api/models')) as ModelList).models;
    const modelB = async () => (await models()).find((m) => m.name === 'B')!;
    const status = () => callDaemon(join(state, 'control.sock'), 'GET', '/api/status') as Promise<ApplianceStatus>;
    const read = async (offset: number, length: number): Promise<string> =>
      (
        await nbdsh(`
import hashlib
h.connect_uri(${JSON.stringify(nbdUri(state))})
print(hashlib.sha256(h.pread(${length}, ${offset})).hexdigest())
`)
      ).trim();

    const idA = (await status()).model.id;
    const imp = snapback(['model', 'import', nginx.url('slow', 'b.img'), '--name', 'B', '--lazy', '--state-dir', state]);
    assert.equal(imp.code, 0, imp.stderr);
    assert.equal((await modelB()).complete, false);
    // the background download slowed (one region every 16 s) so that it is still running throughout
    assert.equal(snapback(['model', 'download-rate', 'B', '4K', '--state-dir', state]).code, 0);

    const act = snapback(['model', 'activate', 'B', '--now', '--state-dir', state]);
    assert.equal(act.code, 0, act.stderr);
    assert.match(act.stdout, /is active; 17 regions are restored from it/, 'planned from B\'s manifest: only the regions that differ');
    const st = await status();
    assert.equal(st.model.name, 'B');
    let listed = await modelB();
    assert.equal(listed.active, true);
    assert.equal(listed.complete, false);
    assert.equal(listed.download?.state, 'running', 'the download of the import goes on');

    // regions the background download (front to back, ~4 s each) has not reached: fetched for the host first
    for (const r of [REGIONS - 1, REGIONS - 9, 3]) {
      assert.equal(await read(r * REGION, REGION), sha(b.subarray(r * REGION, (r + 1) * REGION)), `region ${r} reads as B`);
    }
    listed = await modelB();
    assert.ok(listed.download && listed.download.regionsDone < REGIONS, 'the download is still running');

    // back to A: B keeps downloading
    const back = snapback(['model', 'activate', idA, '--now', '--state-dir', state]);
    assert.equal(back.code, 0, back.stderr);
    assert.equal((await status()).model.id, idA);
    assert.equal(await read(3 * REGION, REGION), sha(a.subarray(3 * REGION, 4 * REGION)));
    const kept = (await modelB()).download;
    assert.ok(kept, `B is still downloading after the switch away: ${JSON.stringify(await modelB())}`);
    await waitFor('B to go on downloading', async () => ((await modelB()).download?.regionsDone ?? REGIONS) > kept.regionsDone, 60_000, 250);

    // B again (its running download taken over), then faster: B completes while in force
    const again = snapback(['model', 'activate', 'B', '--now', '--state-dir', state]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((await modelB()).download?.state, 'running');
    assert.equal((await modelB()).download?.rateLimitBytesPerSecond, 4096, 'the same download, at its rate');
    assert.equal(snapback(['model', 'download-rate', 'B', 'unlimited', '--state-dir', state]).code, 0);
    await nginx.stop();
    await nginx.start(undefined, 1 << 20);
    await waitFor('B to be complete', async () => (await modelB()).complete, 120_000, 250);
    listed = await modelB();
    assert.equal(listed.download, null);
    assert.equal(listed.active, true);
    assert.equal(await read(0, SIZE), sha(b));
  });
});
