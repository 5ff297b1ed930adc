/**
 * The digest functions a manifest may name, by name. One table, used on the main thread (the
 * manifest's id) and inside the hash workers (region digests), so a further named hash is one
 * entry here and every caller gets it.
 *
 * BLAKE3 (blake3.ts: native SIMD code where its binary loads, else WebAssembly) is the default
 * for new manifests: a Pi 4 core has no SHA-2 instructions and hashes SHA-256 at about
 * 100 MB/s. The others come from OpenSSL.
 */
import { createHash } from 'node:crypto';
import { blake3Backend } from './blake3.js';

export const SUPPORTED_HASHES = ['sha256', 'sha1', 'blake2b512', 'blake3'] as const;
export type HashName = (typeof SUPPORTED_HASHES)[number];

/** The hash new manifests use unless told otherwise. */
export const DEFAULT_MANIFEST_HASH: HashName = 'blake3';

/** Digest length in bytes of each named hash. */
export const DIGEST_LENGTHS: Readonly<Record<HashName, number>> = { sha256: 32, sha1: 20, blake2b512: 64, blake3: 32 };

export function isHashName(s: string): s is HashName {
  return (SUPPORTED_HASHES as readonly string[]).includes(s);
}

/** An incremental digest: update with parts, then one digest. */
export interface Digester {
  update(data: Uint8Array): Digester;
  digest(): Buffer;
}

class Blake3Digester implements Digester {
  private readonly h = blake3Backend().stream();
  update(data: Uint8Array): Digester {
    this.h.update(data);
    return this;
  }
  digest(): Buffer {
    return this.h.digest();
  }
}

export function newDigester(hash: HashName): Digester {
  return hash === 'blake3' ? new Blake3Digester() : createHash(hash);
}

/** The digest of one buffer. */
export function digestOf(hash: HashName, data: Uint8Array): Buffer {
  if (hash === 'blake3') {
    const out = Buffer.allocUnsafe(DIGEST_LENGTHS.blake3);
    blake3Backend().hashInto(data, out);
    return out;
  }
  return newDigester(hash).update(data).digest();
}

/**
 * Digests of consecutive regions of `data` (the last one may be short), written one after the
 * other into `out` from `outOffset`.
 */
export function digestRegionsInto(hash: HashName, data: Uint8Array, regionSize: number, out: Uint8Array, outOffset = 0): void {
  const n = DIGEST_LENGTHS[hash];
  for (let a = 0, i = 0; a < data.length; a += regionSize, i++) {
    const region = data.subarray(a, Math.min(data.length, a + regionSize));
    if (hash === 'blake3') blake3Backend().hashInto(region, out.subarray(outOffset + i * n, outOffset + i * n + n));
    else out.set(digestOf(hash, region), outOffset + i * n);
  }
}

const zeroDigests = new Map<string, Buffer>();

/**
 * The digest of `length` zero bytes (a region in a hole of a sparse image), computed once per
 * hash and length.
 */
export function zeroRegionDigest(hash: HashName, length: number): Buffer {
  const key = `${hash}/${length}`;
  let d = zeroDigests.get(key);
  if (!d) {
    d = digestOf(hash, new Uint8Array(length));
    zeroDigests.set(key, d);
  }
  return d;
}
