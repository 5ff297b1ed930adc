/** Which filesystem a benchmark's files land on: the benchmarks prefer tmpfs, or avoid it, per part. */
import { statfsSync } from 'node:fs';
import { TMPFS_MAGIC } from '../appliance/storage/file-device.js';

/** True when `path` is on tmpfs (false when it cannot be looked at). */
export function isTmpfs(path: string): boolean {
  try {
    return statfsSync(path).type === TMPFS_MAGIC;
  } catch {
    return false;
  }
}
