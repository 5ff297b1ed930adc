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
 * File: one JSON header line, the bitmap (bit r set: region r verified), then the SHA-256 of
 * everything before it. Written to a temporary file and renamed over the old one.
 */
import { createHash } from 'node:crypto';
import { fstat, type BigIntStats } from 'node:fs';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';

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
  let header: z.infer<typeof headerSchema>;
  try {
    header = headerSchema.parse(JSON.parse(body.subarray(0, nl).toString('utf8')));
  } catch {
    return null;
  }
  if (header.manifestId !== key.manifestId || header.regionCount !== key.regionCount || !sameIdentity(header.identity, key.identity)) return null;
  const bits = body.subarray(nl + 1);
  if (bits.length !== Math.ceil(key.regionCount / 8)) return null;
  return new Uint8Array(bits);
}

/** Replaces the record at `path` with this key and bitmap. */
export async function saveVerified(path: string, key: VerifiedKey, bits: Uint8Array): Promise<void> {
  let verified = 0;
  for (let r = 0; r < key.regionCount; r++) if (bits[r >> 3]! & (1 << (r & 7))) verified++;
  const header = Buffer.from(JSON.stringify({ format: VERIFIED_RECORD_FORMAT, manifestId: key.manifestId, regionCount: key.regionCount, identity: key.identity, verified }) + '\n');
  const sum = createHash('sha256').update(header).update(bits).digest();
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, Buffer.concat([header, bits, sum]), { mode: 0o600 });
  await rename(tmp, path);
}

export async function removeVerified(path: string): Promise<void> {
  await unlink(path).catch(() => undefined);
}
