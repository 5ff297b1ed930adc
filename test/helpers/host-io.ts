/**
 * The host's side of a daemon's disk, through the daemon's NBD socket with real clients: what the
 * host reads of the whole disk (nbdcopy), and a write it makes and flushes (nbdsh, libnbd's
 * Python shell). Scratch files go to `dir`, the test's temporary directory, and are removed.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { nbdUri, tool } from './cli.js';
import { nbdsh } from './nbd-clients.js';

/** What the host reads of its whole disk, served by the daemon of `stateDir`. */
export function hostReads(stateDir: string, dir: string): Buffer {
  const out = join(dir, 'host-reads.img');
  const r = tool('nbdcopy', [nbdUri(stateDir), out]);
  assert.equal(r.code, 0, r.stderr);
  try {
    return readFileSync(out);
  } finally {
    rmSync(out, { force: true });
  }
}

/** The host writes `data` at `offset` to the disk served by the daemon of `stateDir`, and flushes. */
export async function hostWrites(stateDir: string, dir: string, offset: number, data: Buffer): Promise<void> {
  const src = join(dir, 'host-writes.bin');
  writeFileSync(src, data);
  try {
    await nbdsh(`h.connect_uri(${JSON.stringify(nbdUri(stateDir))})\nh.pwrite(open(${JSON.stringify(src)}, 'rb').read(), ${offset})\nh.flush()\nh.shutdown()\n`);
  } finally {
    rmSync(src, { force: true });
  }
}
