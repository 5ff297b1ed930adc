/**
 * Partitions on the real-OS host rig: a QEMU PC boots over USB from the disk Snapback serves
 * (docs/host-boot-rig.md), whose model has a FAT system partition (1) and a FAT data partition
 * (2). Partition 2 is made persistent by its number; the guest writes a file on each partition,
 * the appliance is power-cycled (a frozen session end), and the next boot finds the file on the
 * persistent partition and not the one on the system partition. One appliance and one sequence of
 * boots for the whole file.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { copyFileSync, chmodSync, existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildHostImage, type HostImage } from '../rigs/host-image.js';
import { HostVm, requireVmTools } from '../rigs/host-vm.js';
import { CLI, exited, snapback, startServe } from '../helpers/cli.js';
import type { PersistentList } from '../../appliance/api/persistent.js';

/** The guest writes one file on each partition. */
const WRITE_BOTH = `
mount -t vfat /dev/sda1 /mnt || fail "mount the system partition"
echo "written on the system partition" > /mnt/SYSTEM.TXT
umount /mnt
mount -t vfat /dev/sda2 /mnt || fail "mount the persistent partition"
echo "kept across power cycles" > /mnt/KEEP.TXT
umount /mnt
sync
mark written
`;

/** The guest says which of the two files it finds. */
const LOOK_FOR_BOTH = `
mount -t vfat -o ro /dev/sda1 /mnt || fail "mount the system partition"
if [ -e /mnt/SYSTEM.TXT ]; then mark system-file present; else mark system-file absent; fi
umount /mnt
mount -t vfat -o ro /dev/sda2 /mnt || fail "mount the persistent partition"
if [ -e /mnt/KEEP.TXT ]; then mark persistent-file "$(cat /mnt/KEEP.TXT)"; else mark persistent-file absent; fi
umount /mnt
`;

describe('host boot with partitions: a persistent data partition on the real-OS host rig', function () {
  this.timeout(600_000);
  let root: string;
  let model: HostImage;
  let state: string;
  let daemon: ChildProcess | null = null;
  let boots = 0;

  const ok = (args: string[]): string => {
    const r = snapback([...args, '--state-dir', state]);
    assert.equal(r.code, 0, `snapback ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  /** Boots the guest with a scenario until its clean power-off; the guest's reports. */
  const boot = async (name: string, scenario: string): Promise<HostVm> => {
    const dir = path.join(root, `${++boots}-${name}`);
    await fs.mkdir(dir, { recursive: true });
    const vm = HostVm.start({ dir, name, nbdSocket: path.join(state, 'nbd.sock'), scenario });
    await vm.waitPoweroff(180_000);
    const exit = vm.find('exit');
    assert.equal(exit?.args[0], '0', `${name}: the scenario failed\n${await vm.diagnostics()}`);
    return vm;
  };
  const said = (vm: HostVm, key: string): string => (vm.find(key)?.args ?? []).slice(0, -1).join(' ');

  before(async function () {
    requireVmTools();
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'snapback-host-partitions-'));
    model = await buildHostImage({ dir: root, name: 'model-fat-data', sizeMiB: 64, dataPartition: 'fat' });
    state = path.join(root, 'state');
    const disk = path.join(root, 'working-disk.img');
    copyFileSync(model.path, disk);
    chmodSync(disk, 0o644);
    ok(['init', '--model', model.path, '--disk', disk, '--region-size', '64K', '--disk-matches-model']);
  });
  after(async () => {
    if (daemon) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    if (root) await fs.rm(root, { recursive: true, force: true });
  });

  it('a file written to a persistent partition survives a power cycle while a file on the system partition is restored', async () => {
    // named by its number in the model's partition table; in force from the daemon's start
    assert.match(ok(['persistent', 'add', '--partition', '2']), /persistent area 1 \(partition 2, .*\) will be added at the next session end/);
    daemon = await startServe(state);
    const list = JSON.parse(ok(['persistent', 'list', '--json'])) as PersistentList;
    assert.deepEqual(list.active.map((a) => [a.partition, a.offset, a.length]), [[2, model.dataPartition.start, model.dataPartition.size]]);

    const first = await boot('write-both', WRITE_BOTH);
    assert.ok(first.find('written'), 'the guest did not write its files');
    const verified = snapback(['verify', '--json', '--state-dir', state]);
    assert.equal(verified.code, 0, `verify reports unlogged differences: ${verified.stdout}${verified.stderr}`);

    ok(['session', 'end', '--wait']); // the power cycle: a frozen session end
    const second = await boot('look-for-both', LOOK_FOR_BOTH);
    assert.equal(said(second, 'system-file'), 'absent', 'the file on the system partition was not restored away');
    assert.equal(said(second, 'persistent-file'), 'kept across power cycles', 'the file on the persistent partition did not survive the power cycle');
  });
});
