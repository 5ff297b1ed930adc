/**
 * The digest functions a manifest may name, by name. One table, used on the main thread (the
 * manifest's id) and inside the hash workers (region digests), so a further named hash is one
 * entry here and every caller gets it.
 */
import { createHash } from 'node:crypto';

export const SUPPORTED_HASHES = ['sha256', 'sha1', 'blake2b512'] as const;
export type HashName = (typeof SUPPORTED_HASHES)[number];

/** Digest length in bytes of each named hash. */
export const DIGEST_LENGTHS: Readonly<Record<HashName, number>> = { sha256: 32, sha1: 20, blake2b512: 64 };

export function isHashName(s: string): s is HashName {
  return (SUPPORTED_HASHES as readonly string[]).includes(s);
}

/** An incremental digest: update with parts, then one digest. */
export interface Digester {
  update(data: Uint8Array): Digester;
  digest(): Buffer;
}

export function newDigester(hash: HashName): Digester {
  return createHash(hash);
}

/** The digest of one buffer. */
export function digestOf(hash: HashName, data: Uint8Array): Buffer {
  return newDigester(hash).update(data).digest();
}

/**
 * Digests of consecutive regions of `data` (the last one may be short), written one after the
 * other into `out` from `outOffset`.
 */
export function digestRegionsInto(hash: HashName, data: Uint8Array, regionSize: number, out: Uint8Array, outOffset = 0): void {
  const n = DIGEST_LENGTHS[hash];
  for (let a = 0, i = 0; a < data.length; a += regionSize, i++) {
    out.set(digestOf(hash, data.subarray(a, Math.min(data.length, a + regionSize))), outOffset + i * n);
  }
}
