/**
 * The CLI and the daemon end to end, with real NBD clients:
 * init/verify/restore on files, bad arguments, a state directory in use, session end while a
 * client is connected, SIGTERM, and a pulled plug (kill -9) in the middle of a real client's
 * write workload.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { Prng } from '../helpers/prng.js';
import { spawnNbdsh } from '../helpers/nbd-clients.js';
import { waitFor } from '../helpers/wait.js';
import { CLI, initState, snapback, tool, startServe, exited, nbdUri } from '../helpers/cli.js';
import { hostReads } from '../helpers/host-io.js';
import { ownNetworkAddress } from '../helpers/network.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import { VERSION } from '../../appliance/version.js';
import { openSync, writeSync, closeSync } from 'node:fs';

const SIZE = 32 << 20;

describe('snapback CLI and daemon', function () {
  this.timeout(180_000);
  let dir: string;
  let model: string;
  let modelBytes: Buffer;
  let state: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-cli-'));
    model = join(dir, 'model.img');
    modelBytes = new Prng(42).bytes(SIZE);
    modelBytes.fill(0, 4 << 20, 12 << 20); // some all-zero regions
    writeFileSync(model, modelBytes);
    state = join(dir, 'state');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('rejects bad arguments with one clear line and exit 2', () => {
    const cases: string[][] = [['init', '--bogus'], ['init', '--state-dir', state], ['init', '--state-dir', state, '--model', model, '--disk', 'd', '--region-size', '3K'], ['frobnicate'], ['mode', 'melted', '--state-dir', state], ['verify']];
    for (const args of cases) {
      const r = snapback(args);
      assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /^snapback: /);
    }
  });

  it('status and the other daemon commands name a directory that is missing or not a state directory, and say "no daemon" only for a state directory', () => {
    const missing = join(dir, 'nonexistent');
    let r = snapback(['status', '--state-dir', missing]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the state directory .*nonexistent does not exist/);
    const bare = join(dir, 'bare');
    mkdirSync(bare);
    for (const args of [['status'], ['session', 'end'], ['mode', 'thawed']]) {
      r = snapback([...args, '--state-dir', bare]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /is not a Snapback state directory \(no snapback\.json\); run "snapback init" first/, `${args.join(' ')}: ${r.stderr}`);
    }
    initState(dir, modelBytes);
    r = snapback(['status', '--state-dir', state]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /no daemon is running here/);
  });

  it('serve on every address (0.0.0.0) prints a URL a browser can open: this machine\'s own address, which answers', async () => {
    initState(dir, modelBytes);
    const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', state, '--http-listen', '0.0.0.0:0', '--gadget', 'off', '--gpio', 'off'], { env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the web UI line', () => /web UI and API on /.test(out) || child.exitCode !== null, 60_000);
      const m = /web UI and API on (http:\/\/(\S+):(\d+)\/)/.exec(out);
      assert.ok(m, out);
      assert.notEqual(m[2], '0.0.0.0', `printed ${m[1]}`);
      assert.equal(m[2], ownNetworkAddress(), 'the first of this machine\'s own addresses');
      const res = await fetch(`${m[1]}api/auth/state`);
      assert.equal(res.status, 200, 'the printed URL answers');
    } finally {
      child.kill('SIGTERM');
      await exited(child);
    }
  });

  it('init creates a sparse disk, restore fills it, verify finds no unlogged difference', () => {
    initState(dir, modelBytes, { regionSize: '64K' });
    const again = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'disk.img')]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already initialised/);
    let v = snapback(['verify', '--state-dir', state, '--json']);
    assert.equal(v.code, 0, v.stderr);
    let rep = JSON.parse(v.stdout) as { pending: number; differing: number; unlogged: number[] };
    assert.equal(rep.pending, 384, '24 MiB of non-zero model in 64 KiB regions is pending');
    assert.deepEqual(rep.unlogged, []);
    const r = snapback(['restore'], { SNAPBACK_STATE_DIR: state });
    assert.equal(r.code, 0, r.stderr);
    v = snapback(['verify', '--state-dir', state, '--json']);
    rep = JSON.parse(v.stdout) as { pending: number; differing: number; unlogged: number[] };
    assert.equal(rep.pending, 0);
    assert.equal(rep.differing, 0);
    assert.ok(readFileSync(join(dir, 'disk.img')).equals(modelBytes));
  });

  it('an existing disk is all pending unless --disk-matches-model, which is verified', () => {
    writeFileSync(join(dir, 'disk.img'), modelBytes);
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
    let r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'disk.img'), '--disk-matches-model']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /0 pending/);
    rmSync(state, { recursive: true });
    const wrong = Buffer.from(modelBytes);
    wrong[100] = wrong[100]! ^ 1;
    writeFileSync(join(dir, 'disk.img'), wrong);
    r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'disk.img'), '--disk-matches-model']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /differs from the model in 1 regions/);
    r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'disk.img')]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /512 regions, 512 pending/);
  });

  it('serves; a session end while a client is connected gives the client the model; SIGTERM exits 0', async () => {
    initState(dir, modelBytes);
    const d = await startServe(state);
    try {
      const locked = snapback(['restore', '--state-dir', state]);
      assert.equal(locked.code, 1);
      assert.match(locked.stderr, /in use by a running daemon/);
      const info = tool('nbdinfo', ['--json', nbdUri(state)]);
      assert.equal(info.code, 0, info.stderr);
      assert.equal((JSON.parse(info.stdout) as { exports: { 'export-size': number }[] }).exports[0]!['export-size'], SIZE);
      // one nbdsh connection stays open: write and flush, the session ends from outside, read back
      const py = ['import sys', "h.pwrite(b'\\xab' * (3 << 20), 1 << 20)", 'h.flush()', "print('WROTE', flush=True)", 'sys.stdin.readline()', "print('READ', h.pread(16, 1 << 20).hex(), flush=True)"].join('\n');
      const sh = await spawnNbdsh(nbdUri(state), py);
      let shOut = '';
      sh.stdout!.on('data', (b: Buffer) => (shOut += b.toString()));
      sh.stderr!.on('data', (b: Buffer) => (shOut += b.toString()));
      await waitFor('nbdsh to write and flush', () => /WROTE/.test(shOut) || sh.exitCode !== null, 60_000);
      assert.match(shOut, /WROTE/);
      const st = JSON.parse(snapback(['status', '--state-dir', state, '--json']).stdout) as { regions: { writtenThisSession: number }; host: { nbdClients: number }; daemon: { version: string } };
      assert.equal(st.daemon.version, VERSION, "the daemon reports package.json's version");
      assert.ok(st.regions.writtenThisSession >= 48);
      assert.equal(st.host.nbdClients, 1);
      const end = snapback(['session', 'end', '--wait', '--state-dir', state]);
      assert.equal(end.code, 0, end.stderr);
      sh.stdin!.end('\n');
      await exited(sh);
      const expect16 = modelBytes.subarray(1 << 20, (1 << 20) + 16).toString('hex');
      assert.ok(shOut.includes(`READ ${expect16}`), `after the session end the connected client read the model: ${shOut}`);
      assert.ok(hostReads(state, dir).equals(modelBytes), 'the whole export equals the model');
      const sessions = JSON.parse(snapback(['status', '--state-dir', state, '--json']).stdout) as { session: { number: number } };
      assert.ok(sessions.session.number >= 3);
    } finally {
      d.kill('SIGTERM');
      const how = await exited(d);
      assert.equal(how.code, 0, 'SIGTERM drains and exits 0');
    }
  });

  it('maintenance windows through the daemon and on the state directory: add, list, a schedule that does not parse, thaw for N boots, remove', async () => {
    initState(dir, modelBytes);
    // without a daemon: the state directory's settings
    const offline = snapback(['maintenance', 'add', 'weekly', '--schedule', '0 3 * * 6', '--time-zone', 'Europe/Berlin', '--duration', '60', '--after', 'capture', '--state-dir', state]);
    assert.equal(offline.code, 0, offline.stderr);
    assert.match(offline.stdout, /maintenance window weekly added \(it runs once the daemon runs\); next: \d{4}-/);
    const d = await startServe(state);
    try {
      const list = JSON.parse(snapback(['maintenance', 'list', '--json', '--state-dir', state]).stdout) as { windows: { window: { name: string; timeZone: string; after: string }; nextRun: string }[]; thawBoots: number };
      assert.deepEqual(list.windows.map((w) => [w.window.name, w.window.timeZone, w.window.after]), [['weekly', 'Europe/Berlin', 'capture']], 'the daemon has the window added without it');
      assert.equal(new Date(list.windows[0]!.nextRun).getUTCDay(), 6, 'next start on a Saturday');
      const bad = snapback(['maintenance', 'add', 'nightly', '--schedule', '0 3 * *', '--duration', '30', '--state-dir', state]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /^snapback: .*schedule "0 3 \* \*" has 4 field\(s\); a schedule has 5/);
      const thaw = snapback(['thaw', '--boots', '2', '--state-dir', state]);
      assert.equal(thaw.code, 0, thaw.stderr);
      assert.match(thaw.stdout, /thawed for the next 2 boot\(s\), then frozen/);
      const control = join(state, 'control.sock');
      assert.equal(((await callDaemon(control, 'GET', '/api/status')) as { mode: string }).mode, 'thawed');
      const end = snapback(['session', 'end', '--wait', '--state-dir', state]);
      assert.equal(end.code, 0, end.stderr);
      await waitFor('one thawed boot counted', async () => ((await callDaemon(control, 'GET', '/api/maintenance')) as { thawBoots: number }).thawBoots === 1);
      const rm = snapback(['maintenance', 'remove', 'weekly', '--state-dir', state]);
      assert.equal(rm.code, 0, rm.stderr);
      assert.match(snapback(['maintenance', 'list', '--state-dir', state]).stdout, /no maintenance windows\nthawed for the next 1 boot\(s\)/);
    } finally {
      d.kill('SIGTERM');
      assert.equal((await exited(d)).code, 0);
    }
  });

  it('a pulled plug (kill -9) mid-write: after a restart, verify passes and the export is the model', async () => {
    initState(dir, modelBytes);
    let d = await startServe(state);
    const junk = join(dir, 'junk.img');
    writeFileSync(junk, new Prng(7).bytes(SIZE));
    const copy = spawn('nbdcopy', [junk, nbdUri(state)], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    d.kill('SIGKILL');
    await exited(d);
    await exited(copy);
    const v1 = snapback(['verify', '--state-dir', state, '--json']);
    assert.equal(v1.code, 0, `no unlogged difference after the crash: ${v1.stdout}${v1.stderr}`);
    d = await startServe(state);
    try {
      assert.ok(hostReads(state, dir).equals(modelBytes), 'the restart began a new session: the model');
    } finally {
      d.kill('SIGTERM');
      await exited(d);
    }
    const v2 = snapback(['verify', '--state-dir', state, '--json']);
    assert.equal(v2.code, 0, v2.stdout);
  });
  it('verifies the model on request, and names a region whose bytes changed under the manifest', async () => {
    initState(dir, modelBytes);
    const d = await startServe(state);
    const ctl = join(state, 'control.sock');
    const waitDone = async () => {
      for (;;) {
        const m = (await callDaemon(ctl, 'GET', '/api/model')) as { verify: { state: string; regionsDone: number; regionsTotal: number; badRegions: number[] } };
        if (m.verify.state !== 'running') return m.verify;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    try {
      await callDaemon(ctl, 'POST', '/api/model/verify', {});
      let v = await waitDone();
      assert.equal(v.state, 'passed');
      assert.equal(v.regionsDone, v.regionsTotal);
      const fd = openSync(model, 'r+');
      writeSync(fd, Buffer.from([modelBytes[(20 << 20) + 5]! ^ 0x5a]), 0, 1, (20 << 20) + 5);
      closeSync(fd);
      await callDaemon(ctl, 'POST', '/api/model/verify', {});
      v = await waitDone();
      assert.equal(v.state, 'failed');
      assert.deepEqual(v.badRegions, [20], 'the 1 MiB manifest region holding the changed byte');
    } finally {
      d.kill('SIGTERM');
      await exited(d);
    }
  });
});
