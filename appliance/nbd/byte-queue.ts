/**
 * ByteQueue: the bytes received on a socket and not yet parsed, kept as the chunks the socket
 * delivered (no copy on arrival). Fixed-size headers are read in place when they lie in one
 * chunk, and copied into a small scratch buffer only when they straddle two.
 */
const SCRATCH_SIZE = 64;

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0;
  private headOffset = 0;
  private total = 0;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
  /** Offset of the bytes in the buffer returned by the last `contiguous()` call. */
  offset = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /**
   * The next `n` (<= 64) bytes, unconsumed, as a buffer plus `this.offset`. The buffer is the
   * chunk itself when possible, otherwise a scratch copy valid until the next call.
   */
  contiguous(n: number): Buffer {
    if (n > this.total || n > SCRATCH_SIZE) throw new RangeError(`contiguous(${n}) with ${this.total} queued`);
    const first = this.chunks[this.head]!;
    if (first.length - this.headOffset >= n) {
      this.offset = this.headOffset;
      return first;
    }
    let copied = 0;
    let index = this.head;
    let from = this.headOffset;
    while (copied < n) {
      const chunk = this.chunks[index]!;
      const count = Math.min(n - copied, chunk.length - from);
      chunk.copy(this.scratch, copied, from, from + count);
      copied += count;
      index++;
      from = 0;
    }
    this.offset = 0;
    return this.scratch;
  }

  /** Drops the next `n` bytes (n <= length). */
  consume(n: number): void {
    if (n > this.total) throw new RangeError(`consume(${n}) with ${this.total} queued`);
    this.total -= n;
    while (n > 0) {
      const chunk = this.chunks[this.head]!;
      const left = chunk.length - this.headOffset;
      if (n < left) {
        this.headOffset += n;
        return;
      }
      n -= left;
      this.dropHead();
    }
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    const count = Math.min(n, this.total);
    this.consume(count);
    return count;
  }

  /** Up to `max` bytes from the front, without copying (a view of one chunk); consumed. */
  takeSome(max: number): Buffer {
    const chunk = this.chunks[this.head];
    if (chunk === undefined || max <= 0) return EMPTY;
    const start = this.headOffset;
    const count = Math.min(max, chunk.length - start);
    const view = chunk.subarray(start, start + count);
    this.consume(count);
    return view;
  }

  /** The next `n` bytes as a view, not consumed, when they lie in one chunk; else null. */
  peek(n: number): Buffer | null {
    const chunk = this.chunks[this.head];
    if (chunk === undefined || n > this.total || chunk.length - this.headOffset < n) return null;
    return chunk.subarray(this.headOffset, this.headOffset + n);
  }

  /** Exactly `n` bytes (n <= length), consumed: a view when in one chunk, else one copy. */
  take(n: number): Buffer {
    if (n > this.total) throw new RangeError(`take(${n}) with ${this.total} queued`);
    const first = this.chunks[this.head];
    if (n === 0 || first === undefined) return EMPTY;
    if (first.length - this.headOffset >= n) return this.takeSome(n);
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    while (copied < n) {
      const part = this.takeSome(n - copied);
      part.copy(out, copied);
      copied += part.length;
    }
    return out;
  }

  /** Copies what is queued into one buffer of its own (before a pushed view's memory is reused). */
  compact(): void {
    if (this.total === 0) return;
    const own = this.take(this.total);
    const copy = Buffer.allocUnsafe(own.length);
    own.copy(copy);
    this.clear();
    this.push(copy);
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.headOffset = 0;
    this.total = 0;
  }

  private dropHead(): void {
    this.chunks[this.head] = EMPTY;
    this.head++;
    this.headOffset = 0;
    if (this.head === this.chunks.length) {
      this.chunks.length = 0;
      this.head = 0;
    } else if (this.head >= 64 && this.head * 2 >= this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);
