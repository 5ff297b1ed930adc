/**
 * `snapback model import|list|rename|remove` as an administrator types them: on the state
 * directory when no daemon runs, through a running daemon's control socket when one does (the
 * same answers either way), and bad input of every kind leaving the active model, the write log
 * and the state exactly as they were while the daemon keeps serving the host's disk.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { ModelRecord } from '../../appliance/api/models.js';
import { modelImport } from '../../appliance/cli/model-commands.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { exited, killDaemon, snapback, snapbackRefused, startServe } from '../helpers/cli.js';
import { hostReads } from '../helpers/host-io.js';
import { patternBytes } from '../helpers/prng.js';
import { stateSnapshot } from '../helpers/state-snapshot.js';

const SIZE = 4 << 20;

describe('snapback model: import, list, rename, remove', function () {
  this.timeout(180_000);
  let dir: string;
  let state: string;
  let daemon: ChildProcess | null = null;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-models-'));
    state = join(dir, 'state');
    writeFileSync(join(dir, 'base.img'), patternBytes(SIZE, 1));
    // one command: no manifest beside the image, init makes it
    const r = snapback(['init', '--state-dir', state, '--model', join(dir, 'base.img'), '--disk', join(dir, 'disk.img')]);
    assert.equal(r.code, 0, r.stderr);
  });
  afterEach(async () => {
    daemon = await killDaemon(daemon);
    rmSync(dir, { recursive: true, force: true });
  });

  function image(name: string, seed: number): string {
    const p = join(dir, name);
    writeFileSync(p, patternBytes(SIZE, seed));
    return p;
  }

  function list(): ModelRecord[] {
    const r = snapback(['model', 'list', '--json', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as ModelRecord[];
  }

  const refused = (args: string[], msg: RegExp, code = 1): void => snapbackRefused(state, args, msg, code);

  function exercise(how: string): void {
    const a = image(`a-${how}.img`, 2);
    let r = snapback(['model', 'import', a, '--name', `a ${how}`, '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    const id = r.stdout.trim().split('\n').at(-1)!;
    assert.match(id, /^[0-9a-f]{64}$/, 'the last line is the new id');
    r = snapback(['model', 'import', image(`b-${how}.img`, 3), '--name', `b ${how}`, '--json', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    const b = JSON.parse(r.stdout) as ModelRecord;
    assert.deepEqual([b.name, b.active, b.complete, b.source], [`b ${how}`, false, true, { kind: 'file', path: join(dir, `b-${how}.img`) }]);
    const models = list();
    const mine = models.filter((m) => m.name.endsWith(how));
    assert.deepEqual(mine.map((m) => [m.name, m.active, m.complete]), [[`a ${how}`, false, true], [`b ${how}`, false, true]]);
    assert.equal(models.filter((m) => m.active).length, 1, 'one active model');
    assert.equal(models.find((m) => m.active)!.name, 'base.img');
    r = snapback(['model', 'list', '--state-dir', state]);
    assert.match(r.stdout, /^\* base\.img /m, 'the human list marks the active model');
    r = snapback(['model', 'rename', id.slice(0, 8), `renamed ${how}`, '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(list().some((m) => m.id === id && m.name === `renamed ${how}`));
    r = snapback(['model', 'remove', `renamed ${how}`, '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!list().some((m) => m.id === id));
    assert.equal(existsSync(join(state, 'models', id)), false);

    // bad input, each changing nothing
    const active = list().find((m) => m.active)!;
    refused(['model', 'remove', 'base.img'], /"base\.img" is the active model/);
    refused(['model', 'remove', active.id], /is the active model/);
    refused(['model', 'import', image(`c-${how}.img`, 4), '--name', `b ${how}`], /the name "b .*" is taken/);
    refused(['model', 'import', join(dir, 'missing.img'), '--name', 'missing'], /missing\.img does not exist/);
    refused(['model', 'import', 'ftp://models.example/x.img', '--name', 'ftp'], /neither a path on the appliance nor an http/, 2);
    refused(['model', 'remove', 'no such model'], /no model named "no such model"/);
    refused(['model', 'rename', `b ${how}`, 'base.img'], /the name "base\.img" is taken/);
    // a manifest whose size, then whose hashes, do not match the image
    const d = image(`d-${how}.img`, 5);
    assert.equal(snapback(['model', 'manifest', d]).code, 0);
    truncateSync(d, SIZE - 65536);
    refused(['model', 'import', d, '--name', `d ${how}`], /manifest .* is for 4194304 bytes but .* holds 4128768/);
    writeFileSync(d, Buffer.concat([patternBytes(SIZE, 5).subarray(0, 3 << 20), Buffer.alloc(1 << 20, 1)]));
    refused(['model', 'import', d, '--name', `d ${how}`], /does not match its manifest: region 3 /);
  }

  it('on the state directory when no daemon runs', () => {
    exercise('offline');
  });

  it('an image the library holds already, on the state directory: ALREADY_EXISTS naming that model (not an I/O error), nothing changed', async () => {
    const a = image('a.img', 2);
    assert.equal(snapback(['model', 'import', a, '--name', 'a', '--state-dir', state]).code, 0);
    const copy = join(dir, 'a-copy.img');
    writeFileSync(copy, readFileSync(a));
    const before = stateSnapshot(state);
    await assert.rejects(modelImport(copy, { stateDir: state, name: 'a again', json: true }), (err: unknown) => isSnapbackError(err, 'ALREADY_EXISTS') && /already in the library as "a"/.test((err as Error).message));
    assert.equal(stateSnapshot(state), before, 'nothing changed');
  });

  it('through the running daemon, which keeps serving the same disk', async () => {
    daemon = await startServe(state);
    const before = hostReads(state, dir);
    assert.ok(before.equals(patternBytes(SIZE, 1)));
    exercise('daemon');
    // the import went through the daemon: it is in the daemon's audit log
    assert.ok(hostReads(state, dir).equals(before), 'the host still reads the active model');
    daemon.kill('SIGTERM');
    await exited(daemon);
    daemon = null;
    const st = JSON.parse(readFileSync(join(state, 'state.json'), 'utf8')) as { audit: { action: string }[] };
    const actions = st.audit.map((e) => e.action);
    for (const a of ['model.import', 'model.rename', 'model.remove']) assert.ok(actions.includes(a), `${a} audited: ${actions.join(', ')}`);
  });

  it('an offline command logs to stderr: with LOG_LEVEL=info, `model import --json` prints its record alone on stdout (it parses as JSON)', () => {
    const r = snapback(['model', 'import', image('logged.img', 4), '--name', 'logged', '--json', '--state-dir', state], { LOG_LEVEL: 'info' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as ModelRecord).name, 'logged', r.stdout);
    assert.match(r.stderr, /"msg":"model added to the library"/, 'the log lines are written, to stderr');
  });

  it('init makes the manifest itself when the image has none, without writing beside the image', () => {
    assert.equal(existsSync(join(dir, 'base.img.manifest.json')), false);
    const [m] = list();
    assert.deepEqual([m!.name, m!.active, m!.complete, m!.regionSize], ['base.img', true, true, 1 << 20]);
    const v = snapback(['verify', '--state-dir', state]);
    assert.equal(v.code, 0, v.stderr);
  });
});
