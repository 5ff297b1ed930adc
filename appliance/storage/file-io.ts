/**
 * Positional file I/O that finishes what it starts: a read that fills its whole buffer (or
 * fails at the end of the file), a write that writes every byte; and the all-zero test that
 * lets copies leave holes where the data is zeroes. Shared by the model library's imports,
 * captures and the engine's init.
 */
import type { FileHandle } from 'node:fs/promises';
import { SnapbackError } from '../errors.js';

/** Fills `buf` from `position`; a file that ends first is an I/O error. */
export async function readAll(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let at = 0;
  while (at < buf.length) {
    const { bytesRead } = await fh.read(buf, at, buf.length - at, position + at);
    if (bytesRead === 0) throw new SnapbackError('IO_ERROR', `unexpected end of file at byte ${position + at}`);
    at += bytesRead;
  }
}

/** Writes all of `data` at `position`. */
export async function writeAll(fh: FileHandle, data: Buffer, position: number): Promise<void> {
  let at = 0;
  while (at < data.length) {
    const { bytesWritten } = await fh.write(data, at, data.length - at, position + at);
    if (bytesWritten === 0) throw new SnapbackError('IO_ERROR', 'a write made no progress');
    at += bytesWritten;
  }
}

const ZERO = Buffer.alloc(1 << 16);

/** Whether every byte of `b` is zero. */
export function isAllZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - i);
    if (!b.subarray(i, i + n).equals(ZERO.subarray(0, n))) return false;
  }
  return true;
}
