/**
 * Activate (switch) and capture, end to end: the built CLI, the daemon, the model library on
 * real files and a real NBD client (nbdcopy) reading what the host sees.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Prng } from '../helpers/prng.js';
import { initState, snapback, startServe, exited } from '../helpers/cli.js';
import { hostReads, hostWrites } from '../helpers/host-io.js';
import { waitFor } from '../helpers/wait.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';
import type { ModelList } from '../../appliance/api/models.js';

const MIB = 1 << 20;
const SIZE = 16 * MIB;
/** Manifest regions (1 MiB) in which model B differs from A: 16 write-log regions of 64 KiB each. */
const B_DIFFERS_IN = [2, 5, 11];

describe('model activate and capture (CLI, daemon, NBD)', function () {
  this.timeout(240_000);
  let dir: string;
  let state: string;
  let modelA: Buffer;
  let modelB: Buffer;
  let daemon: ChildProcess | null = null;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-switch-'));
    state = join(dir, 'state');
    const rng = new Prng(11);
    modelA = rng.bytes(SIZE);
    modelA.fill(0, 8 * MIB, 10 * MIB);
    modelB = Buffer.from(modelA);
    for (const m of B_DIFFERS_IN) {
      const at = m * MIB + rng.int(MIB);
      modelB[at] = modelB[at]! ^ 0x5a; // one byte is enough to differ
    }
    writeFileSync(join(dir, 'b.img'), modelB);
    writeFileSync(join(dir, 'big.img'), Buffer.alloc(SIZE + MIB));
  });
  afterEach(async () => {
    if (daemon) {
      daemon.kill('SIGTERM');
      await exited(daemon);
      daemon = null;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const ok = (args: string[]) => {
    const r = snapback(args);
    assert.equal(r.code, 0, `snapback ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  /** A state on model A (restored: nothing pending), with B (and a model one MiB larger) in its library. */
  function setUp(): void {
    initState(dir, modelA, { name: 'a.img', regionSize: '64K', restored: true });
    ok(['model', 'import', join(dir, 'b.img'), '--name', 'B', '--state-dir', state]);
    ok(['model', 'import', join(dir, 'big.img'), '--name', 'big', '--state-dir', state]);
  }
  const status = async () => (await callDaemon(join(state, 'control.sock'), 'GET', '/api/status')) as ApplianceStatus;
  const models = async () => (await callDaemon(join(state, 'control.sock'), 'GET', '/api/models')) as ModelList;
  const verify = () => JSON.parse(ok(['verify', '--state-dir', state, '--json'])) as { pending: number; differing: number; unlogged: number[] };

  it('activate --now on the state directory marks pending exactly the regions whose manifest digests differ (3 MiB of 16), and the host then reads model B', async () => {
    setUp();
    assert.equal(verify().pending, 0);
    const out = ok(['model', 'activate', 'B', '--now', '--state-dir', state]);
    assert.match(out, /48 regions/);
    const v = verify();
    assert.equal(v.pending, 3 * 16, 'exactly the write-log regions of the three differing manifest regions are pending');
    assert.deepEqual(v.unlogged, []);
    daemon = await startServe(state, ['--keep-session']);
    const st = await status();
    assert.equal(st.model.name, 'B');
    assert.ok(hostReads(state, dir).equals(modelB), 'the host does not read model B');
    assert.equal((await models()).models.find((m) => m.name === 'B')?.active, true);
  });

  it('activate waits for the next session end: until then the host reads the old model and its own writes; then model B', async () => {
    setUp();
    daemon = await startServe(state);
    const write = Buffer.alloc(4096, 0xee);
    await hostWrites(state, dir, 7 * MIB, write);
    const out = ok(['model', 'activate', 'B', '--state-dir', state]);
    assert.match(out, /next session end; 48 regions/);
    const before = Buffer.from(modelA);
    write.copy(before, 7 * MIB);
    assert.ok(hostReads(state, dir).equals(before), 'the activation changed what the host reads before the session end');
    assert.equal((await status()).model.name, 'a.img', 'the old model is in force until the session end');
    assert.ok(existsSync(join(state, 'model-switch.json')), 'the pending activation is kept on disk');
    ok(['session', 'end', '--wait', '--state-dir', state]);
    assert.ok(hostReads(state, dir).equals(modelB), 'after the session end the host does not read model B (the write was undone too)');
    assert.equal((await status()).model.name, 'B');
    assert.ok(!existsSync(join(state, 'model-switch.json')));
  });

  it('a pending activation survives a daemon restart: the restart ends the session on the new model', async () => {
    setUp();
    daemon = await startServe(state);
    ok(['model', 'activate', 'B', '--state-dir', state]);
    daemon.kill('SIGKILL'); // as a power cut would
    await exited(daemon);
    daemon = await startServe(state);
    assert.equal((await status()).model.name, 'B');
    assert.ok(hostReads(state, dir).equals(modelB));
  });

  it('activate --now through the daemon ends the session at once and the host reads model B', async () => {
    setUp();
    daemon = await startServe(state);
    await hostWrites(state, dir, 0, Buffer.alloc(8192, 1));
    const out = ok(['model', 'activate', 'B', '--now', '--state-dir', state]);
    assert.match(out, /is active/);
    assert.ok(hostReads(state, dir).equals(modelB));
    // and back: one activate rolls back to A
    ok(['model', 'activate', 'a.img', '--now', '--state-dir', state]);
    assert.ok(hostReads(state, dir).equals(modelA));
  });

  it("the status names the model in force by its library name: after a rename of it, and after a switch to a renamed model", async () => {
    setUp();
    daemon = await startServe(state);
    ok(['model', 'rename', 'a.img', 'lab-1', '--state-dir', state]);
    await waitFor('the status to show the new name of the model in force', async () => (await status()).model.name === 'lab-1');
    ok(['model', 'rename', 'B', 'lab-2', '--state-dir', state]);
    ok(['model', 'activate', 'lab-2', '--now', '--state-dir', state]);
    assert.equal((await status()).model.name, 'lab-2');
    assert.equal(((await callDaemon(join(state, 'control.sock'), 'GET', '/api/model')) as { model: { name: string } }).model.name, 'lab-2');
  });

  it('capture, then activate and a session end: the host reads what it read at the capture, not what it wrote after', async () => {
    setUp();
    daemon = await startServe(state);
    ok(['mode', 'thawed', '--state-dir', state]);
    const w1 = new Prng(3).bytes(300 * 1024);
    await hostWrites(state, dir, 3 * MIB + 1000, w1);
    const seen = hostReads(state, dir);
    const out = ok(['model', 'capture', '--name', 'C', '--state-dir', state]).trim().split('\n');
    const id = out[out.length - 1]!;
    assert.match(id, /^[0-9a-f]{64}$/, 'the last line is the new model id');
    const c = (await models()).models.find((m) => m.name === 'C');
    assert.ok(c, 'the captured model is in the library');
    assert.equal(c.id, id);
    assert.equal(c.active, false);
    assert.equal(c.parent, (await models()).models.find((m) => m.name === 'a.img')?.id, 'its parent is the model it came from');
    assert.deepEqual(c.source, { kind: 'capture', session: (await status()).session.number });
    assert.ok(readFileSync(join(state, 'models', id, 'image')).equals(seen), "the captured image is the host's view");
    await hostWrites(state, dir, 12 * MIB, Buffer.alloc(4096, 0x77)); // after the capture: not in C
    ok(['mode', 'frozen', '--state-dir', state]);
    ok(['model', 'activate', 'C', '--state-dir', state]);
    ok(['session', 'end', '--wait', '--state-dir', state]);
    assert.ok(hostReads(state, dir).equals(seen), 'after activating the capture and a session end the host does not read the captured disk');
  });

  it('capture --activate makes the disk the new baseline without a restore: nothing pending, and a session end keeps the captured content', async () => {
    setUp();
    daemon = await startServe(state);
    ok(['mode', 'thawed', '--state-dir', state]);
    await hostWrites(state, dir, 5 * MIB, new Prng(4).bytes(MIB + 4096));
    const seen = hostReads(state, dir);
    const written = (await status()).regions.writtenThisSession;
    assert.ok(written >= 17);
    ok(['model', 'capture', '--name', 'D', '--activate', '--state-dir', state]);
    const st = await status();
    assert.equal(st.model.name, 'D');
    assert.equal(st.regions.pending, 0, 'the capture made regions pending: a restore would follow');
    assert.equal(st.regions.clean, st.regions.total, 'the written regions are clean under the captured model');
    assert.ok(hostReads(state, dir).equals(seen), "the host's view changed");
    ok(['mode', 'frozen', '--state-dir', state]);
    ok(['session', 'end', '--wait', '--state-dir', state]);
    assert.equal((await status()).regions.pending, 0, 'the session end after capture --activate restores something');
    assert.ok(hostReads(state, dir).equals(seen));
  });

  it('models whose manifests have other region sizes and hashes: one image is hashed again, and only the regions whose bytes differ become pending', async () => {
    setUp();
    // model B's bytes twice more, with manifests of 256 KiB sha256 regions and of 4 MiB (blake3) regions
    const b256 = join(dir, 'b-256k.img');
    const b4m = join(dir, 'b-4m.img');
    writeFileSync(b256, modelB);
    writeFileSync(b4m, modelB);
    ok(['model', 'manifest', b256, '--region-size', '256K', '--hash', 'sha256']);
    ok(['model', 'manifest', b4m, '--region-size', '4M']);
    ok(['model', 'import', b256, '--name', 'B256', '--state-dir', state]);
    ok(['model', 'import', b4m, '--name', 'B4M', '--state-dir', state]);
    // from A (1 MiB regions) to a finer manifest: A is hashed again at 256 KiB, 3 of those differ
    let out = ok(['model', 'activate', 'B256', '--now', '--state-dir', state]);
    assert.match(out, /; 12 regions are restored/);
    assert.equal(verify().pending, 3 * 4, 'exactly the write-log regions of the three differing 256 KiB regions are pending');
    ok(['restore', '--state-dir', state]);
    // to a coarser manifest of the same bytes: that image is hashed again at 256 KiB sha256: nothing differs
    out = ok(['model', 'activate', 'B4M', '--now', '--state-dir', state]);
    assert.match(out, /; 0 regions are restored/);
    assert.equal(verify().pending, 0);
    assert.ok(existsSync(join(state, 'models', JSON.parse(ok(['model', 'list', '--json', '--state-dir', state])).find((m: { name: string }) => m.name === 'B4M').id, 'rehashed-262144-sha256.manifest.json')), 'the digests made again are kept');
    daemon = await startServe(state, ['--keep-session']);
    assert.equal((await status()).model.name, 'B4M');
    assert.ok(hostReads(state, dir).equals(modelB), 'the host does not read model B');
  });

  it('a pending activation: the status (text and JSON) names it, removing its model is refused saying so, and activate --cancel withdraws it (on the state directory and through the daemon)', async () => {
    setUp();
    const refusedRemove = (): void => {
      const r = snapback(['model', 'remove', 'B', '--state-dir', state]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /model "B" is the pending activation target \(it becomes the active model at the next session end\); cancel that with "snapback model activate --cancel"/);
    };
    const listed = (): { name: string; id: string; pendingActivation: boolean }[] => JSON.parse(ok(['model', 'list', '--json', '--state-dir', state]));
    const bId = listed().find((m) => m.name === 'B')!.id;

    // on the state directory (no daemon): the request waits for the daemon's start
    ok(['model', 'activate', 'B', '--state-dir', state]);
    refusedRemove();
    assert.deepEqual(listed().filter((m) => m.pendingActivation).map((m) => m.name), ['B']);
    assert.match(ok(['model', 'activate', '--cancel', '--state-dir', state]), /the activation of model B \([0-9a-f]{12}\) is cancelled; the active model stays/);
    assert.ok(!existsSync(join(state, 'model-switch.json')));
    assert.deepEqual(listed().filter((m) => m.pendingActivation), []);

    // through the daemon
    daemon = await startServe(state);
    ok(['model', 'activate', 'B', '--state-dir', state]);
    assert.deepEqual((await status()).model.pendingActivation, { id: bId, name: 'B' });
    assert.deepEqual((JSON.parse(ok(['status', '--json', '--state-dir', state])) as ApplianceStatus).model.pendingActivation, { id: bId, name: 'B' });
    assert.match(ok(['status', '--state-dir', state]), new RegExp(`^model B \\(id ${bId.slice(0, 16)}…\\) will be active after the next session end`, 'm'));
    assert.match(ok(['model', 'list', '--state-dir', state]), /^ {2}B .*\(active after the next session end\)$/m);
    refusedRemove();
    assert.match(ok(['model', 'activate', '--cancel', '--state-dir', state]), /the activation of model B .* is cancelled/);
    assert.equal((await status()).model.pendingActivation, null);
    assert.ok(!existsSync(join(state, 'model-switch.json')));
    ok(['session', 'end', '--wait', '--state-dir', state]);
    assert.equal((await status()).model.name, 'a.img', 'the cancelled activation was made at the session end');
    assert.ok(hostReads(state, dir).equals(modelA));
    assert.match(ok(['model', 'activate', '--cancel', '--state-dir', state]), /no activation was pending/);
    ok(['model', 'remove', 'B', '--state-dir', state]);
  });

  it('bad input (an unknown model, a model larger than the disk, a capture under a taken name) leaves the log, the library and what the host reads untouched', async () => {
    setUp();
    const logBefore = readFileSync(join(state, 'write-log.bin'));
    const libBefore = ok(['verify', '--state-dir', state, '--json']);
    let r = snapback(['model', 'activate', 'nope', '--state-dir', state]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no model named "nope"/);
    r = snapback(['model', 'activate', 'big', '--now', '--state-dir', state]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /holds 17825792 bytes but the disk the host sees holds 16777216/);
    r = snapback(['model', 'capture', '--name', 'B', '--state-dir', state]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /name "B" is taken/);
    assert.ok(readFileSync(join(state, 'write-log.bin')).equals(logBefore), 'the write log changed');
    assert.ok(!existsSync(join(state, 'model-switch.json')));
    assert.equal(ok(['verify', '--state-dir', state, '--json']), libBefore);
    // and through the daemon
    daemon = await startServe(state, ['--keep-session']);
    const listBefore = await models();
    r = snapback(['model', 'activate', 'big', '--state-dir', state]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /a switch needs a model of the same size/);
    r = snapback(['model', 'capture', '--name', 'x', '--state-dir', state]);
    assert.equal(r.code, 2, 'a capture with nothing written');
    assert.match(r.stderr, /nothing to capture/);
    assert.deepEqual((await models()).models, listBefore.models);
    assert.equal((await status()).model.name, 'a.img');
    assert.ok(hostReads(state, dir).equals(modelA));
    assert.ok(!existsSync(join(state, 'model-switch.json')));
  });
});
