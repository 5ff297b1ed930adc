/**
 * Lazy provisioning end to end: `snapback init --model URL` against a real nginx, the daemon
 * serving the host (a real NBD client) while the model is still arriving, the download stalled
 * in the status when the server goes away and resuming by itself, a daemon restart in the
 * middle of the download, the model complete in the library at the end; a URL that is not
 * http(s) refused with nothing changed; and an image the library holds already refused at once
 * when a manifest names it (a URL or a file), or by the import's job once hashed when none does.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { callDaemon } from '../../appliance/cli/control-client.js';
import { modelImport } from '../../appliance/cli/model-commands.js';
import { isSnapbackError } from '../../appliance/errors.js';
import type { ModelImportJob, ModelList } from '../../appliance/api/models.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { Nginx } from '../helpers/nginx.js';
import { makeImage, makeTempDir, nbdsh, type TempDir } from '../helpers/nbd-clients.js';
import { exited, killDaemon, nbdUri, snapback, startServe } from '../helpers/cli.js';
import { nodeRequest } from '../helpers/http-harness.js';
import { waitFor } from '../helpers/wait.js';

const KiB = 1024;
const REGION = 64 * KiB;
const SIZE = 8192 * KiB; // 128 manifest regions, each ~4 s through /slow/ at 16 KiB/s
const REGIONS = SIZE / REGION;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');


/** What a state directory's models/.downloads holds (none when it is gone). */
const downloadsLeft = (state: string): string[] => (existsSync(join(state, 'models', '.downloads')) ? readdirSync(join(state, 'models', '.downloads')) : []);
describe('lazy provisioning from a URL (daemon, real nginx, real NBD client)', function () {
  this.timeout(240_000);
  let dir: TempDir;
  let root: string;
  let image: Buffer;
  let nginx: Nginx;
  let daemon: ChildProcess | null = null;

  before(async function () {
    dir = await makeTempDir('snapback-lazy-');
    root = join(dir.path, 'www');
    mkdirSync(root);
    image = await makeImage(join(root, 'model.img'), SIZE);
    image.fill(0, 4 * REGION, 6 * REGION); // two all-zero regions: not pending on a new disk
    await writeFile(join(root, 'model.img'), image);
    const m = await createManifest(join(root, 'model.img'), { regionSize: REGION });
    await m.save(manifestPathFor(join(root, 'model.img')));
    nginx = await Nginx.start(join(dir.path, 'nginx'), { root, rateLimit: 16 * KiB });
  });
  afterEach(async function () {
    daemon = await killDaemon(daemon);
    if (!nginx.running) await nginx.start();
  });
  after(async function () {
    await nginx?.stop();
    await dir?.remove();
  });

  const status = (state: string) => callDaemon(join(state, 'control.sock'), 'GET', '/api/status') as Promise<ApplianceStatus>;
  const models = (state: string) => callDaemon(join(state, 'control.sock'), 'GET', '/api/models') as Promise<ModelList>;

  /** Reads `length` bytes at `offset` from the daemon's export with nbdsh: their SHA-256, or "eio". */
  async function readExport(state: string, offset: number, length: number): Promise<string> {
    const out = await nbdsh(`
import errno, hashlib
h.connect_uri(${JSON.stringify(nbdUri(state))})
try:
    print(hashlib.sha256(h.pread(${length}, ${offset})).hexdigest())
except nbd.Error as e:
    print("eio" if e.errnum == errno.EIO else "errno %d" % e.errnum)
`);
    return out.trim();
  }

  it('a URL that is not http(s) is refused with a clear error, and nothing is created', function () {
    const state = join(dir.path, 'state-bad');
    for (const url of ['ftp://127.0.0.1/model.img', 'file:///etc/hostname']) {
      const r = snapback(['init', '--state-dir', state, '--model', url, '--disk', join(dir.path, 'disk-bad.img')]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /is not an http:\/\/ or https:\/\/ URL/);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
    assert.equal(existsSync(join(state, 'snapback.json')), false);
    assert.equal(existsSync(join(dir.path, 'disk-bad.img')), false);
    assert.deepEqual(existsSync(state) ? readdirSync(state).filter((f) => f !== 'models') : [], []);
  });

  it('init --model URL: the host reads the right bytes while the model arrives; "model download stalled" in the status when the server goes, resumed by itself; complete at the end', async function () {
    const state = join(dir.path, 'state');
    const r = snapback(['init', '--state-dir', state, '--model', nginx.url('slow', 'model.img'), '--disk', join(dir.path, 'disk.img')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${REGIONS} regions, ${REGIONS - 2} pending`), 'the zero regions of the manifest are not pending on a new disk');
    daemon = await startServe(state);

    let list = await models(state);
    assert.equal(list.models.length, 1);
    assert.equal(list.models[0]!.complete, false);
    assert.equal(list.models[0]!.active, true);
    assert.equal(list.models[0]!.download?.state, 'running');

    // the last region, fetched for the host ahead of the background download
    assert.equal(await readExport(state, SIZE - REGION, REGION), sha(image.subarray(SIZE - REGION)));
    list = await models(state);
    assert.ok(list.models[0]!.download!.regionsDone < REGIONS, 'the download is still running');
    assert.match(snapback(['model', 'list', '--state-dir', state]).stdout, new RegExp(`\\(active, downloading, \\d+ % \\(\\d+ of ${REGIONS} regions\\)\\)$`, 'm'), 'the list says the model is downloading');

    // the server goes away: a read of a missing region fails alone (EIO), never with wrong bytes
    await nginx.stop();
    assert.ok((await models(state)).models[0]!.download!.regionsDone < REGIONS);
    const reads = await Promise.all([0, 8, 16, 24].map((r) => readExport(state, r * REGION, REGION)));
    for (const [i, got] of reads.entries()) {
      const r = [0, 8, 16, 24][i]!;
      assert.ok(got === 'eio' || got === sha(image.subarray(r * REGION, (r + 1) * REGION)), `region ${r}: never wrong bytes (${got})`);
    }
    const stalled = await waitFor('the status to say the download stalled', async () => {
      const s = await status(state);
      return s.components.find((c) => c.name === 'model-download' && /model download stalled/.test(c.problem ?? ''));
    });
    assert.match(stalled.problem!, /127\.0\.0\.1/);
    assert.equal((await models(state)).models[0]!.download?.state, 'stalled');
    assert.match(snapback(['model', 'list', '--state-dir', state]).stdout, /\(active, download stalled at \d+ %/, 'the list says the download stalled');

    // back (and faster): it resumes by itself, and the model becomes complete
    await nginx.start(undefined, 1 << 20);
    await waitFor('the model to be complete', async () => (await models(state)).models[0]!.complete, 120_000, 250);
    const done = (await models(state)).models[0]!;
    assert.equal(done.download, null);
    assert.equal((await status(state)).components.find((c) => c.name === 'model-download')?.problem, null);
    assert.equal(await readExport(state, 0, SIZE), sha(image));
    await nginx.stop();
    await nginx.start(undefined, 16 * KiB); // slow again for the next tests
  });

  it('model import URL --lazy through the daemon: a restart in the middle of the download resumes from what arrived, at the rate kept', async function () {
    const state = join(dir.path, 'state2');
    await copyFile(join(root, 'model.img'), join(dir.path, 'local.img'));
    assert.equal(snapback(['init', '--state-dir', state, '--model', join(dir.path, 'local.img'), '--disk', join(dir.path, 'disk2.img')]).code, 0);
    // a second image on the server (another model)
    const other = Buffer.from(image);
    other.fill(7, 0, REGION);
    await writeFile(join(root, 'other.img'), other);
    const m = await createManifest(join(root, 'other.img'), { regionSize: REGION });
    await m.save(manifestPathFor(join(root, 'other.img')));
    daemon = await startServe(state);
    const sock = join(state, 'control.sock');
    await callDaemon(sock, 'POST', '/api/models/import', { source: nginx.url('slow', 'other.img'), name: 'other', lazy: true });
    const entry = await waitFor('the lazy model to be listed', async () => (await models(state)).models.find((x) => x.name === 'other'));
    assert.equal(entry.complete, false);
    await callDaemon(sock, 'PATCH', `/api/models/other/download`, { rateLimitBytesPerSecond: 8192 });
    await waitFor('a few regions', async () => ((await models(state)).models.find((x) => x.name === 'other')!.download?.regionsDone ?? 0) >= 2, 60_000, 250);
    const before = (await models(state)).models.find((x) => x.name === 'other')!.download!.regionsDone;
    daemon.kill('SIGTERM');
    await exited(daemon);
    daemon = await startServe(state);
    // the downloads are resumed before the API answers (a request right after the start finds them)
    const started = (await status(state)).components.map((c) => c.name);
    assert.ok(started.includes('model-download') && started.indexOf('model-download') < started.indexOf('http'), `the daemon's parts in start order: ${started.join(', ')}`);
    const after = (await models(state)).models.find((x) => x.name === 'other')!;
    assert.equal(after.complete, false);
    assert.ok(after.download!.regionsDone >= before, `resumed from ${before} regions (now ${after.download!.regionsDone})`);
    assert.equal(after.download!.rateLimitBytesPerSecond, 8192, 'the rate is kept across the restart');
    await nginx.stop(); // and back faster, for the rest
    await nginx.start(undefined, 1 << 20);
    await callDaemon(sock, 'PATCH', `/api/models/other/download`, { rateLimitBytesPerSecond: null });
    await waitFor('the model to be complete', async () => (await models(state)).models.find((x) => x.name === 'other')!.complete, 120_000, 250);
    await nginx.stop();
    await nginx.start(undefined, 16 * KiB);
    const local = await readFile(join(state, 'models', after.id, 'image'));
    assert.equal(sha(local), sha(other));
  });

  it('snapback model import URL: offline (verified region by region; without a manifest downloaded whole and hashed; over TLS with --ca), --lazy and download-rate through the daemon, and a bad scheme changes nothing', async function () {
    const state = join(dir.path, 'state3');
    await copyFile(join(root, 'model.img'), join(dir.path, 'local3.img'));
    assert.equal(snapback(['init', '--state-dir', state, '--model', join(dir.path, 'local3.img'), '--disk', join(dir.path, 'disk3.img')]).code, 0);
    const list = () => JSON.parse(snapback(['model', 'list', '--state-dir', state, '--json']).stdout) as ModelList['models'];
    const before = list();

    // a URL that is not http(s): a clear error, the library as it was
    const bad = snapback(['model', 'import', 'ftp://127.0.0.1/model.img', '--name', 'bad', '--state-dir', state]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /http:\/\/ or https:\/\//);
    assert.deepEqual(list(), before);

    // with a manifest beside it (a different image: one region changed)
    const third = Buffer.from(image);
    third.fill(9, REGION, 2 * REGION);
    await writeFile(join(root, 'third.img'), third);
    await (await createManifest(join(root, 'third.img'), { regionSize: REGION })).save(manifestPathFor(join(root, 'third.img')));
    const a = snapback(['model', 'import', nginx.url('redirect', 'third.img'), '--name', 'third', '--state-dir', state]);
    assert.equal(a.code, 0, a.stderr);
    const third3 = list().find((m) => m.name === 'third')!;
    assert.equal(a.stdout.trim().split('\n').pop(), third3.id);
    assert.equal(third3.complete, true);
    assert.deepEqual(third3.source, { kind: 'url', url: nginx.url('redirect', 'third.img') });
    assert.equal(sha(await readFile(join(state, 'models', third3.id, 'image'))), sha(third));

    // without a manifest (and from a server without Range): downloaded whole, then hashed
    const fourth = Buffer.from(image);
    fourth.fill(3, 0, 100);
    await writeFile(join(root, 'fourth.img'), fourth);
    const b = snapback(['model', 'import', nginx.url('norange', 'fourth.img'), '--name', 'fourth', '--state-dir', state]);
    assert.equal(b.code, 0, b.stderr);
    const fourth4 = list().find((m) => m.name === 'fourth')!;
    assert.equal(fourth4.complete, true);
    assert.equal(sha(await readFile(join(state, 'models', fourth4.id, 'image'))), sha(fourth));
    assert.deepEqual(downloadsLeft(state), [], 'nothing of the downloads is left');

    // the same images again under other names (with a manifest at the URL, and without): ALREADY_EXISTS naming the model
    const listed = list();
    for (const [url, name] of [[nginx.url('files', 'third.img'), 'third'], [nginx.url('norange', 'fourth.img'), 'fourth']] as const) {
      await assert.rejects(modelImport(url, { stateDir: state, name: `${name} again`, json: true }), (err: unknown) => isSnapbackError(err, 'ALREADY_EXISTS') && new RegExp(`already in the library as "${name}"`).test((err as Error).message));
    }
    assert.deepEqual(list(), listed);
    assert.deepEqual(downloadsLeft(state), [], 'nothing of the refused downloads is left');

    // over TLS with a CA of our own: refused without --ca, imported with it
    const tls = await Nginx.start(join(dir.path, 'nginx-tls3'), { root, tls: true });
    try {
      const untrusted = snapback(['model', 'import', tls.url('files', 'third.img'), '--name', 'third-tls', '--state-dir', state]);
      assert.notEqual(untrusted.code, 0);
      assert.match(untrusted.stderr, /not trusted.*--ca/);
      assert.equal(list().find((m) => m.name === 'third-tls'), undefined);
      assert.equal(snapback(['model', 'remove', 'third', '--state-dir', state]).code, 0); // the same image: one copy in the library
      const t = snapback(['model', 'import', tls.url('files', 'third.img'), '--name', 'third-tls', '--ca', tls.caFile, '--state-dir', state]);
      assert.equal(t.code, 0, t.stderr);
      assert.equal(list().find((m) => m.name === 'third-tls')?.id, third3.id);
    } finally {
      await tls.stop();
    }

    // --lazy needs the daemon: with it, listed at once (incomplete), its rate settable from the CLI
    const noDaemon = snapback(['model', 'import', nginx.url('slow', 'fifth.img'), '--name', 'fifth', '--lazy', '--state-dir', state]);
    assert.notEqual(noDaemon.code, 0);
    assert.match(noDaemon.stderr, /--lazy needs the running daemon/);
    const fifth = Buffer.from(image);
    fifth.fill(5, 0, REGION);
    await writeFile(join(root, 'fifth.img'), fifth);
    await (await createManifest(join(root, 'fifth.img'), { regionSize: REGION })).save(manifestPathFor(join(root, 'fifth.img')));
    daemon = await startServe(state);
    const c = snapback(['model', 'import', nginx.url('slow', 'fifth.img'), '--name', 'fifth', '--lazy', '--json', '--state-dir', state]);
    assert.equal(c.code, 0, c.stderr);
    const rec = JSON.parse(c.stdout.trim().split('\n').pop()!) as ModelList['models'][number];
    assert.equal(rec.complete, false);
    const rate = snapback(['model', 'download-rate', 'fifth', '64K', '--state-dir', state]);
    assert.equal(rate.code, 0, rate.stderr);
    assert.equal(list().find((m) => m.name === 'fifth')!.download?.rateLimitBytesPerSecond, 65536);
    assert.equal(snapback(['model', 'download-rate', 'fifth', 'unlimited', '--state-dir', state]).code, 0);
  });
  it('a duplicate import through the daemon: refused at once (409 ALREADY_EXISTS naming the model) when a manifest names the image, at a URL or beside a file; without a manifest the job fails once the image is hashed, and says so', async function () {
    const state = join(dir.path, 'state4');
    // the library's first model: the image served by nginx, with the manifest nginx serves beside it (the same id)
    const local = join(dir.path, 'local4.img');
    await copyFile(join(root, 'model.img'), local);
    await copyFile(manifestPathFor(join(root, 'model.img')), manifestPathFor(local));
    assert.equal(snapback(['init', '--state-dir', state, '--model', local, '--manifest', manifestPathFor(local), '--disk', join(dir.path, 'disk4.img')]).code, 0);
    daemon = await startServe(state);
    const sock = join(state, 'control.sock');
    const first = (await models(state)).models[0]!;
    const importsBefore = (await models(state)).imports.length;
    const post = (source: string, name: string) => nodeRequest({ socketPath: sock }, 'POST', '/api/models/import', { source, name });

    // a manifest names the image (at the URL, after a redirect, beside a local file): 409 at once, no job, no byte copied
    for (const source of [nginx.url('slow', 'model.img'), nginx.url('redirect', 'model.img'), local]) {
      const r = await post(source, 'again');
      assert.equal(r.status, 409, r.text);
      assert.equal((r.json as { error: string }).error, 'ALREADY_EXISTS');
      assert.match((r.json as { message: string }).message, new RegExp(`already in the library as "${first.name}" \\(id ${first.id.slice(0, 12)}`));
      assert.doesNotMatch((r.json as { message: string }).message, /hashed/);
    }
    assert.equal((await models(state)).imports.length, importsBefore, 'no import job was started');
    for (const source of [nginx.url('slow', 'model.img'), local]) {
      const cli = snapback(['model', 'import', source, '--name', 'again', '--state-dir', state]);
      assert.equal(cli.code, 1, cli.stderr);
      assert.match(cli.stderr, new RegExp(`already in the library as "${first.name}"`));
    }
    assert.equal((await models(state)).imports.length, importsBefore, 'the CLI started no import job either');
    assert.deepEqual(downloadsLeft(state), [], 'nothing was downloaded');

    // no manifest at the URL: the image is known only once downloaded and hashed, so the job fails then, saying so
    const bare = Buffer.from(image);
    bare.fill(4, 0, 100);
    await writeFile(join(root, 'bare.img'), bare);
    await copyFile(join(root, 'bare.img'), join(root, 'bare-copy.img'));
    assert.equal(snapback(['model', 'import', nginx.url('files', 'bare.img'), '--name', 'bare', '--state-dir', state]).code, 0);
    const r = await post(nginx.url('files', 'bare-copy.img'), 'bare again');
    assert.equal(r.status, 202, r.text);
    const failed = await waitFor('the duplicate import to fail', async () => {
      const j = (await callDaemon(sock, 'GET', `/api/models/imports/${(r.json as ModelImportJob).id}`)) as ModelImportJob;
      return j.state !== 'running' ? j : null;
    });
    assert.equal(failed.errorCode, 'ALREADY_EXISTS');
    assert.match(failed.error ?? '', /already in the library as "bare" .*found once the whole image was hashed: no manifest came with it/);
    const late = snapback(['model', 'import', nginx.url('files', 'bare-copy.img'), '--name', 'bare again', '--state-dir', state]);
    assert.equal(late.code, 1, late.stderr);
    assert.match(late.stderr, /already in the library as "bare" .*found once the whole image was hashed/);
    assert.deepEqual((await models(state)).models.map((m) => m.name).sort(), [first.name, 'bare'].sort());
    assert.deepEqual(downloadsLeft(state), [], 'nothing of the refused downloads is left');
  });
});
