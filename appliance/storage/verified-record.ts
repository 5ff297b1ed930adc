/**
 * What was verified of a model, kept across daemon starts: for one manifest (its id) and one
 * state of the image file (device, inode, size, mtime and ctime in nanoseconds), the regions
 * whose bytes were hashed and matched the manifest. A daemon start then trusts those regions
 * instead of hashing them again; any change to the file changes its ctime (which no tool can
 * set back) and with it the identity, so a changed model is hashed again, never trusted.
 *
 * Only regular files get a record: a block device's inode times do not follow its contents.
 * The record is a cache: a missing, damaged or foreign one only means hashing again.
 *
 * Kept as a bitmap file (bitmap-file.ts; bit r set: region r verified) whose header holds the key.
 */
import { fstat, type BigIntStats } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { countBits, loadBitmapFile, saveBitmapFile } from './bitmap-file.js';

export const VERIFIED_RECORD_FORMAT = 'snapback-verified/1';

export interface FileIdentity {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
}

/** The identity of a regular file (a path, or an open fd: the file actually read), or null for anything else (a block device, …). */
export async function fileIdentity(file: string | number): Promise<FileIdentity | null> {
  const st = typeof file === 'number' ? await new Promise<BigIntStats>((res, rej) => fstat(file, { bigint: true }, (err, s) => (err ? rej(err) : res(s)))) : await stat(file, { bigint: true });
  if (!st.isFile()) return null;
  return { dev: String(st.dev), ino: String(st.ino), size: String(st.size), mtimeNs: String(st.mtimeNs), ctimeNs: String(st.ctimeNs) };
}

export function sameIdentity(a: FileIdentity, b: FileIdentity): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;
}

export interface VerifiedKey {
  manifestId: string;
  regionCount: number;
  identity: FileIdentity;
}

const headerSchema = z.object({
  format: z.literal(VERIFIED_RECORD_FORMAT),
  manifestId: z.string(),
  regionCount: z.number().int().nonnegative(),
  identity: z.object({ dev: z.string(), ino: z.string(), size: z.string(), mtimeNs: z.string(), ctimeNs: z.string() }),
  verified: z.number().int().nonnegative(),
});

/** Where the record of a model with this manifest id lives in `dir`. */
export function verifiedRecordPath(dir: string, manifestId: string): string {
  return join(dir, `${manifestId}.verified`);
}

/**
 * The bitmap stored for exactly this key (same manifest, same file identity), or null when
 * there is none, it is for another key, or it is damaged.
 */
export async function loadVerified(path: string, key: VerifiedKey): Promise<Uint8Array | null> {
  const file = await loadBitmapFile(path, headerSchema).catch(() => null);
  if (!file) return null;
  const { header } = file;
  if (header.manifestId !== key.manifestId || header.regionCount !== key.regionCount || !sameIdentity(header.identity, key.identity)) return null;
  return file.bits;
}

/** Replaces the record at `path` with this key and bitmap. */
export async function saveVerified(path: string, key: VerifiedKey, bits: Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const header = { format: VERIFIED_RECORD_FORMAT, manifestId: key.manifestId, regionCount: key.regionCount, identity: key.identity, verified: countBits(bits, key.regionCount) };
  await saveBitmapFile(path, header, bits, 0o600);
}
