/**
 * The model library's HTTP API on a real daemon (the web UI's and scripts' way in): a login is
 * needed; an import runs as a job listed with its progress until it is done; rename and remove
 * answer with the model; every action is in the audit log; and each bad request is answered
 * with its code (400, 404, 409) while the active model, the write log and the state stay as
 * they were.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelImportJob, ModelList, ModelRecord } from '../../appliance/api/models.js';
import { Daemon } from '../../appliance/daemon/daemon.js';
import { modelImport } from '../../appliance/cli/model-commands.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { initEngine } from '../../appliance/storage/engine.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { Client, PASSWORD } from '../helpers/http-harness.js';
import { patternBytes } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const SIZE = 4 << 20;

describe('model library API on a real daemon', function () {
  this.timeout(120_000);
  let dir: string;
  let state: string;
  let daemon: Daemon;
  let c: Client;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-models-api-'));
    state = join(dir, 'state');
    writeFileSync(join(dir, 'base.img'), patternBytes(SIZE, 1));
    await initEngine({ stateDir: state, model: join(dir, 'base.img'), disk: join(dir, 'disk.img') });
    daemon = new Daemon({ stateDir: state, httpListen: { host: '127.0.0.1', port: 0 }, gadget: 'off', gpio: 'off', firstBootPasswordFile: null, sysRoot: join(dir, 'sys') });
    const a = await daemon.start();
    c = new Client(`http://127.0.0.1:${a.http!.port}`);
    assert.equal((await c.setup(PASSWORD)).status, 201);
  });
  after(async () => {
    await daemon.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function image(name: string, seed: number): string {
    const p = join(dir, name);
    writeFileSync(p, patternBytes(SIZE, seed));
    return p;
  }

  async function models(): Promise<ModelList> {
    const r = await c.req('GET', '/api/models');
    assert.equal(r.status, 200, r.text);
    return r.json as ModelList;
  }

  async function imported(source: string, name: string): Promise<ModelRecord> {
    const r = await c.req('POST', '/api/models/import', { body: { source, name } });
    assert.equal(r.status, 202, r.text);
    const job = r.json as ModelImportJob;
    assert.deepEqual([job.state, job.name, job.source, job.bytesTotal], ['running', name, { kind: 'file', path: source }, SIZE]);
    const done = await waitFor(`import ${name}`, async () => {
      const j = (await c.req('GET', `/api/models/imports/${job.id}`)).json as ModelImportJob;
      return j.state !== 'running' ? j : null;
    });
    assert.equal(done.state, 'done', done.error ?? '');
    assert.equal(done.bytesDone, SIZE);
    const list = await models();
    assert.ok(list.imports.some((j) => j.id === job.id && j.state === 'done'), 'the finished job is listed');
    return list.models.find((m) => m.id === done.modelId)!;
  }

  /** The active model, the write log and snapback.json as they are. */
  function untouched(): { log: Buffer; config: Buffer } {
    return { log: readFileSync(join(state, 'write-log.bin')), config: readFileSync(join(state, 'snapback.json')) };
  }

  it('needs a login', async () => {
    const anon = new Client(c.base);
    for (const [m, p] of [['GET', '/api/models'], ['POST', '/api/models/import'], ['PATCH', '/api/models/x'], ['DELETE', '/api/models/x']] as const) {
      const r = await anon.req(m, p, m === 'GET' || m === 'DELETE' ? {} : { body: { name: 'x', source: '/x' } });
      assert.equal(r.status, 401, `${m} ${p}: ${r.text}`);
    }
  });

  it('imports, lists, renames and removes, each audited', async () => {
    const before = await models();
    assert.deepEqual(before.models.map((m) => [m.name, m.active, m.complete]), [['base.img', true, true]]);
    const m = await imported(image('a.img', 2), 'a');
    assert.deepEqual([m.name, m.active, m.complete, m.size, m.parent, m.download], ['a', false, true, SIZE, null, null]);
    let r = await c.req('PATCH', `/api/models/${m.id.slice(0, 10)}`, { body: { name: 'release 2' } });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as ModelRecord).name, 'release 2');
    r = await c.req('DELETE', `/api/models/${encodeURIComponent('release 2')}`);
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as ModelRecord).id, m.id);
    assert.deepEqual((await models()).models.map((x) => x.name), ['base.img']);
    const audit = (await c.req('GET', '/api/audit?limit=20')).json as { entries: { action: string; details?: Record<string, unknown> }[] };
    const actions = audit.entries.map((e) => e.action);
    for (const a of ['model.import', 'model.rename', 'model.remove']) assert.ok(actions.includes(a), `${a} in ${actions.join(', ')}`);
    assert.deepEqual(audit.entries.find((e) => e.action === 'model.rename')!.details, { model: m.id, from: 'a', to: 'release 2' });
  });

  it('renaming the active model renames it in the status at once', async () => {
    const active = (await models()).models.find((m) => m.active)!;
    const r = await c.req('PATCH', `/api/models/${active.id}`, { body: { name: 'lab image 2026' } });
    assert.equal(r.status, 200, r.text);
    assert.equal((await c.req('GET', '/api/status')).json.model.name, 'lab image 2026');
    assert.equal((await c.req('PATCH', `/api/models/${active.id}`, { body: { name: active.name } })).status, 200);
    assert.equal((await c.req('GET', '/api/status')).json.model.name, active.name);
  });

  it('answers bad requests with their codes and changes nothing', async () => {
    await imported(image('b.img', 3), 'b');
    const bad = image('bad.img', 4);
    await (await createManifest(bad)).save(manifestPathFor(bad));
    writeFileSync(bad, patternBytes(SIZE, 5)); // the manifest is of other bytes
    const before = untouched();
    const list = JSON.stringify((await models()).models);
    const active = (await models()).models.find((m) => m.active)!;
    const cases: [string, string, unknown, number, string, RegExp][] = [
      ['POST', '/api/models/import', { source: image('c.img', 6), name: 'b' }, 409, 'ALREADY_EXISTS', /the name "b" is taken/],
      ['POST', '/api/models/import', { source: join(dir, 'none.img'), name: 'none' }, 404, 'NOT_FOUND', /none\.img does not exist/],
      ['POST', '/api/models/import', { source: 'relative.img', name: 'rel' }, 400, 'BAD_ARGUMENT', /not an absolute path/],
      ['POST', '/api/models/import', { source: 'file:///etc/passwd', name: 'f' }, 400, 'BAD_ARGUMENT', /neither a path on the appliance nor an http/],
      ['POST', '/api/models/import', { source: '/x', name: '' }, 400, 'BAD_ARGUMENT', /name/],
      ['DELETE', `/api/models/${active.id}`, undefined, 409, 'IN_USE', /is the active model/],
      ['DELETE', '/api/models/nothing-here', undefined, 404, 'NOT_FOUND', /no model named "nothing-here"/],
      ['PATCH', '/api/models/b', { name: 'base.img' }, 409, 'ALREADY_EXISTS', /taken/],
    ];
    for (const [m, p, body, status, code, msg] of cases) {
      const r = await c.req(m, p, body === undefined ? {} : { body });
      assert.equal(r.status, status, `${m} ${p} ${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.error, code);
      assert.match(r.json.message, msg);
    }
    // a manifest whose hashes do not match: the job fails, saying why
    const r = await c.req('POST', '/api/models/import', { body: { source: bad, name: 'bad' } });
    assert.equal(r.status, 202, r.text);
    const failed = await waitFor('the bad import to fail', async () => {
      const j = (await c.req('GET', `/api/models/imports/${(r.json as ModelImportJob).id}`)).json as ModelImportJob;
      return j.state !== 'running' ? j : null;
    });
    assert.equal(failed.state, 'failed');
    assert.match(failed.error ?? '', /does not match its manifest: region 0 /);
    assert.equal(failed.modelId, null);
    const after = untouched();
    assert.ok(after.log.equals(before.log) && after.config.equals(before.config), 'the write log and snapback.json are unchanged');
    assert.equal(JSON.stringify((await models()).models), list, 'the library is unchanged');
    assert.equal(daemon.engine!.model.id, active.id, 'the active model is unchanged');
  });

  it('an image already in the library under another name: ALREADY_EXISTS naming that model, through the API job and the CLI', async () => {
    const first = await imported(image('dup.img', 7), 'dup');
    const copy = join(dir, 'dup-copy.img');
    writeFileSync(copy, readFileSync(join(dir, 'dup.img')));
    const list = JSON.stringify((await models()).models);
    const r = await c.req('POST', '/api/models/import', { body: { source: copy, name: 'dup again' } });
    assert.equal(r.status, 202, r.text);
    const failed = await waitFor('the duplicate import to fail', async () => {
      const j = (await c.req('GET', `/api/models/imports/${(r.json as ModelImportJob).id}`)).json as ModelImportJob;
      return j.state !== 'running' ? j : null;
    });
    assert.equal(failed.state, 'failed');
    assert.equal(failed.errorCode, 'ALREADY_EXISTS');
    assert.match(failed.error ?? '', new RegExp(`already in the library as "dup" \\(id ${first.id.slice(0, 12)}`));
    // the CLI (through this daemon's control socket) fails with the same code, not an I/O error
    await assert.rejects(modelImport(copy, { stateDir: state, name: 'dup again', json: true }), (err: unknown) => isSnapbackError(err, 'ALREADY_EXISTS') && /already in the library as "dup"/.test((err as Error).message));
    assert.equal(JSON.stringify((await models()).models), list, 'the library is unchanged');
  });
});
