/**
 * BLAKE3, from the fastest implementation this machine can load:
 *  - native (@napi-rs/blake-hash's prebuilt binary for this platform, the BLAKE3 team's Rust
 *    crate with its SIMD code: AVX2/AVX-512 on x86-64, NEON on a Pi's arm64), about
 *    0.16 CPU s/GiB on this project's x86-64 machine. package.json carries the x86-64 binary as
 *    an optional dependency; the Pi image's build adds the one of its architecture
 *    (pi-gen/stage-snapback/02-snapback/01-run-chroot.sh);
 *  - else WebAssembly SIMD (blake3-jit: no native code, so it runs wherever Node runs), about
 *    1.1–1.4 CPU s/GiB, for a platform the native package has no binary for.
 * Both give the same digests (checked by test/unit/blake3-backends.test.ts). `blake3Backend()`
 * loads one at its first use in a thread and logs which: a daemon that hashes nothing on its main
 * thread (its hash workers do that) never maps the native library there, about 5 MB of RSS.
 */
import { createRequire } from 'node:module';
import { Hasher as WasmHasher, hashInto as wasmHashInto } from 'blake3-jit';
import { childLogger } from '../logger.js';

const log = childLogger('blake3');

/** The digest length BLAKE3 manifests use. */
export const BLAKE3_LENGTH = 32;

/** The parts of @napi-rs/blake-hash's binary used here. */
interface NativeBlake3 {
  blake3(input: Uint8Array): Buffer;
  Blake3Hasher: new () => { update(input: Uint8Array): unknown; digestBuffer(): Buffer };
}

export type Blake3BackendName = 'native' | 'wasm';

/** An incremental BLAKE3: update with parts, then one digest. */
export interface Blake3Stream {
  update(data: Uint8Array): void;
  digest(): Buffer;
}

export interface Blake3Backend {
  readonly name: Blake3BackendName;
  /** Why the native one is not used (absent when it is). */
  readonly fallbackReason?: string;
  /** The digest of `data`, written into `out` (BLAKE3_LENGTH bytes). */
  hashInto(data: Uint8Array, out: Uint8Array): void;
  stream(): Blake3Stream;
}

export const WASM_BLAKE3: Blake3Backend = {
  name: 'wasm',
  hashInto: (data, out) => wasmHashInto(data, out),
  stream() {
    const h = new WasmHasher();
    return {
      update: (data) => void h.update(data),
      digest: () => {
        const d = h.finalize(BLAKE3_LENGTH);
        return Buffer.from(d.buffer, d.byteOffset, d.length);
      },
    };
  },
};

function nativeBackend(n: NativeBlake3): Blake3Backend {
  return {
    name: 'native',
    hashInto: (data, out) => out.set(n.blake3(data)),
    stream() {
      const h = new n.Blake3Hasher();
      return { update: (data) => void h.update(data), digest: () => h.digestBuffer() };
    },
  };
}

/** The binaries @napi-rs/blake-hash publishes for the platforms a Snapback may run on (glibc). */
const NATIVE_PACKAGES: Readonly<Record<string, string>> = {
  'linux-x64': '@napi-rs/blake-hash-linux-x64-gnu',
  'linux-arm64': '@napi-rs/blake-hash-linux-arm64-gnu',
  'linux-arm': '@napi-rs/blake-hash-linux-arm-gnueabihf',
  'darwin-x64': '@napi-rs/blake-hash-darwin-x64',
  'darwin-arm64': '@napi-rs/blake-hash-darwin-arm64',
};

function nativePackage(): string {
  const name = NATIVE_PACKAGES[`${process.platform}-${process.arch}`];
  if (!name) throw new Error('no binary is published for this platform');
  return name;
}

/** Why this platform has no working native binary, from the error of finding or loading it. */
function noNativeReason(err: unknown): string {
  return `no native BLAKE3 for ${process.platform}-${process.arch}: ${(err as Error).message.split('\n')[0]}`;
}

function loadNativeBinary(): unknown {
  return createRequire(import.meta.url)(nativePackage());
}

/**
 * Where the native binary of this platform is installed, found without loading it (for the
 * daemon's start-up log), or why there is none.
 */
export function nativeBlake3Location(env: NodeJS.ProcessEnv = process.env): { path: string } | { missing: string } {
  if (env.SNAPBACK_BLAKE3 === 'wasm') return { missing: 'SNAPBACK_BLAKE3=wasm' };
  try {
    return { path: createRequire(import.meta.url).resolve(nativePackage()) };
  } catch (err) {
    return { missing: noNativeReason(err) };
  }
}

/**
 * A reference input and its digest from the BLAKE3 test vectors (1025 bytes, byte i = i mod 251:
 * more than one 1 KiB chunk, so the tree is hashed too). Checked without starting the
 * WebAssembly module, which a process with the native code never loads.
 */
const PROBE_INPUT = Uint8Array.from({ length: 1025 }, (_, i) => i % 251);
const PROBE_DIGEST = 'd00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444';

/**
 * The native backend when its binary loads and gives the reference digest of a known input,
 * else the WebAssembly one with the reason. SNAPBACK_BLAKE3=wasm asks for the WebAssembly one
 * (to compare them, or to see what a platform without the binary gets).
 */
export function loadBlake3Backend(load: () => unknown = loadNativeBinary, env: NodeJS.ProcessEnv = process.env): Blake3Backend {
  if (env.SNAPBACK_BLAKE3 === 'wasm') return { ...WASM_BLAKE3, fallbackReason: 'SNAPBACK_BLAKE3=wasm' };
  let native: Blake3Backend;
  try {
    native = nativeBackend(load() as NativeBlake3);
    const out = Buffer.alloc(BLAKE3_LENGTH);
    native.hashInto(PROBE_INPUT, out);
    if (out.toString('hex') !== PROBE_DIGEST) return { ...WASM_BLAKE3, fallbackReason: 'the native BLAKE3 gave a wrong digest for a reference input' };
  } catch (err) {
    return { ...WASM_BLAKE3, fallbackReason: noNativeReason(err) };
  }
  return native;
}

const SLOWER = 'BLAKE3 in WebAssembly (about 7× the CPU of the native code)';

/**
 * The daemon's start-up line: which BLAKE3 its hash workers will use, found without loading the
 * native binary (they load it where they hash; a binary that then fails to load is warned of there).
 */
export function announceBlake3(): void {
  const found = nativeBlake3Location();
  if ('missing' in found) log.warn({ reason: found.missing }, `${SLOWER}: model hashing and verification are slower`);
  else log.info({ binary: found.path }, 'BLAKE3: native SIMD code');
}

let current: Blake3Backend | null = null;

/**
 * The backend this thread uses, loaded at the first call. A binary that is installed but does
 * not work is a warning (once per thread); one that is not installed at all the daemon has
 * already warned of at its start (announceBlake3), so each hash worker says it only at debug
 * level.
 */
export function blake3Backend(): Blake3Backend {
  if (!current) {
    current = loadBlake3Backend();
    if (!current.fallbackReason) log.debug('BLAKE3: native SIMD code loaded');
    else if ('path' in nativeBlake3Location()) log.warn({ reason: current.fallbackReason }, `${SLOWER}: the native binary is installed but does not work here`);
    else log.debug({ reason: current.fallbackReason }, 'BLAKE3 in WebAssembly');
  }
  return current;
}
