/**
 * A capture on a filesystem that can share blocks (XFS with reflink, on a loop device) copies
 * only what changed: the new model's image is a reflink of its parent's with the regions the
 * host wrote copied over it, so a 64 MiB model captured after a 192 KiB write costs about that
 * write in space, and its bytes are still exactly what the host reads.
 */
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { patternBytes, Prng } from '../helpers/prng.js';
import { snapbackOk, tool, startServe, exited, nbdUri } from '../helpers/cli.js';
import { nbdsh } from '../helpers/nbd-clients.js';
import { freeBytes, Mounts } from '../helpers/mounts.js';

const MODEL = 64 << 20;

describe('model capture on a filesystem with reflinks', function () {
  this.timeout(180_000);
  let dir: string;
  let mnt: string;
  const mounts = new Mounts();
  let daemon: ChildProcess | null = null;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-capture-reflink-'));
    mnt = mounts.loop(join(dir, 'xfs.img'), join(dir, 'mnt'), ['mkfs.xfs', '-q', '-m', 'reflink=1'], 512 << 20);
  });
  after(async () => {
    if (daemon) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    mounts.unmountAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it("captures a thawed session's writes over a reflink of the parent: the space used is the writes', the image is the host's view", async () => {
    const model = join(mnt, 'model.img');
    writeFileSync(model, patternBytes(MODEL, 5));
    const state = join(mnt, 'state');
    const ok = (args: string[]): string => snapbackOk(state, args);
    ok(['init', '--model', model, '--disk', join(mnt, 'disk.img')]);
    ok(['restore']);
    daemon = await startServe(state);
    ok(['mode', 'thawed']);
    const src = join(dir, 'write.bin');
    writeFileSync(src, new Prng(9).bytes(192 << 10));
    await nbdsh(`h.connect_uri(${JSON.stringify(nbdUri(state))})\nh.pwrite(open(${JSON.stringify(src)}, 'rb').read(), ${20 << 20})\nh.flush()\nh.shutdown()\n`);
    const seenFile = join(dir, 'seen.img');
    const r = tool('nbdcopy', [nbdUri(state), seenFile]);
    assert.equal(r.code, 0, r.stderr);
    execFileSync('sync');
    const before = freeBytes(mnt);
    const id = ok(['model', 'capture', '--name', 'captured']).trim().split('\n').pop() ?? '';
    execFileSync('sync');
    const used = before - freeBytes(mnt);
    assert.ok(used < 4 << 20, `the capture used ${used} bytes for a ${MODEL}-byte model: the parent's blocks were not shared`);
    assert.ok(readFileSync(join(state, 'models', id, 'image')).equals(readFileSync(seenFile)), "the captured image is not the host's view");
  });
});
