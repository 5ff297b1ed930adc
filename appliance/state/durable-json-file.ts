/**
 * A lowdb adapter that makes every write durable: the JSON goes to a temporary file in the same
 * directory, which is fsync'd, renamed over the real file, and then the directory is fsync'd so
 * that the rename itself survives a power cut. lowdb's own JSONFile does none of that (and its
 * presets swap in an in-memory adapter when NODE_ENV=test), so the state store uses this one in
 * every environment.
 *
 * A file that exists but cannot be read as JSON is never replaced: `read()` rejects with a
 * StateCorruptError and the caller decides; nothing here writes unless asked to.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Adapter } from 'lowdb';
import { SnapbackError, fromSystemError } from '../errors.js';

/**
 * The state file exists but is not usable (not JSON, not the expected shape, or from a newer
 * schema). Code STATE_CORRUPT with `details.reason` telling which; the file is left as it was.
 */
export class StateCorruptError extends SnapbackError {
  readonly reason: 'unparseable' | 'invalid' | 'newer-schema';
  readonly path: string;
  constructor(path: string, reason: 'unparseable' | 'invalid' | 'newer-schema', message: string, options?: { cause?: unknown }) {
    super('STATE_CORRUPT', message, { reason: reason === 'newer-schema' ? 'STATE_NEWER_SCHEMA' : 'STATE_CORRUPT', path }, options);
    this.name = 'StateCorruptError';
    this.reason = reason;
    this.path = path;
  }
}

export class DurableJsonFile<T> implements Adapter<T> {
  readonly path: string;
  private readonly tmpPath: string;

  constructor(path: string) {
    this.path = path;
    this.tmpPath = join(dirname(path), `.${basename(path)}.tmp`);
  }

  async read(): Promise<T | null> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw fromSystemError(err, `reading the state file ${this.path}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new StateCorruptError(
        this.path,
        'unparseable',
        `the state file ${this.path} is not valid JSON (${(err as Error).message}); it was left untouched. ` +
          'Restore it from a backup, or move it aside to start with empty settings, users and history.',
        { cause: err },
      );
    }
  }

  async write(data: T): Promise<void> {
    // Serialise synchronously, so the bytes written are the data as it was at the call.
    const text = JSON.stringify(data, null, 1) + '\n';
    try {
      const fh = await open(this.tmpPath, 'w', 0o600);
      try {
        await fh.writeFile(text, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(this.tmpPath, this.path);
      await syncDir(dirname(this.path));
    } catch (err) {
      await unlink(this.tmpPath).catch(() => undefined);
      throw fromSystemError(err, `writing the state file ${this.path}`);
    }
  }

  /** Removes a temporary file left by a write that a crash interrupted (the real file is intact). */
  async removeLeftovers(): Promise<void> {
    await unlink(this.tmpPath).catch(() => undefined);
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
