/**
 * Partition models: `snapback model import IMAGE --partition N` makes a model of one partition
 * of the active model (a GPT made by sfdisk), from the state directory and through the daemon.
 * Activated, the host (a real NBD client) reads that partition from the image and the rest of
 * the disk from the whole-disk model, and a session end restores both. A partition that does not
 * exist, an image larger than its partition and a partition off the region boundaries are
 * refused in one clear line with nothing changed.
 */
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelRecord } from '../../appliance/api/models.js';
import { exited, initState, nbdUri, snapback, snapbackRefused, startServe, tool } from '../helpers/cli.js';
import { hostReads } from '../helpers/host-io.js';
import { patternBytes } from '../helpers/prng.js';

const MIB = 1 << 20;
const SIZE = 16 * MIB;
/** Partition 1: 1–5 MiB; partition 2: 5–13 MiB; partition 3: off the 1 MiB region boundaries. */
const P2 = { start: 5 * MIB, size: 8 * MIB };

describe('partition models: a model of one partition of the disk', function () {
  this.timeout(300_000);
  let dir: string;
  let state: string;
  let base: Buffer;
  let daemon: ChildProcess | null = null;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-partmodel-'));
    // the whole-disk model: a GPT (made by sfdisk on a scratch file) over a pattern
    const scratch = join(dir, 'partitioned.img');
    writeFileSync(scratch, patternBytes(SIZE, 1));
    const script = [
      'label: gpt',
      'start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name="ESP"',
      'start=10240, size=16384, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="system"',
      'start=26700, size=2000, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="odd"',
      '',
    ].join('\n');
    execFileSync('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', scratch], { input: script });
    base = readFileSync(scratch);
    rmSync(scratch);
    ({ state } = initState(dir, base, { name: 'base.img' }));
  });
  after(async () => {
    if (daemon) {
      daemon.kill('SIGKILL');
      await exited(daemon);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const refused = (args: string[], msg: RegExp, code = 1): void => snapbackRefused(state, args, msg, code);

  it('refuses a partition that does not exist, an image larger than its partition, and an unaligned partition', () => {
    const small = join(dir, 'small.img');
    writeFileSync(small, patternBytes(MIB, 7));
    const big = join(dir, 'big.img');
    writeFileSync(big, patternBytes(5 * MIB, 8));
    refused(['model', 'import', small, '--name', 'p9', '--partition', '9'], /partition 9 does not exist \(the disk's GPT has partitions 1, 2, 3\)/);
    refused(['model', 'import', big, '--name', 'p1', '--partition', '1'], /holds 5242880 bytes, more than partition 1 \(4194304 bytes\)/, 2);
    refused(['model', 'import', small, '--name', 'p3', '--partition', '3'], /partition 3 \(bytes 13670400\+1024000\) does not start and end on the model's region boundaries \(regions of 1 MiB\)/, 2);
    const bad = snapback(['model', 'import', small, '--name', 'p0', '--partition', 'two', '--state-dir', state]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /"two" is not a partition number/);
  });

  it('imports a partition image from the state directory and through the daemon; activated, the host reads it there and the base elsewhere, and a session end restores both', async () => {
    // offline: 3 MiB of a new filesystem image for the 8 MiB partition 2
    const image = join(dir, 'system.img');
    const bytes = patternBytes(3 * MIB, 2);
    writeFileSync(image, bytes);
    const r = snapback(['model', 'import', image, '--name', 'system v2', '--partition', '2', '--json', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    const rec = JSON.parse(r.stdout) as ModelRecord;
    const baseRec = (JSON.parse(snapback(['model', 'list', '--json', '--state-dir', state]).stdout) as ModelRecord[]).find((m) => m.active)!;
    assert.deepEqual(rec.partition, { number: 2, offset: P2.start, size: P2.size });
    assert.equal(rec.parent, baseRec.id);
    assert.equal(rec.size, SIZE);
    const human = snapback(['model', 'import', image, '--name', 'again', '--partition', '2', '--state-dir', state]);
    assert.equal(human.code, 1, 'the same partition model twice is the same model');
    assert.match(human.stderr, /already in the library as "system v2"/);

    daemon = await startServe(state);
    // through the daemon (its API): another image of partition 2
    const image3 = join(dir, 'system-v3.img');
    const bytes3 = patternBytes(2 * MIB, 3);
    writeFileSync(image3, bytes3);
    const viaDaemon = snapback(['model', 'import', image3, '--name', 'system v3', '--partition', '2', '--state-dir', state]);
    assert.equal(viaDaemon.code, 0, viaDaemon.stderr);
    assert.match(viaDaemon.stdout, /imported "system v3": partition 2 \(8 MiB from byte 5242880\) of a 16 MiB disk/);
    const listed = JSON.parse(snapback(['model', 'list', '--json', '--state-dir', state]).stdout) as ModelRecord[];
    assert.deepEqual(listed.find((m) => m.name === 'system v3')!.partition, { number: 2, offset: P2.start, size: P2.size });
    assert.equal(listed.find((m) => m.name === 'base.img')!.partition ?? null, null);

    const act = snapback(['model', 'activate', 'system v2', '--now', '--state-dir', state]);
    assert.equal(act.code, 0, act.stderr);
    let view = hostReads(state, dir);
    const expected = Buffer.from(base);
    bytes.copy(expected, P2.start);
    assert.ok(view.subarray(P2.start, P2.start + bytes.length).equals(bytes), 'partition 2 starts with the image');
    assert.ok(view.equals(expected), 'everywhere else: the whole-disk model (the rest of partition 2 too)');

    // the host writes into both partitions; a session end restores both
    const junk = join(dir, 'junk.img');
    writeFileSync(junk, view);
    const fd = openSync(junk, 'r+');
    writeSync(fd, patternBytes(64 * 1024, 9), 0, 64 * 1024, 2 * MIB); // partition 1
    writeSync(fd, patternBytes(64 * 1024, 10), 0, 64 * 1024, P2.start + 4096); // partition 2, in the image's part
    closeSync(fd);
    assert.equal(tool('nbdcopy', [junk, nbdUri(state)]).code, 0);
    assert.ok(!hostReads(state, dir).equals(expected), 'the host changed its disk');
    const end = snapback(['session', 'end', '--wait', '--state-dir', state]);
    assert.equal(end.code, 0, end.stderr);
    view = hostReads(state, dir);
    assert.ok(view.equals(expected), 'after the session end: the partition model again');
  });
});
