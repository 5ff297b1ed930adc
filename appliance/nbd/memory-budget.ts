/**
 * MemoryBudget: the bytes all NBD connections together may hold for requests in flight (write
 * payloads, read data) and replies not yet taken by the kernel. Each connection may hold a small
 * floor on its own (so every client always makes progress) and borrows anything above it from
 * this shared budget; a connection that cannot borrow stops reading its socket and waits here
 * until another connection gives bytes back.
 */
export class MemoryBudget {
  private used = 0;
  /** Connections waiting for bytes, in the order they asked. */
  private readonly waiters = new Set<() => void>();

  constructor(readonly total: number) {}

  /** Bytes that can be taken now. */
  get free(): number {
    return this.total - this.used;
  }

  /** Takes `n` bytes if that many are free; never partially. */
  tryTake(n: number): boolean {
    if (this.used + n > this.total) return false;
    this.used += n;
    return true;
  }

  /** Gives `n` bytes back and lets every waiting connection try again. */
  give(n: number): void {
    if (n <= 0) return;
    this.used -= n;
    if (this.waiters.size === 0) return;
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiting) wake();
  }

  /** Calls `wake` once, the next time bytes are given back. */
  wait(wake: () => void): void {
    this.waiters.add(wake);
  }

  cancel(wake: () => void): void {
    this.waiters.delete(wake);
  }
}
