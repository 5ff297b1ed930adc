/**
 * One long kernel VM at a time across the test processes of a run. The suite runs its files in
 * parallel on a 2-core machine, and a TCG guest needs a whole core: the gadget rig's and the
 * appliance image's VMs, each minutes long, would otherwise share one and stretch their
 * guests' own deadlines. The slot is a directory made with mkdir (atomic) under the temporary
 * directory, holding the owner's pid; a slot whose owner is gone is taken over.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SLOT = path.join(os.tmpdir(), 'snapback-test-kernel-vm.slot');

export async function withKernelVmSlot<T>(fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      await fs.mkdir(SLOT);
      await fs.writeFile(path.join(SLOT, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await fs.readFile(path.join(SLOT, 'pid'), 'utf8').catch(() => ''));
      if (owner > 0 && !alive(owner)) {
        await fs.rm(SLOT, { recursive: true, force: true });
        continue;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(SLOT, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
