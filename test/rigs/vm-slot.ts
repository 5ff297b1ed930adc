/**
 * One long kernel VM at a time across the test processes of a run. The suite runs its files in
 * parallel on a 2-core machine, and a TCG guest needs a whole core: the gadget rig's and the
 * appliance image's VMs, each minutes long, would otherwise share one and stretch their
 * guests' own deadlines. The slot is a lock directory under the temporary directory.
 */
import os from 'node:os';
import path from 'node:path';
import { withDirLock } from './dir-lock.js';

const SLOT = path.join(os.tmpdir(), 'snapback-test-kernel-vm.slot');

export function withKernelVmSlot<T>(fn: () => Promise<T>): Promise<T> {
  return withDirLock(SLOT, 500, fn);
}
