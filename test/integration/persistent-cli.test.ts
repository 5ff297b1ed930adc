/**
 * `snapback persistent add|list|remove` end to end: the built CLI on the state directory (the
 * change waits for the daemon's start), then through the daemon's control socket, the HTTP
 * routes behind it, the audit log, and a real NBD client writing and reading what the host sees
 * across a frozen session end. One daemon for the file.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { Prng } from '../helpers/prng.js';
import { initState, snapback, startServe, exited } from '../helpers/cli.js';
import { hostReads, hostWrites } from '../helpers/host-io.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import type { PersistentList } from '../../appliance/api/persistent.js';
import type { AuditEntry } from '../../appliance/api/audit.js';

const MIB = 1 << 20;
const SIZE = 8 * MIB;

describe('snapback persistent (CLI, daemon, NBD)', function () {
  this.timeout(120_000);
  let dir: string;
  let state: string;
  let model: Buffer;
  let daemon: ChildProcess | null = null;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-persistent-cli-'));
    model = new Prng(5).bytes(SIZE);
    ({ state } = initState(dir, model, { regionSize: '64K', restored: true }));
  });
  after(async () => {
    if (daemon) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  function ok(args: string[]): string {
    const r = snapback(args);
    assert.equal(r.code, 0, `snapback ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  }
  const refused = (args: string[], message: RegExp) => {
    const r = snapback(args);
    assert.notEqual(r.code, 0, `snapback ${args.join(' ')} succeeded`);
    assert.match(r.stderr, message);
  };
  const list = () => JSON.parse(ok(['persistent', 'list', '--json', '--state-dir', state])) as PersistentList;
  const control = (method: 'GET' | 'POST' | 'DELETE', path: string, body?: unknown) => callDaemon(join(state, 'control.sock'), method, path, body);

  it('on the state directory: an added range waits for the daemon\'s start; bad requests are refused and change nothing', () => {
    const out = ok(['persistent', 'add', '--range', '1M:1M', '--state-dir', state]);
    assert.match(out, /persistent area 1 \(bytes 1048576–2097151 \(1 MiB\)\) will be added at the next session end/);
    assert.match(out, /takes effect when the daemon starts/);
    // each bad request of the storage's own test once more through the CLI's parser and exit status
    const before = JSON.stringify(list());
    refused(['persistent', 'add', '--range', '7M:2M', '--state-dir', state], /ends at byte 9437184, beyond the end of the disk/);
    refused(['persistent', 'add', '--partition', '0', '--state-dir', state], /partition numbers start at 1/);
    refused(['persistent', 'add', '--partition', '1', '--range', '3M:1M', '--state-dir', state], /give exactly one of --partition N, --range OFFSET:LENGTH/);
    assert.equal(JSON.stringify(list()), before);
    assert.deepEqual(list().active, []);
    assert.deepEqual(list().pending?.map((a) => [a.offset, a.length]), [[MIB, MIB]]);
  });

  it('through the daemon: in force from its start; the host\'s writes there survive a frozen session end while the rest is restored; changes are audited', async () => {
    daemon = await startServe(state);
    const l = list();
    assert.deepEqual(l.active.map((a) => a.id), ['1']);
    assert.equal(l.pending, null);
    const inside = Buffer.alloc(128 * 1024, 0xa5);
    const outside = Buffer.alloc(4096, 0x5a);
    await hostWrites(state, dir, MIB + 4096, inside);
    await hostWrites(state, dir, 5 * MIB, outside);
    ok(['session', 'end', '--wait', '--state-dir', state]);
    const expect = Buffer.from(model);
    inside.copy(expect, MIB + 4096);
    assert.ok(hostReads(state, dir).equals(expect), 'the host reads its writes in the area and the model elsewhere');

    const narrowed = ok(['persistent', 'add', '--range', '100K:200K', '--state-dir', state]);
    assert.match(narrowed, /range 102400:204800 narrowed to whole regions of 64 KiB: bytes 131072–262143 are persistent/);
    refused(['persistent', 'add', '--range', '9M:1M', '--state-dir', state], /daemon: range 9M:1M ends at byte 10485760, beyond the end of the disk/);
    assert.match(ok(['persistent', 'remove', '--id', '1', '--state-dir', state]), /persistent area 1 .* will be removed at the next session end/);
    refused(['persistent', 'remove', '--range', '4M:1M', '--state-dir', state], /no persistent area is range 4M:1M/);
    const text = ok(['persistent', 'list', '--state-dir', state]);
    assert.match(text, /^1\tbytes 1048576–2097151 \(1 MiB\)\tremoved at the next session end$/m);
    assert.match(text, /^2\tbytes 131072–262143 \(128 KiB\)\tadded at the next session end$/m);
    await assert.rejects(control('DELETE', '/api/persistent?id=2&partition=1'), /give exactly one of id, partition, range/);

    ok(['session', 'end', '--wait', '--state-dir', state]);
    assert.deepEqual(list().active.map((a) => a.id), ['2']);
    assert.ok(hostReads(state, dir).equals(model), 'the removed area was restored from the model');
    const audit = ((await control('GET', '/api/audit')) as { entries: AuditEntry[] }).entries.map((a) => `${a.actor} ${a.action}`);
    assert.deepEqual(audit.filter((a) => a.includes('persistent')).reverse(), ['cli persistent.add', 'system persistent.apply', 'cli persistent.add', 'cli persistent.remove', 'system persistent.apply']);
  });
});
