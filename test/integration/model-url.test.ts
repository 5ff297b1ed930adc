/**
 * Models from http(s) URLs against a real nginx: Range reads, redirects, TLS with a CA of our
 * own, a server without Range support, a region served with wrong bytes, a server stopped
 * mid-download and started again, and lazy provisioning: a real NBD client (nbdsh) reading a
 * region of the model while the background download is still running.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NbdServer } from '../../appliance/nbd/index.js';
import { HttpRangeSource, RemoteError, parseModelUrl, type RetryPolicy } from '../../appliance/storage/http-range-source.js';
import { createManifest, manifestPathFor, type Manifest } from '../../appliance/storage/manifest.js';
import { fetchRemoteImage } from '../../appliance/storage/remote-manifest.js';
import { RemoteModel } from '../../appliance/storage/remote-model.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { Nginx } from '../helpers/nginx.js';
import { makeImage, makeTempDir, nbdUri, nbdsh, type TempDir } from '../helpers/nbd-clients.js';
import { waitFor } from '../helpers/wait.js';

const KiB = 1024;
const REGION = 64 * KiB;
const SIZE = 4 * 1024 * KiB; // 64 regions
const IMG = 'model.img';
const quickRetry: RetryPolicy = { attempts: 3, baseMs: 50, maxMs: 200 };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('model URLs against a real nginx', function () {
  this.timeout(120_000);
  let dir: TempDir;
  let root: string;
  let image: Buffer;
  let manifest: Manifest;
  let nginx: Nginx;
  const opened: Array<{ close(): unknown }> = [];

  before(async function () {
    dir = await makeTempDir('snapback-url-');
    root = join(dir.path, 'www');
    await mkdir(root);
    image = await makeImage(join(root, IMG), SIZE);
    manifest = await createManifest(join(root, IMG), { regionSize: REGION });
    await manifest.save(manifestPathFor(join(root, IMG)));
    nginx = await Nginx.start(join(dir.path, 'nginx'), { root, rateLimit: 16 * KiB });
  });
  afterEach(async function () {
    for (const o of opened.splice(0)) await o.close();
    if (!nginx.running) await nginx.start(root);
  });
  after(async function () {
    await nginx?.stop();
    await dir?.remove();
  });

  let n = 0;
  /** A RemoteModel of `url` with its local copy in a fresh directory. */
  async function remoteModel(url: string, options: Partial<ConstructorParameters<typeof RemoteModel>[0]> = {}, local = join(dir.path, `local-${++n}`)): Promise<{ model: RemoteModel; local: string }> {
    await mkdir(local, { recursive: true });
    const source = new HttpRangeSource(url);
    opened.push({ close: () => source.close() });
    const model = new RemoteModel({ imagePath: join(local, 'image'), presentPath: join(local, 'present'), manifest, source, readRetryBaseMs: 50, readRetryMaxMs: 200, retryBaseMs: 100, retryMaxMs: 500, saveDelayMs: 50, ...options });
    await model.open();
    opened.push(model);
    return { model, local };
  }

  /** Serves `device` on a unix socket, as the daemon's NBD server does. */
  async function serve(device: RemoteModel): Promise<string> {
    const server = new NbdServer({ device, readOnly: true });
    const sock = join(dir.path, `nbd-${++n}.sock`);
    await server.listenUnix(sock);
    opened.unshift({ close: () => server.close() });
    return nbdUri(sock);
  }

  it('a URL that is not http(s) is refused with a clear error', function () {
    for (const bad of ['ftp://127.0.0.1/model.img', 'file:///etc/passwd', 'nbd://127.0.0.1/x', 'not a url']) {
      assert.throws(
        () => parseModelUrl(bad),
        (err: unknown) => isSnapbackError(err, 'BAD_ARGUMENT') && /http:\/\/ or https:\/\/|not a URL/.test(err.message),
        bad,
      );
    }
  });

  it('reads ranges, follows redirects (two hops) and finds the manifest beside the image', async function () {
    const source = new HttpRangeSource(nginx.url('redirect2', IMG));
    opened.push({ close: () => source.close() });
    const remote = await fetchRemoteImage(source, join(dir.path, 'fetched.manifest.json'), quickRetry);
    assert.equal(remote.info.size, SIZE);
    assert.equal(remote.info.rangeSupported, true);
    assert.equal(remote.manifest?.id, manifest.id);
    const part = await source.readRange(5 * REGION + 17, 1000);
    assert.ok(part.equals(image.subarray(5 * REGION + 17, 5 * REGION + 1017)));
  });

  it('an image without a manifest beside it is found as such (to be downloaded whole and hashed)', async function () {
    await copyFile(join(root, IMG), join(root, 'bare.img'));
    const source = new HttpRangeSource(nginx.url('files', 'bare.img'));
    opened.push({ close: () => source.close() });
    const remote = await fetchRemoteImage(source, join(dir.path, 'bare.manifest.json'), quickRetry);
    assert.equal(remote.manifest, null);
    const path = join(dir.path, 'bare-download');
    assert.equal(await source.downloadTo(path, quickRetry), SIZE);
    assert.equal(sha(await readFile(path)), sha(image));
  });

  it('a server without Range support: detected, a region fetch says so clearly, and a whole download works', async function () {
    const source = new HttpRangeSource(nginx.url('norange', IMG));
    opened.push({ close: () => source.close() });
    const info = await source.probe();
    assert.equal(info.rangeSupported, false);
    assert.equal(info.size, SIZE);
    await assert.rejects(source.readRange(0, REGION), (err: unknown) => err instanceof RemoteError && !err.retryable && /does not support Range requests/.test(err.message));
    const path = join(dir.path, 'norange-download');
    assert.equal(await source.downloadTo(path, quickRetry), SIZE);
    assert.equal(sha(await readFile(path)), sha(image));
  });

  it('a download (every region verified on arrival) completes, and the local copy is the image', async function () {
    const { model, local } = await remoteModel(nginx.url('files', IMG), { parallel: 4 });
    model.startDownload();
    await model.whenComplete();
    assert.equal(model.progress().state, 'done');
    assert.equal(model.progress().regionsDone, manifest.regionCount);
    assert.equal(sha(await readFile(join(local, 'image'))), sha(image));
    assert.equal(model.mismatches, 0);
  });

  it('regions are written with direct I/O where they are aligned for it and through the page cache where not (small regions, a short last region): the local copy is the image', async function () {
    // 16 KiB regions (their memory is not page-aligned) and a last region of 1000 bytes
    const odd = Buffer.concat([image.subarray(0, 20 * 16 * KiB), image.subarray(0, 1000)]);
    await writeFile(join(root, 'odd.img'), odd);
    for (const regionSize of [16 * KiB, REGION]) {
      const m = await createManifest(join(root, 'odd.img'), { regionSize });
      const { model, local } = await remoteModel(nginx.url('files', 'odd.img'), { manifest: m, parallel: 2 });
      model.startDownload();
      await model.whenComplete();
      assert.equal(model.mismatches, 0);
      assert.equal(sha(await readFile(join(local, 'image'))), sha(odd), `regions of ${regionSize / KiB} KiB`);
      // read back through the model (the page cache and the direct writes agree)
      assert.ok((await model.read(0, odd.length)).equals(odd));
    }
  });

  it('the background download asks for several contiguous missing regions in one request, each verified', async function () {
    const { model, local } = await remoteModel(nginx.url('files', IMG), { parallel: 2, requestBytes: 16 * REGION });
    const before = (await nginx.requests()).length;
    model.startDownload();
    await model.whenComplete();
    const ranges = (await nginx.requests())
      .slice(before)
      .map((q) => /^bytes=(\d+)-(\d+)$/.exec(q.range ?? ''))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => (Number(m[2]) + 1 - Number(m[1])) / REGION);
    assert.deepEqual(ranges, Array(manifest.regionCount / 16).fill(16), 'one request per 16 regions');
    assert.equal(model.progress().regionsDone, manifest.regionCount);
    assert.equal(sha(await readFile(join(local, 'image'))), sha(image));
  });

  it('a new download rate takes effect at once: workers waiting for their turn under the old one go on under the new one', async function () {
    // 1 byte per second: after the first regions each worker's turn is days away
    const { model, local } = await remoteModel(nginx.url('files', IMG), { parallel: 2, rateLimit: 1 });
    model.startDownload();
    const started = Date.now();
    while (model.progress().regionsDone < 1) {
      if (Date.now() - started > 60_000) throw new Error(`no region arrived: ${JSON.stringify(model.progress())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(model.progress().regionsDone < manifest.regionCount, 'paced: the rest waits for its turn');
    model.setRateLimit(null);
    await model.whenComplete();
    assert.equal(model.progress().regionsDone, manifest.regionCount);
    assert.equal(sha(await readFile(join(local, 'image'))), sha(image));
  });

  describe('over TLS with a CA of our own', function () {
    let tls: Nginx;
    before(async function () {
      tls = await Nginx.start(join(dir.path, 'nginx-tls'), { root, tls: true });
    });
    after(async function () {
      await tls?.stop();
    });

    it('is refused without the CA (certificate not trusted, not retried) and works with it', async function () {
      const untrusted = new HttpRangeSource(tls.url('files', IMG));
      opened.push({ close: () => untrusted.close() });
      await assert.rejects(untrusted.probe(), (err: unknown) => err instanceof RemoteError && !err.retryable && /not trusted.*--ca/.test(err.message));
      const trusted = new HttpRangeSource(tls.url('redirect', IMG), { caFile: tls.caFile });
      opened.push({ close: () => trusted.close() });
      const remote = await fetchRemoteImage(trusted, join(dir.path, 'tls.manifest.json'), quickRetry);
      assert.equal(remote.manifest?.id, manifest.id);
      const part = await trusted.readRange(SIZE - 100, 100);
      assert.ok(part.equals(image.subarray(SIZE - 100)));
    });

    it('streams the whole image in region pieces over TLS, the socket held while pieces are handled, every byte right', async function () {
      const source = new HttpRangeSource(tls.url('files', IMG), { caFile: tls.caFile });
      opened.push({ close: () => source.close() });
      const got: Buffer[] = [];
      // one piece handled at a time, slowly: TLS hands over what it decrypted even while the socket waits
      await source.streamRange(0, SIZE, REGION, async (i, bytes) => {
        got[i] = Buffer.from(bytes);
        if (i % 8 === 0) await new Promise((r) => setTimeout(r, 5));
      }, undefined, { depth: 1, reuse: true });
      assert.equal(sha(Buffer.concat(got)), sha(image));
    });
  });

  it('lazy: an NBD client reads the last regions, ahead of the download, while the download is still running', async function () {
    // the background download crawls through /slow/ (nginx's limit_rate, 16 KiB/s) one region at a time
    const { model } = await remoteModel(nginx.url('slow', IMG), { parallel: 1 });
    model.startDownload();
    const uri = await serve(model);
    const out = await nbdsh(`
import hashlib
h.connect_uri(${JSON.stringify(uri)})
print(hashlib.sha256(h.pread(${3 * REGION}, ${SIZE - 3 * REGION})).hexdigest())
print(hashlib.sha256(h.pread(${REGION}, ${REGION / 2})).hexdigest())
`);
    const [tail, part] = out.trim().split('\n');
    assert.equal(tail, sha(image.subarray(SIZE - 3 * REGION)));
    assert.equal(part, sha(image.subarray(REGION / 2, REGION / 2 + REGION)));
    const p = model.progress();
    assert.equal(p.state, 'running');
    assert.ok(p.regionsDone < p.regionsTotal, `the download was still running (${p.regionsDone} of ${p.regionsTotal})`);
    assert.ok(model.isPresent(manifest.regionCount - 1), 'the region read is kept');
  });

  it('network loss: a read of a missing region fails with EIO for that request only, the download says stalled, then resumes by itself', async function () {
    const { model } = await remoteModel(nginx.url('files', IMG), { parallel: 2, rateLimit: 256 * KiB });
    model.startDownload();
    await waitFor('a few regions to arrive', () => model.progress().regionsDone >= 2);
    const uri = await serve(model);
    await nginx.stop();
    const out = await nbdsh(`
import errno, hashlib
h.connect_uri(${JSON.stringify(uri)})
try:
    h.pread(4096, ${SIZE - 4096})
    print("read-ok")
except nbd.Error as e:
    print("eio" if e.errnum == errno.EIO else "errno %d" % e.errnum)
print(hashlib.sha256(h.pread(4096, 0)).hexdigest())
`);
    const [missing, present] = out.trim().split('\n');
    assert.equal(missing, 'eio');
    assert.equal(present, sha(image.subarray(0, 4096)), 'a region already local is still served on the same connection');
    await waitFor('the download to say stalled', () => model.progress().state === 'stalled');
    assert.match(model.progress().lastError ?? '', /127\.0\.0\.1/);
    await nginx.start();
    model.setRateLimit(null);
    await model.whenComplete();
    assert.equal(model.progress().state, 'done');
    assert.equal(model.progress().lastError, null);
    assert.equal(sha(await model.read(0, SIZE)), sha(image));
  });

  it('a restart mid-download resumes from the regions already present (durable bitmap), and never refetches them', async function () {
    const url = nginx.url('files', IMG);
    const first = await remoteModel(url, { parallel: 2, rateLimit: 512 * KiB });
    first.model.startDownload();
    await waitFor('part of the download', () => first.model.progress().regionsDone >= 8);
    await first.model.close();
    const kept = first.model.progress().regionsDone;
    assert.ok(kept < manifest.regionCount);
    const second = await remoteModel(url, { parallel: 4 }, first.local);
    assert.equal(second.model.progress().regionsDone, kept, 'every region present at close is trusted after the restart');
    const presentAtRestart = Array.from({ length: manifest.regionCount }, (_, r) => second.model.isPresent(r));
    const before = (await nginx.requests()).length;
    second.model.startDownload();
    await second.model.whenComplete();
    const refetched = (await nginx.requests())
      .slice(before)
      .map((q) => Number(/^bytes=(\d+)-/.exec(q.range ?? '')?.[1] ?? -1) / REGION)
      .filter((r) => presentAtRestart[r] === true);
    assert.deepEqual(refetched, [], 'no region present at the restart was fetched again');
    assert.equal(sha(await readFile(join(first.local, 'image'))), sha(image));
  });

  it('a region served with wrong bytes is detected, never served or kept, and fetched again from the right source', async function () {
    const BAD = 7;
    const badRoot = join(dir.path, 'www-bad');
    await mkdir(badRoot, { recursive: true });
    const corrupt = Buffer.from(image);
    corrupt[BAD * REGION + 123] = corrupt[BAD * REGION + 123]! ^ 0xff;
    await writeFile(join(badRoot, IMG), corrupt);
    await nginx.stop();
    await nginx.start(badRoot);
    const { model, local } = await remoteModel(nginx.url('files', IMG));
    const uri = await serve(model);
    const out = await nbdsh(`
import errno, hashlib
h.connect_uri(${JSON.stringify(uri)})
try:
    h.pread(4096, ${BAD * REGION})
    print("read-ok")
except nbd.Error as e:
    print("eio" if e.errnum == errno.EIO else "errno %d" % e.errnum)
print(hashlib.sha256(h.pread(4096, ${(BAD + 1) * REGION})).hexdigest())
`);
    const [bad, good] = out.trim().split('\n');
    assert.equal(bad, 'eio', 'the wrong bytes were never served');
    assert.equal(good, sha(image.subarray((BAD + 1) * REGION, (BAD + 1) * REGION + 4096)));
    assert.ok(model.mismatches >= 1);
    assert.equal(model.isPresent(BAD), false, 'the bad region was not kept');
    assert.match(model.progress().lastError ?? '', /does not match its manifest/);
    const onDisk = await readFile(join(local, 'image'));
    assert.ok(onDisk.subarray(BAD * REGION, (BAD + 1) * REGION).every((b) => b === 0), 'nothing of the bad region was written');
    // the right file under the same URL again: fetched again, verified, served
    await nginx.stop();
    await nginx.start(root);
    const again = await model.read(BAD * REGION, REGION);
    assert.ok(again.equals(image.subarray(BAD * REGION, (BAD + 1) * REGION)));
    assert.equal(model.isPresent(BAD), true);
    assert.equal(model.progress().lastError, null);
  });
});
