/**
 * The bytes this process keeps alive (after two full garbage collections), for the benchmark's
 * table of what each in-memory part of the daemon costs. Node's `external` already includes
 * `arrayBuffers` (every Buffer), so the two are not added: a Buffer counts once.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

export function retainedBytes(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}
