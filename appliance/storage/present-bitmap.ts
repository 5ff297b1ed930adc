/**
 * Which regions of a model arriving from a URL are local and verified (dm-clone's "hydration
 * bitmap"): bit r set means region r's bytes were fetched, matched the manifest and were made
 * durable in the local image before the bit was written. A crash between the data and its bit
 * only means the region is fetched again; a bit is never set for bytes that are not on disk.
 *
 * File: one JSON header line (format, manifest id, region count, regions present), the bitmap,
 * then the SHA-256 of everything before it. Written to a temporary file, synced, renamed over
 * the old one, and the directory synced. A missing, damaged or foreign file reads as "nothing
 * present" (everything is fetched again, never trusted).
 */
import { createHash } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';

const PRESENT_FORMAT = 'snapback-present/1';

const headerSchema = z.object({
  format: z.literal(PRESENT_FORMAT),
  manifestId: z.string(),
  regionCount: z.number().int().nonnegative(),
  present: z.number().int().nonnegative(),
});

export function countBits(bits: Uint8Array, regionCount: number): number {
  let n = 0;
  for (let r = 0; r < regionCount; r++) if (bits[r >> 3]! & (1 << (r & 7))) n++;
  return n;
}

/** The bitmap kept at `path` for this manifest, or null (none, damaged, or another model's). */
export async function loadPresent(path: string, manifestId: string, regionCount: number): Promise<Uint8Array | null> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch {
    return null;
  }
  if (data.length < 33) return null;
  const body = data.subarray(0, data.length - 32);
  if (!createHash('sha256').update(body).digest().equals(data.subarray(data.length - 32))) return null;
  const nl = body.indexOf(10);
  if (nl < 0) return null;
  try {
    const header = headerSchema.parse(JSON.parse(body.subarray(0, nl).toString('utf8')));
    if (header.manifestId !== manifestId || header.regionCount !== regionCount) return null;
  } catch {
    return null;
  }
  const bits = body.subarray(nl + 1);
  if (bits.length !== Math.ceil(regionCount / 8)) return null;
  return new Uint8Array(bits);
}

/** Replaces the bitmap at `path`, durably (file and directory synced). */
export async function savePresent(path: string, manifestId: string, regionCount: number, bits: Uint8Array): Promise<void> {
  const header = Buffer.from(JSON.stringify({ format: PRESENT_FORMAT, manifestId, regionCount, present: countBits(bits, regionCount) }) + '\n');
  const sum = createHash('sha256').update(header).update(bits).digest();
  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w', 0o644);
  try {
    await fh.writeFile(Buffer.concat([header, bits, sum]));
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
