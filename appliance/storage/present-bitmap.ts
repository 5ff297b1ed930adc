/**
 * Which regions of a model arriving from a URL are local and verified (dm-clone's "hydration
 * bitmap"): bit r set means region r's bytes were fetched, matched the manifest and were made
 * durable in the local image before the bit was written. A crash between the data and its bit
 * only means the region is fetched again; a bit is never set for bytes that are not on disk.
 *
 * Kept as a bitmap file (bitmap-file.ts) whose header names the manifest, the region count and
 * how many regions are present. A missing, damaged or foreign file reads as "nothing present"
 * (everything is fetched again, never trusted).
 */
import { z } from 'zod';
import { countBits, loadBitmapFile, saveBitmapFile } from './bitmap-file.js';

const PRESENT_FORMAT = 'snapback-present/1';

const headerSchema = z.object({
  format: z.literal(PRESENT_FORMAT),
  manifestId: z.string(),
  regionCount: z.number().int().nonnegative(),
  present: z.number().int().nonnegative(),
});

/** The bitmap kept at `path` for this manifest, or null (none, damaged, or another model's). */
export async function loadPresent(path: string, manifestId: string, regionCount: number): Promise<Uint8Array | null> {
  const file = await loadBitmapFile(path, headerSchema).catch(() => null);
  if (!file || file.header.manifestId !== manifestId || file.header.regionCount !== regionCount) return null;
  return file.bits;
}

/** Replaces the bitmap at `path`, durably (file and directory synced). */
export async function savePresent(path: string, manifestId: string, regionCount: number, bits: Uint8Array): Promise<void> {
  await saveBitmapFile(path, { format: PRESENT_FORMAT, manifestId, regionCount, present: countBits(bits, regionCount) }, bits, 0o644);
}
