/**
 * Small files written so that a power cut leaves the old content or the new, never a torn one:
 * a temporary file beside the target, fsync'd, renamed over it, and the directory fsync'd so
 * that the rename itself is durable. Also the directory fsync on its own, for renames of
 * whole directories (a model moved into the library).
 */
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fromSystemError } from '../errors.js';

/** Makes the entries of `dir` (creations, renames, removals) durable. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Replaces `path` with `data`, durably (see above). */
export async function writeFileDurably(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  try {
    const fh = await open(tmp, 'w', mode);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await syncDir(dirname(path));
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw fromSystemError(err, `writing ${path}`);
  }
}
