/**
 * The NBD server's parsing buffer (appliance/nbd/byte-queue.ts) against a plain Buffer model:
 * random chunkings and random operations must see exactly the bytes the model sees. (A unit
 * test, kept with the NBD tests it protects: every request header and payload goes through it.)
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ByteQueue } from '../../appliance/nbd/byte-queue.js';
import { BufferPool, POOL_MIN_SIZE } from '../../appliance/nbd/buffer-pool.js';

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s ^ (s >>> 15), 2246822519) + 0x9e3779b9) >>> 0;
    s = (s ^ (s >>> 13)) >>> 0;
    return s % n;
  };
}

describe('NBD server: ByteQueue', function () {
  it('returns the same bytes as a flat buffer under random chunking and operations', function () {
    let peeked = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const r = rng(seed);
      const data = randomBytes(2000 + r(20000));
      const q = new ByteQueue();
      let pushed = 0; // bytes of `data` pushed
      let read = 0; // bytes of `data` consumed
      while (read < data.length) {
        if (pushed < data.length && (q.length < 64 || r(3) === 0)) {
          const n = Math.min(data.length - pushed, r(5) === 0 ? 0 : 1 + r(300));
          q.push(data.subarray(pushed, pushed + n));
          pushed += n;
        }
        assert.equal(q.length, pushed - read);
        const avail = q.length;
        if (avail === 0) continue;
        switch (r(6)) {
          case 0: {
            const n = 1 + r(Math.min(64, avail));
            const b = q.contiguous(n);
            assert.deepEqual(b.subarray(q.offset, q.offset + n), data.subarray(read, read + n), `seed ${seed} contiguous`);
            q.consume(n);
            read += n;
            break;
          }
          case 1: {
            const n = r(avail + 1);
            assert.deepEqual(q.take(n), data.subarray(read, read + n), `seed ${seed} take`);
            read += n;
            break;
          }
          case 2: {
            const some = q.takeSome(1 + r(500));
            assert.deepEqual(some, data.subarray(read, read + some.length), `seed ${seed} takeSome`);
            assert.ok(some.length > 0);
            read += some.length;
            break;
          }
          case 3: {
            const n = r(avail + 50);
            const skipped = q.skip(n);
            assert.equal(skipped, Math.min(n, avail));
            read += skipped;
            break;
          }
          case 4: {
            // a view of bytes lying in one chunk, not consumed; null when they straddle chunks
            const n = 1 + r(avail + 50);
            const view = q.peek(n);
            if (view === null) assert.ok(n > 1, `seed ${seed}: one queued byte always lies in one chunk`);
            else {
              assert.deepEqual(view, data.subarray(read, read + n), `seed ${seed} peek`);
              peeked++;
            }
            if (n > avail) assert.equal(view, null);
            assert.equal(q.length, avail, 'peek consumes nothing');
            break;
          }
          default: {
            const n = r(avail + 1);
            q.consume(n);
            read += n;
          }
        }
      }
      assert.equal(q.length, 0);
      assert.equal(q.takeSome(10).length, 0);
    }
    assert.ok(peeked > 100, `peek returned a view ${peeked} times`);
  });

  it('refuses to hand out more than it holds', function () {
    const q = new ByteQueue();
    q.push(Buffer.from('abc'));
    assert.throws(() => q.take(4), RangeError);
    assert.throws(() => q.consume(4), RangeError);
    assert.throws(() => q.contiguous(4), RangeError);
  });
});

describe('NBD server: BufferPool', function () {
  it('reuses released buffers by power-of-two class, up to its byte cap; new ones are touched (zero-filled)', function () {
    const pool = new BufferPool(4 * POOL_MIN_SIZE);
    const a = pool.acquire(100_000);
    assert.equal(a.length, 131072);
    // touched when allocated (every page written), so an inline read into it is not timed with page faults
    assert.ok(a.every((x) => x === 0));
    pool.release(a);
    assert.equal(pool.acquire(70_000), a, 'same class: reused');
    const b = pool.acquire(POOL_MIN_SIZE);
    assert.equal(b.length, POOL_MIN_SIZE);
    pool.release(b);
    pool.release(a);
    const big = pool.acquire(1 << 20);
    pool.release(big); // over the cap: dropped
    assert.notEqual(pool.acquire(1 << 20), big);
    pool.release(Buffer.alloc(100)); // not one of ours: ignored
    assert.equal(pool.acquire(10).length, 4096, 'the smallest class is 4 KiB');
  });

  it('makes room for small buffers when large ones fill its cap, and never keeps more than the cap', function () {
    const pool = new BufferPool(4 * POOL_MIN_SIZE);
    const large = [pool.acquire(2 * POOL_MIN_SIZE), pool.acquire(2 * POOL_MIN_SIZE)];
    for (const b of large) pool.release(b); // the cap is full of 128 KiB buffers
    const small = pool.acquire(4096);
    pool.release(small);
    assert.equal(pool.acquire(4096), small, 'the 4 KiB buffer was kept: a large one went to make room');
    const kept = [pool.acquire(2 * POOL_MIN_SIZE), pool.acquire(2 * POOL_MIN_SIZE)];
    assert.equal(kept.filter((b) => large.includes(b)).length, 1, 'one of the two large buffers was dropped');
    // Small buffers never push out their own class or smaller ones: over the cap, they are dropped.
    const smalls = Array.from({ length: 4 * 16 + 1 }, () => pool.acquire(4096));
    for (const b of smalls) pool.release(b);
    const back = new Set(Array.from({ length: 4 * 16 + 1 }, () => pool.acquire(4096)));
    assert.equal(smalls.filter((b) => back.has(b)).length, 4 * 16, 'as many as fit in the cap were kept');
  });
});
