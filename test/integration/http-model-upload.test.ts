/**
 * Uploading a model through the API of the real daemon (`snapback serve`), over its TCP listener
 * with a web UI login: the image streams into the library as an import job whose progress the
 * list shows, its manifest is the one hashing the file gives, and it is audited. Bad uploads —
 * cut off mid-way, no length, a name or an image already in the library, a manifest it does not
 * match, a disk too small or filling during the upload (a real tmpfs) — each get a clear error
 * and leave the library, the active model, the write log and the state directory as they were.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MANIFEST_HASH, createManifest } from '../../appliance/storage/manifest.js';
import { exited, snapback, startServe, webUiUrl } from '../helpers/cli.js';
import { Client, PASSWORD, replyOf, type Reply } from '../helpers/http-harness.js';
import { fillUp, Mounts } from '../helpers/mounts.js';
import { patternBytes } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const MIB = 1 << 20;

/** A PUT of a raw body the test sends piece by piece (or cuts off). */
function startUpload(base: string, path: string, headers: Record<string, string>): { req: ClientRequest; reply: Promise<Reply> } {
  const u = new URL(base + path);
  let req!: ClientRequest;
  const reply = new Promise<Reply>((resolve, reject) => {
    // agent: false: every upload on a connection of its own. An upload the daemon refused early
    // leaves its connection with a body the daemon still drains; a later upload reusing that
    // kept-alive connection would be read as the rest of it (and cut off: EPIPE).
    req = httpRequest({ host: u.hostname, port: u.port, agent: false, method: 'PUT', path: u.pathname + u.search, headers: { Accept: 'application/json', ...headers } }, (res) => {
      replyOf(res).then(resolve, reject);
    });
    req.on('error', reject);
  });
  return { req, reply };
}

