/**
 * The file format of a region bitmap kept across daemon starts (which regions of a model from a
 * URL are present, which regions of a model were verified): one JSON header line (its `format`
 * first), the bitmap (bit r set: region r), then the SHA-256 of everything before it.
 *
 * Saved with writeFileDurably, so a power cut leaves the old file or the new one. A file that is
 * cut short, fails its checksum, has a header its owner's schema refuses, or a bitmap of another
 * length than the header's region count is refused as STATE_CORRUPT; its owners treat that as
 * no file (the bitmap only saves work that can be done again).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import { SnapbackError, fromSystemError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';
import { writeFileDurably } from './durable-write.js';

const SUM_BYTES = 32;

/** What every bitmap file's header holds; each owner adds its own fields after these. */
export interface BitmapHeader {
  format: string;
  regionCount: number;
}

/** How many of the first `regionCount` bits are set. */
export function countBits(bits: Uint8Array, regionCount: number): number {
  let n = 0;
  for (let r = 0; r < regionCount; r++) if (bits[r >> 3]! & (1 << (r & 7))) n++;
  return n;
}

/** Replaces the file at `path` with this header and bitmap, durably. */
export async function saveBitmapFile<H extends BitmapHeader>(path: string, header: H, bits: Uint8Array, mode: number): Promise<void> {
  const head = Buffer.from(JSON.stringify(header) + '\n');
  const sum = createHash('sha256').update(head).update(bits).digest();
  await writeFileDurably(path, Buffer.concat([head, bits, sum]), mode);
}

/**
 * The header (checked by `schema`) and bitmap of the file at `path`, or null when there is no
 * file. Throws STATE_CORRUPT for a damaged or foreign file, IO_ERROR when it cannot be read.
 */
export async function loadBitmapFile<H extends BitmapHeader>(path: string, schema: z.ZodType<H>): Promise<{ header: H; bits: Uint8Array } | null> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, `reading ${path}`);
  }
  const corrupt = (why: string): SnapbackError => new SnapbackError('STATE_CORRUPT', `${path}: ${why}`, { path });
  if (data.length <= SUM_BYTES) throw corrupt('too short to be a bitmap file');
  const body = data.subarray(0, data.length - SUM_BYTES);
  if (!createHash('sha256').update(body).digest().equals(data.subarray(data.length - SUM_BYTES))) throw corrupt('checksum mismatch');
  const nl = body.indexOf(10);
  if (nl < 0) throw corrupt('no header line');
  let json: unknown;
  try {
    json = JSON.parse(body.subarray(0, nl).toString('utf8'));
  } catch {
    throw corrupt('the header is not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw corrupt(`unexpected header: ${formatZodIssues(parsed.error, 'header')}`);
  const header = parsed.data;
  const bits = body.subarray(nl + 1);
  if (bits.length !== Math.ceil(header.regionCount / 8)) throw corrupt(`${bits.length} bitmap bytes for ${header.regionCount} regions`);
  return { header, bits: new Uint8Array(bits) };
}
