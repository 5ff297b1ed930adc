/**
 * A lock shared by the test processes of a run: a directory made with mkdir (atomic) holding
 * the owner's pid. A lock whose owner is gone (a killed test run) is taken over.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';

export async function withDirLock<T>(lock: string, pollMs: number, fn: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      await fs.mkdir(lock);
      await fs.writeFile(path.join(lock, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await fs.readFile(path.join(lock, 'pid'), 'utf8').catch(() => ''));
      if (owner > 0 && !alive(owner)) {
        await fs.rm(lock, { recursive: true, force: true });
        continue;
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  }
  try {
    return await fn();
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
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