/** Writes `data` into the request, waiting for the socket to take it; stops when the server has answered or closed. */
async function send(req: ClientRequest, data: Buffer): Promise<void> {
  let over = false;
  const stop = (): void => {
    over = true;
  };
  req.once('response', stop);
  req.once('close', stop);
  for (let i = 0; i < data.length && !over && !req.destroyed; i += MIB) {
    if (!req.write(data.subarray(i, i + MIB))) {
      await new Promise<void>((r) => {
        const done = (): void => {
          req.off('drain', done).off('response', done).off('close', done);
          r();
        };
        req.once('drain', done).once('response', done).once('close', done);
      });
    }
  }
  req.off('response', stop).off('close', stop);
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('uploading a model through the API of the real daemon', function () {
  this.timeout(180_000);
  let dir: string;
  let state: string;
  let daemon: ChildProcess | null = null;
  let client: Client;
  let base: string;
  const mounts = new Mounts();

  /** A state directory with one 8 MiB model ("lab-image"), a daemon on it, and a login. */
  async function start(stateDir: string): Promise<void> {
    state = stateDir;
    const model = join(dir, 'model.img');
    writeFileSync(model, patternBytes(8 * MIB, 1));
    assert.equal(snapback(['model', 'manifest', model, '--name', 'lab-image']).code, 0);
    const r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'disk.img'), '--region-size', '64K']);
    assert.equal(r.code, 0, r.stderr);
    daemon = await startServe(state);
    base = await webUiUrl(daemon);
    client = new Client(base);
    assert.equal((await client.setup(PASSWORD)).status, 201);
    // The restore the daemon's start began (init left every region pending) ends before anything is compared.
    await waitFor('the first restore', async () => (await client.req('GET', '/api/status')).json.regions.pending === 0);
  }

  const headers = (size: number): Record<string, string> => ({ 'Content-Type': 'application/octet-stream', 'Content-Length': String(size), Cookie: client.cookie!, 'X-CSRF-Token': client.csrf! });
  const upload = async (query: string, body: Buffer): Promise<Reply> => {
    const u = startUpload(base, `/api/models/upload?${query}`, headers(body.length));
    await send(u.req, body);
    u.req.end();
    return u.reply;
  };
  const list = async (): Promise<any> => (await client.req('GET', '/api/models')).json;

  /** What must not change when an upload fails. */
  const snapshot = async () => ({
    models: readdirSync(join(state, 'models')).sort(),
    staging: readdirSync(join(state, 'models', '.staging')),
    log: sha(readFileSync(join(state, 'write-log.bin'))),
    config: readFileSync(join(state, 'snapback.json'), 'utf8'),
    active: (await client.req('GET', '/api/status')).json.model.id,
    names: (await list()).models.map((m: any) => `${m.name}${m.active ? '*' : ''}`),
  });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-upload-'));
  });
  afterEach(async () => {
    if (daemon) {
      daemon.kill('SIGTERM');
      await exited(daemon);
      daemon = null;
    }
    mounts.unmountAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it('streams an upload into the library as an import job with progress; the model is the file, hashed the same way; audited', async () => {
    await start(join(dir, 'state'));
    const bytes = patternBytes(12 * MIB + 4321, 2);
    bytes.fill(0, 4 * MIB, 8 * MIB); // zero chunks too
    writeFileSync(join(dir, 'up.img'), bytes);
    const u = startUpload(base, '/api/models/upload?name=updated&fileName=up.img', headers(bytes.length));
    await send(u.req, bytes.subarray(0, 9 * MIB));
    // While it arrives, the list shows it as an import job, with the bytes written so far.
    const job = await waitFor('the upload listed with progress', async () => (await list()).imports.find((j: any) => j.name === 'updated' && j.state === 'running' && j.bytesDone >= 4 * MIB));
    assert.deepEqual(job.source, { kind: 'upload', fileName: 'up.img' });
    assert.equal(job.bytesTotal, bytes.length);
    assert.ok(!(await list()).models.some((m: any) => m.name === 'updated'), 'not a model before it is complete');
    await send(u.req, bytes.subarray(9 * MIB));
    u.req.end();
    const r = await u.reply;
    assert.equal(r.status, 201, r.text);
    const want = await createManifest(join(dir, 'up.img'), { regionSize: MIB, hash: DEFAULT_MANIFEST_HASH });
    assert.equal(r.json.id, want.id);
    assert.equal(r.json.size, bytes.length);
    assert.deepEqual(r.json.source, { kind: 'upload', fileName: 'up.img' });
    assert.equal(r.json.active, false);
    assert.ok(readFileSync(join(state, 'models', want.id, 'image')).equals(bytes), 'the library holds the uploaded bytes');
    const done = (await list()).imports.find((j: any) => j.id === job.id);
    assert.equal(done.state, 'done');
    assert.equal(done.modelId, want.id);
    const audit = (await client.req('GET', '/api/audit?limit=1')).json.entries[0];
    assert.equal(audit.action, 'model.upload');
    assert.equal(audit.actor, 'admin');
    assert.equal(audit.details.model, want.id);

    // With the manifest it must match (its id, region size and hash): accepted when it does.
    writeFileSync(join(dir, 'small.img'), bytes.subarray(0, 2 * MIB));
    const m64 = await createManifest(join(dir, 'small.img'), { regionSize: 64 << 10, hash: 'sha1' });
    const r2 = await upload(`name=small&manifestId=${m64.id}&regionSize=65536&hash=sha1`, bytes.subarray(0, 2 * MIB));
    assert.equal(r2.status, 201, r2.text);
    assert.equal(r2.json.id, m64.id);
    assert.equal(r2.json.regionSize, 65536);

    // The web UI's security applies: no CSRF token, another content type, no login.
    const noCsrf = startUpload(base, '/api/models/upload?name=x', { ...headers(5), 'X-CSRF-Token': 'nope' });
    noCsrf.req.end('hello');
    assert.equal((await noCsrf.reply).status, 403);
    const json = startUpload(base, '/api/models/upload?name=x', { ...headers(2), 'Content-Type': 'application/json' });
    json.req.end('{}');
    assert.equal((await json.reply).status, 415);
    const anon = startUpload(base, '/api/models/upload?name=x', { 'Content-Type': 'application/octet-stream', 'Content-Length': '5' });
    anon.req.end('hello');
    assert.equal((await anon.reply).status, 401);
  });

  it('a cut-off upload, no length, a name or an image already there, a manifest mismatch: each a clear error, nothing changed', async () => {
    await start(join(dir, 'state'));
    const bytes = patternBytes(12 * MIB, 3);
    const before = await snapshot();
    assert.deepEqual(before.names, ['lab-image*']);

    // The connection lost half-way: the job fails saying so.
    const cut = startUpload(base, '/api/models/upload?name=cut', headers(bytes.length));
    cut.reply.catch(() => undefined);
    await send(cut.req, bytes.subarray(0, 5 * MIB));
    await waitFor('the upload under way', async () => (await list()).imports.some((j: any) => j.name === 'cut' && j.state === 'running'));
    cut.req.destroy();
    const failed = await waitFor('the cut-off upload failed', async () => (await list()).imports.find((j: any) => j.name === 'cut' && j.state === 'failed'));
    assert.match(failed.error, /^the upload was cut off after \d+ of 12582912 bytes; nothing was imported$/);

    // No Content-Length (chunked): refused before anything is read.
    const { 'Content-Length': _, ...noLength } = headers(0);
    const chunked = startUpload(base, '/api/models/upload?name=chunked', { ...noLength, 'Transfer-Encoding': 'chunked' });
    chunked.req.end(bytes.subarray(0, MIB));
    const c = await chunked.reply;
    assert.equal(c.status, 411, c.text);
    assert.equal(c.json.error, 'LENGTH_REQUIRED');

    // A name in use.
    const dupName = await upload('name=lab-image', bytes);
    assert.equal(dupName.status, 409);
    assert.equal(dupName.json.error, 'ALREADY_EXISTS');
    assert.match(dupName.json.message, /the name "lab-image" is taken/);

    // The same image as a model already there, under another name.
    const dupImage = await upload('name=again', patternBytes(8 * MIB, 1));
    assert.equal(dupImage.status, 409, dupImage.text);
    assert.match(dupImage.json.message, /already in the library as "lab-image"/);

    // A manifest the bytes do not match.
    writeFileSync(join(dir, 'other.img'), patternBytes(12 * MIB, 4));
    const other = await createManifest(join(dir, 'other.img'), { regionSize: MIB, hash: 'sha256' });
    const mismatch = await upload(`name=mismatch&manifestId=${other.id}`, bytes);
    assert.equal(mismatch.status, 400, mismatch.text);
    assert.equal(mismatch.json.error, 'MANIFEST_INVALID');
    assert.match(mismatch.json.message, /does not match its manifest.*nothing was imported/);

    // A bad region size with a manifest.
    const badRegion = await upload(`name=bad&manifestId=${other.id}&regionSize=1000`, bytes.subarray(0, MIB));
    assert.equal(badRegion.status, 400);
    assert.match(badRegion.json.message, /regionSize 1000 is not a power of two/);

    assert.deepEqual(await snapshot(), before);
    const actions = (await client.req('GET', '/api/audit?limit=10')).json.entries.map((e: any) => e.action);
    assert.ok(actions.filter((a: string) => a === 'model.upload-failed').length >= 5, actions.join(', '));
    assert.ok(!actions.includes('model.upload'));
  });

  it('a disk too small is refused before a byte is written; a disk that fills during the upload ends it with NO_SPACE; nothing left', async () => {
    // A real small filesystem for the state directory.
    const fs = mounts.tmpfs(join(dir, 'statefs'), '48m');
    await start(join(fs, 'state'));
    const before = await snapshot();

    const tooBig = await upload('name=big', patternBytes(40 * MIB, 5));
    assert.equal(tooBig.status, 507, tooBig.text);
    assert.equal(tooBig.json.error, 'NO_SPACE');
    assert.match(tooBig.json.message, /not enough free space/);

    // Room for it at the start; then something else fills the disk.
    const bytes = patternBytes(12 * MIB, 6);
    const u = startUpload(base, '/api/models/upload?name=fills', headers(bytes.length));
    await send(u.req, bytes.subarray(0, 2 * MIB));
    await waitFor('the upload under way', async () => (await list()).imports.some((j: any) => j.name === 'fills' && j.state === 'running'));
    const filler = fillUp(fs);
    await send(u.req, bytes.subarray(2 * MIB)).catch(() => undefined);
    u.req.end();
    const r = await u.reply;
    assert.equal(r.status, 507, r.text);
    assert.equal(r.json.error, 'NO_SPACE');
    // the filler may win before the upload's own space check (made once its job is listed) or after it, at a write
    assert.match(r.json.message, /no space left|not enough free space for the model/);
    rmSync(filler);
    assert.deepEqual(await snapshot(), before);
  });
});
