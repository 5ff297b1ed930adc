/**
 * The benchmark's table of what each in-memory part of the daemon costs must count a Buffer's
 * bytes once (Node reports them in both `external` and `arrayBuffers`).
 */
import assert from 'node:assert/strict';
import { retainedBytes } from '../../bench/retained-memory.js';

describe('bench retained memory', () => {
  it('counts a 32 MiB buffer as 32 MiB, not twice', () => {
    const size = 32 << 20;
    const before = retainedBytes();
    const kept = Buffer.alloc(size, 1);
    const grew = retainedBytes() - before;
    assert.equal(kept.length, size);
    assert.ok(grew > size * 0.9 && grew < size * 1.1, `grew by ${grew} bytes for a buffer of ${size}`);
  });
});
