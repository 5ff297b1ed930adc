/**
 * A partition model on the real-OS host rig: the boot partition (FAT16, partition 1) of the
 * rig's model gets a new image with one more file, imported as a model of partition 1 and
 * activated. A QEMU PC booting from Snapback finds the new file on its boot partition, boots
 * from it as before, writes to the disk; after the session end every byte of partition 1 is the
 * partition image's and every other byte the whole-disk model's.
 */
import { strict as assert } from 'node:assert';
import { execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { exited, nbdUri, snapback, startServe, tool } from '../helpers/cli.js';
import { buildHostImage, type HostImage } from '../rigs/host-image.js';
import { HostVm, requireVmTools } from '../rigs/host-vm.js';

const NOTE = 'this boot partition comes from a partition model';

describe('host boot: a partition model of the boot partition', function () {
  this.timeout(600_000);
  let root: string;
  let model: HostImage;
  let daemon: ChildProcess | null = null;

  before(async () => {
    requireVmTools();
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'snapback-host-partmodel-'));
    model = await buildHostImage({ dir: root, name: 'model', sizeMiB: 64 });
  });
  after(async () => {
    if (daemon) {
      daemon.kill('SIGKILL');
      await exited(daemon);
    }
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  it('boots with partition 1 from the partition image and the rest from the model, and a session end restores both', async () => {
    const whole = await fs.readFile(model.path);
    const boot = model.bootPartition;
    // The new boot partition: the model's, with one more file on the FAT.
    const partImage = path.join(root, 'boot-v2.img');
    await fs.writeFile(partImage, whole.subarray(boot.start, boot.start + boot.size));
    await fs.writeFile(path.join(root, 'note.txt'), NOTE + '\n');
    execFileSync('mcopy', ['-i', partImage, path.join(root, 'note.txt'), '::/partition-model.txt']);
    const partBytes = await fs.readFile(partImage);
    const expected = Buffer.from(whole);
    partBytes.copy(expected, boot.start);

    const state = path.join(root, 'state');
    const disk = path.join(root, 'disk.img');
    await fs.copyFile(model.path, disk);
    let r = snapback(['init', '--state-dir', state, '--model', model.path, '--disk', disk, '--disk-matches-model']);
    assert.equal(r.code, 0, r.stderr);
    r = snapback(['model', 'import', partImage, '--name', 'boot v2', '--partition', '1', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /imported "boot v2": partition 1 /);
    r = snapback(['model', 'activate', 'boot v2', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    daemon = await startServe(state); // the daemon's start ends the session: on the new model

    const vm = HostVm.start({
      dir: root,
      name: 'boot-partition-model',
      nbdSocket: path.join(state, 'nbd.sock'),
      scenario: `
mount -t vfat /dev/sda1 /mnt || fail "cannot mount the boot partition"
echo "@@ note $(cat /mnt/partition-model.txt)"
echo changed > /mnt/written-by-host.txt
umount /mnt
dd if=/dev/zero of=/dev/sda2 bs=65536 count=4 2>/dev/null
sync
blockdev --flushbufs /dev/sda
`,
    });
    const note = await vm.waitFor('note', 180_000);
    assert.equal(note.args.join(' '), NOTE, 'the host reads the file the partition image added');
    await vm.waitPoweroff(180_000);

    const host = path.join(root, 'host-view.img');
    assert.equal(tool('nbdcopy', [nbdUri(state), host]).code, 0);
    assert.ok(!(await fs.readFile(host)).equals(expected), 'the host changed its disk');
    r = snapback(['session', 'end', '--wait', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(tool('nbdcopy', [nbdUri(state), host]).code, 0);
    const after = await fs.readFile(host);
    assert.ok(after.subarray(boot.start, boot.start + boot.size).equals(partBytes), 'partition 1: the partition image');
    assert.ok(after.equals(expected), 'every other byte: the whole-disk model');
  });
});
