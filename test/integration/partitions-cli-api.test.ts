/**
 * `snapback partitions` and GET /api/partitions on a model partitioned by the real sfdisk: the
 * same table from the state directory (no daemon), through the running daemon's control socket
 * and from the API, matching what sfdisk reads; the table is the active model's even after the
 * host rewrote its own partition table; a model whose GPT is damaged in both copies gets one
 * clear line (CLI) or 422 PARTITION_TABLE_CORRUPT (API).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PartitionTable } from '../../appliance/api/partitions.js';
import { exited, nbdUri, snapback, startServe, tool } from '../helpers/cli.js';
import { controlRequest } from '../helpers/http-harness.js';

const SIZE = 16 << 20;

function partitionedImage(path: string): void {
  closeSync(openSync(path, 'w'));
  truncateSync(path, SIZE);
  const script = ['label: gpt', 'start=2048, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"', 'type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="system"', ''].join('\n');
  execFileSync('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', path], { input: script });
}

function partitionsJson(state: string): PartitionTable {
  const r = snapback(['partitions', '--json', '--state-dir', state]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as PartitionTable;
}

describe('snapback partitions and GET /api/partitions', function () {
  this.timeout(180_000);
  let dir: string;
  const daemons: ChildProcess[] = [];

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-partitions-'));
  });
  after(async () => {
    for (const d of daemons) {
      d.kill('SIGKILL');
      await exited(d);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it("lists the active model's partitions alike from the state directory, the daemon and the API", async () => {
    const model = join(dir, 'model.img');
    partitionedImage(model);
    const sf = JSON.parse(execFileSync('sfdisk', ['--json', model], { encoding: 'utf8' })) as { partitiontable: { id: string; partitions: { start: number; size: number; type: string; name: string }[] } };
    const state = join(dir, 'state');
    assert.equal(snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'disk.img')]).code, 0);

    const offline = partitionsJson(state);
    assert.equal(offline.scheme, 'gpt');
    assert.equal(offline.diskId, sf.partitiontable.id);
    assert.deepEqual(
      offline.partitions.map((p) => [p.number, p.start, p.size, p.type, p.label]),
      sf.partitiontable.partitions.map((p, i) => [i + 1, p.start * 512, p.size * 512, p.type, p.name]),
    );
    const human = snapback(['partitions', '--state-dir', state]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^GPT [0-9A-F-]{36}, 16 MiB, 2 partitions$/m);
    assert.match(human.stdout, /^1 +1048576 +2 MiB +EFI system \(C12A7328-F81F-11D2-BA4B-00A0C93EC93B\) +ESP$/m);
    assert.match(human.stdout, /^2 +3145728 +12 MiB +Linux filesystem \(0FC63DAF-8483-4772-8E79-3D69D8477DE4\) +system$/m);

    const daemon = await startServe(state);
    daemons.push(daemon);
    assert.deepEqual(partitionsJson(state), offline, 'through the daemon: the same table');
    const api = await controlRequest(join(state, 'control.sock'), 'GET', '/api/partitions');
    assert.equal(api.status, 200);
    assert.deepEqual(api.json, offline);

    // The host writes a new (MBR) table onto its disk: the listing is still the model's.
    const hostDisk = join(dir, 'host-view.img');
    closeSync(openSync(hostDisk, 'w'));
    truncateSync(hostDisk, SIZE);
    execFileSync('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', hostDisk], { input: 'label: dos\nstart=2048,type=83\n' });
    const r = tool('nbdcopy', [hostDisk, nbdUri(state)]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(partitionsJson(state), offline, "after the host's write: still the model's table");
  });

  it('says clearly that a damaged table is damaged, from the CLI and the API', async () => {
    const model = join(dir, 'broken.img');
    partitionedImage(model);
    const fd = openSync(model, 'r+');
    writeSync(fd, Buffer.from([0xff]), 0, 1, 512 + 40); // primary header
    writeSync(fd, Buffer.from([0xff]), 0, 1, SIZE - 512 + 40); // backup header
    closeSync(fd);
    const state = join(dir, 'broken-state');
    assert.equal(snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'broken-disk.img')]).code, 0);
    const offline = snapback(['partitions', '--state-dir', state]);
    assert.equal(offline.code, 1);
    assert.equal(offline.stdout, '');
    assert.match(offline.stderr, /the GPT is damaged: primary: header CRC32 mismatch; backup \(sector 32767\): header CRC32 mismatch/);
    assert.equal(offline.stderr.trim().split('\n').length, 1, offline.stderr);

    const daemon = await startServe(state);
    daemons.push(daemon);
    const api = await controlRequest(join(state, 'control.sock'), 'GET', '/api/partitions');
    assert.equal(api.status, 422);
    assert.equal(api.json.error, 'PARTITION_TABLE_CORRUPT');
    assert.match(api.json.message, /the GPT is damaged/);
    const viaDaemon = snapback(['partitions', '--state-dir', state]);
    assert.equal(viaDaemon.code, 1);
    assert.match(viaDaemon.stderr, /daemon: the GPT is damaged/);
  });
});
