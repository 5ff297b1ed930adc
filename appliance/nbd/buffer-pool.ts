/**
 * BufferPool: I/O buffers reused across requests. A fresh 1 MiB buffer per request costs page
 * faults, kernel zeroing and GC pressure (external memory); measured here, reusing them
 * doubled the server's 1 MiB sequential read throughput. A fresh 4 KiB buffer costs a malloc
 * and a free plus the GC's tracking of it, about a tenth of the server's CPU for 4 KiB random
 * reads. Buffers come in power-of-two classes from 4 KiB; free ones are kept up to a byte cap,
 * beyond which they go to the GC.
 */
/** Payloads from this size on are assembled in pool buffers the socket may read into directly. */
export const POOL_MIN_SIZE = 64 * 1024;
/** The smallest class. */
const SMALLEST_CLASS = 4096;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;

  constructor(private readonly maxFreeBytes: number) {}

  /** A buffer of at least `size` bytes (its length is the class size; use a view of it). */
  acquire(size: number): Buffer {
    const cls = classOf(size);
    const list = this.free.get(cls);
    const buf = list?.pop();
    if (buf) {
      this.freeBytes -= cls;
      return buf;
    }
    // Touched now, not by the first read into it: that read may be done inline and timed, and
    // fresh pages cost it hundreds of microseconds (inline-io.ts), which would count as a slow disk.
    return Buffer.allocUnsafeSlow(cls).fill(0);
  }

  /**
   * Gives back a buffer from `acquire` once nothing (socket, device) uses it any more. Over the
   * cap, larger free buffers make room for a smaller one (they go to the GC): after a burst of
   * large requests the cap is full of them, and small requests, which come by the hundred
   * thousand a second, would otherwise allocate a buffer each (measured: 4 KiB reads at queue
   * depth 32 cost a fifth more CPU after 128 KiB requests had filled the cap).
   */
  release(buf: Buffer): void {
    const cls = buf.length;
    if (cls < SMALLEST_CLASS || (cls & (cls - 1)) !== 0 || cls > this.maxFreeBytes) return;
    if (this.freeBytes + cls > this.maxFreeBytes && !this.evictLargerThan(cls, this.freeBytes + cls - this.maxFreeBytes)) return;
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(buf);
    this.freeBytes += cls;
  }

  /** Drops free buffers of classes above `cls`, largest first, until `need` bytes are freed; false if they cannot be. */
  private evictLargerThan(cls: number, need: number): boolean {
    let larger = 0;
    for (const [c, list] of this.free) if (c > cls) larger += c * list.length;
    if (larger < need) return false;
    const classes = [...this.free.keys()].filter((c) => c > cls).sort((x, y) => y - x);
    for (const c of classes) {
      const list = this.free.get(c)!;
      while (need > 0 && list.pop()) {
        this.freeBytes -= c;
        need -= c;
      }
      if (need <= 0) break;
    }
    return true;
  }
}

function classOf(size: number): number {
  let cls = SMALLEST_CLASS;
  while (cls < size) cls *= 2;
  return cls;
}
