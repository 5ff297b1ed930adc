/**
 * Fixed-size buffers in shared memory, reused: bytes read into one of them reach a hash worker
 * without a copy. At most `max` are lent at once; a caller beyond that waits for a return, which
 * also bounds the memory that verification in flight can hold.
 */
export class SharedBufferPool {
  private free: Buffer[] = [];
  private lent = 0;
  private waiters: ((b: Buffer) => void)[] = [];

  constructor(
    readonly bufferSize: number,
    readonly max: number,
  ) {}

  async acquire(): Promise<Buffer> {
    const b = this.free.pop();
    if (b) {
      this.lent++;
      return b;
    }
    if (this.lent < this.max) {
      this.lent++;
      return Buffer.from(new SharedArrayBuffer(this.bufferSize));
    }
    return new Promise<Buffer>((res) => this.waiters.push(res));
  }

  release(b: Buffer): void {
    const next = this.waiters.shift();
    if (next) {
      next(b);
      return;
    }
    this.lent--;
    this.free.push(b);
  }

  /** Drops the idle buffers (their memory goes back when nothing else holds them). */
  trim(): void {
    this.free = [];
  }
}
