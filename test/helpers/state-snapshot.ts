/**
 * A fingerprint of what a failed model operation must leave alone in a state directory: the
 * write log, snapback.json, and every file under models/ (records, manifests, images, what the
 * staging directory holds), names and contents.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export function stateSnapshot(state: string): string {
  const h = createHash('sha256');
  for (const f of ['write-log.bin', 'snapback.json']) h.update(f).update(readFileSync(join(state, f)));
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      h.update(p);
      if (e.isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(join(state, 'models'));
  return h.digest('hex');
}
