/**
 * Both BLAKE3 implementations give the reference answers (whole, in parts, from shared memory),
 * the native one is what this platform uses wherever package-lock.json carries a binary for it
 * (so CI never measures or tests the fallback by accident), and a binary that does not load or
 * that answers wrongly leaves the WebAssembly one in use, with the reason.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BLAKE3_LENGTH, WASM_BLAKE3, blake3Backend, loadBlake3Backend, nativeBlake3Location, type Blake3Backend } from '../../appliance/storage/blake3.js';
import { BLAKE3_ANSWERS, blake3VectorInput } from '../helpers/blake3-vectors.js';

const native = loadBlake3Backend(undefined, {});

function checkAnswers(b: Blake3Backend): void {
  for (const [n, hex] of BLAKE3_ANSWERS) {
    const input = blake3VectorInput(n);
    const out = Buffer.alloc(BLAKE3_LENGTH);
    b.hashInto(input, out);
    assert.equal(out.toString('hex'), hex, `${b.name}: ${n} bytes`);
    const s = b.stream();
    for (let i = 0; i < n; i += 777) s.update(input.subarray(i, Math.min(n, i + 777)));
    assert.equal(s.digest().toString('hex'), hex, `${b.name}: ${n} bytes in parts`);
    const shared = new Uint8Array(new SharedArrayBuffer(n + 5));
    shared.set(input, 5);
    const out2 = new Uint8Array(BLAKE3_LENGTH + 8);
    b.hashInto(shared.subarray(5), out2.subarray(4, 4 + BLAKE3_LENGTH));
    assert.equal(Buffer.from(out2.subarray(4, 4 + BLAKE3_LENGTH)).toString('hex'), hex, `${b.name}: ${n} bytes of shared memory, into an offset`);
  }
}

/** The @napi-rs/blake-hash binaries package-lock.json installs (those npm ci puts on this platform). */
function lockedNativePlatforms(): string[] {
  const lock = JSON.parse(readFileSync(new URL('../../../package-lock.json', import.meta.url), 'utf8')) as { packages: Record<string, unknown> };
  const prefix = 'node_modules/@napi-rs/blake-hash-';
  return Object.keys(lock.packages).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
}

describe('BLAKE3 implementations', () => {
  it('the WebAssembly implementation gives the reference answers', () => {
    checkAnswers(WASM_BLAKE3);
  });

  it('the native implementation loads where the lock file carries its binary, and gives the reference answers', () => {
    const platform = `${process.platform}-${process.arch}-gnu`;
    if (lockedNativePlatforms().includes(platform) && process.report.getReport && (process.report.getReport() as { header?: { glibcVersionRuntime?: string } }).header?.glibcVersionRuntime) {
      assert.equal(native.name, 'native', native.fallbackReason);
      assert.equal(blake3Backend().name, 'native', 'the process default');
      assert.ok('path' in nativeBlake3Location({}), 'the daemon finds the binary at start');
    }
    // elsewhere whatever loaded must still be right
    checkAnswers(native);
  });

  it('a binary that does not load, or answers wrongly, leaves the WebAssembly one in use and says why', () => {
    const missing = loadBlake3Backend(() => {
      throw new Error("Cannot find module '@napi-rs/blake-hash-linux-riscv64-gnu'");
    }, {});
    assert.equal(missing.name, 'wasm');
    assert.match(missing.fallbackReason ?? '', /no native BLAKE3 for .*riscv64/);
    const wrong = loadBlake3Backend(() => ({ blake3: () => Buffer.alloc(BLAKE3_LENGTH), Blake3Hasher: class {} }), {});
    assert.equal(wrong.name, 'wasm');
    assert.match(wrong.fallbackReason ?? '', /wrong digest/);
    checkAnswers(missing);
  });

  it('SNAPBACK_BLAKE3=wasm asks for the WebAssembly implementation', () => {
    const b = loadBlake3Backend(undefined, { SNAPBACK_BLAKE3: 'wasm' });
    assert.equal(b.name, 'wasm');
    assert.equal(b.fallbackReason, 'SNAPBACK_BLAKE3=wasm');
    assert.deepEqual(nativeBlake3Location({ SNAPBACK_BLAKE3: 'wasm' }), { missing: 'SNAPBACK_BLAKE3=wasm' });
  });
});
