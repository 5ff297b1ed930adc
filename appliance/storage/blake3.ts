/**
 * BLAKE3, from the fastest implementation this machine can load:
 *  - native (@napi-rs/blake-hash's prebuilt binary for this platform, the BLAKE3 team's Rust
 *    crate with its SIMD code: AVX2/AVX-512 on x86-64, NEON on a Pi's arm64), about
 *    0.16 CPU s/GiB on this project's x86-64 machine. package.json carries the x86-64 binary as
 *    an optional dependency; the Pi image's build adds the one of its architecture
 *    (pi-gen/stage-snapback/02-snapback/01-run-chroot.sh);
 *  - else WebAssembly SIMD (blake3-jit: no native code, so it runs wherever Node runs), about
 *    1.1–1.4 CPU s/GiB, for a platform the native package has no binary for.
 * Both give the same digests (checked by test/unit/blake3-backends.test.ts); `BLAKE3_BACKEND`
 * says which one this process uses, and the daemon logs it at start.
 */
import { createRequire } from 'node:module';
import { Hasher as WasmHasher, hashInto as wasmHashInto } from 'blake3-jit';

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

function loadNativeBinary(): unknown {
  const name = NATIVE_PACKAGES[`${process.platform}-${process.arch}`];
  if (!name) throw new Error('no binary is published for this platform');
  return createRequire(import.meta.url)(name);
}

/**
 * The native backend when its binary loads and agrees with the WebAssembly one on a known input,
 * else the WebAssembly one with the reason. SNAPBACK_BLAKE3=wasm asks for the WebAssembly one
 * (to compare them, or to see what a platform without the binary gets).
 */
export function loadBlake3Backend(load: () => unknown = loadNativeBinary, env: NodeJS.ProcessEnv = process.env): Blake3Backend {
  if (env.SNAPBACK_BLAKE3 === 'wasm') return { ...WASM_BLAKE3, fallbackReason: 'SNAPBACK_BLAKE3=wasm' };
  let native: Blake3Backend;
  try {
    native = nativeBackend(load() as NativeBlake3);
    const probe = Buffer.from('snapback blake3 probe');
    const a = Buffer.alloc(BLAKE3_LENGTH);
    const b = Buffer.alloc(BLAKE3_LENGTH);
    native.hashInto(probe, a);
    WASM_BLAKE3.hashInto(probe, b);
    if (!a.equals(b)) return { ...WASM_BLAKE3, fallbackReason: 'the native BLAKE3 gave a different digest from the reference' };
  } catch (err) {
    return { ...WASM_BLAKE3, fallbackReason: `no native BLAKE3 for ${process.platform}-${process.arch}: ${(err as Error).message.split('\n')[0]}` };
  }
  return native;
}

/** The backend this process uses. */
export const BLAKE3_BACKEND: Blake3Backend = loadBlake3Backend();
