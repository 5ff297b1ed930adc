/**
 * Fault-injecting block device for the crash tests (the method of dm-log-writes and
 * CrashMonkey). It keeps what reads see and what is durable apart: a write lands in the
 * volatile view at once and becomes durable only at the device's next flush (or with FUA).
 * A PowerDomain shared by several devices counts every write and flush; at the chosen count
 * the power goes out: that call and every later one fail with PowerLostError. `crashImage()` then
 * gives what a device holds after the cut: the durable bytes with each unflushed write landed
 * whole, in part (any subset of its 512-byte sectors) or not at all, chosen by the seeded PRNG.
 * It can also fail chosen calls with EIO or ENOSPC, like a failing or full disk.
 */
import type { BlockDevice, DeviceCapabilities, WriteOptions, ZeroOptions } from '../../appliance/storage/block-device.js';
import { checkRange } from '../../appliance/storage/block-device.js';
import { SnapbackError, fromSystemError } from '../../appliance/errors.js';
import { Prng } from './prng.js';

/**
 * What every call fails with once the power is out. To the layers above it is an I/O error;
 * the crash workload tells it apart from a real failure by its class.
 */
export class PowerLostError extends SnapbackError {
  constructor() {
    super('IO_ERROR', 'power lost');
    this.name = 'PowerLostError';
  }
}

/** True for the power cut, also when a layer wrapped it (a header write says what it left). */
export function isPowerLost(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) if (e instanceof PowerLostError) return true;
  return false;
}

export class PowerDomain {
  ops = 0;
  crashAt: number;
  lost = false;
  constructor(
    readonly rng: Prng,
    crashAt = Infinity,
  ) {
    this.crashAt = crashAt;
  }
  /** Counts one mutating call; throws once the power is out. */
  tick(): void {
    if (this.lost) throw new PowerLostError();
    this.ops++;
    if (this.ops >= this.crashAt) {
      this.lost = true;
      throw new PowerLostError();
    }
  }
  /** Lets callbacks interleave: resolves after 0–2 turns of the event loop, chosen by the PRNG. */
  async jitter(): Promise<void> {
    const n = this.rng.int(3);
    for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
  }
}

interface Pending {
  offset: number;
  data: Buffer;
}

/** A call that fails: every matching call, or only the next one with `once`. */
export type InjectedFault = { op: 'read' | 'write' | 'flush'; errno: 'EIO' | 'ENOSPC'; offset?: number; once?: boolean };

export class FaultDevice implements BlockDevice {
  private view: Buffer;
  private durable: Buffer;
  private unflushed: Pending[] = [];
  faults: InjectedFault[] = [];
  /** Every mutating call, for tests that want to see the order of writes and flushes. */
  readonly journal: string[] = [];
  keepJournal = false;

  constructor(
    readonly name: string,
    initial: Buffer,
    readonly domain: PowerDomain,
  ) {
    this.view = Buffer.from(initial);
    this.durable = Buffer.from(initial);
  }

  get size(): number {
    return this.view.length;
  }
  get capabilities(): DeviceCapabilities {
    return { canWrite: true, canFlush: true, canFua: true, canTrim: true, canZero: true, preferredBlockSize: 512 };
  }
  async open(): Promise<void> {}
  async close(): Promise<void> {}

  private fault(op: InjectedFault['op'], offset?: number, length = 0): void {
    const i = this.faults.findIndex((f) => f.op === op && (f.offset === undefined || (offset !== undefined && f.offset >= offset && f.offset < offset + length)));
    if (i >= 0) {
      const f = this.faults[i]!;
      if (f.once) this.faults.splice(i, 1);
      throw fromSystemError(Object.assign(new Error(`${f.errno}: injected on ${this.name}`), { code: f.errno }), `${op} ${this.name}`);
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const b = Buffer.allocUnsafe(length);
    await this.readInto(b, offset);
    return b;
  }
  async readInto(buf: Buffer, offset: number): Promise<void> {
    checkRange(this.size, offset, buf.length);
    await this.domain.jitter();
    this.readNow(buf, offset);
  }

  /** A read done before returning (BlockDevice.readNow), as FileDevice's inline one: always taken. */
  readNow(buf: Buffer, offset: number): boolean {
    checkRange(this.size, offset, buf.length);
    if (this.domain.lost) throw new PowerLostError();
    this.fault('read', offset, buf.length);
    this.view.copy(buf, 0, offset, offset + buf.length);
    return true;
  }

  async write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    checkRange(this.size, offset, data.length);
    await this.domain.jitter();
    this.land(offset, data);
    if (options.fua) await this.flush();
  }

  /** A plain write done before returning (BlockDevice.writeNow), as FileDevice's inline one: always taken. */
  writeNow(offset: number, data: Buffer): boolean {
    checkRange(this.size, offset, data.length);
    this.land(offset, data);
    return true;
  }

  /** A write reaching the device: its faults, the power domain's count, then readable (not yet durable). */
  private land(offset: number, data: Buffer): void {
    this.fault('write', offset, data.length);
    this.domain.tick();
    const copy = Buffer.from(data);
    copy.copy(this.view, offset);
    this.unflushed.push({ offset, data: copy });
    if (this.keepJournal) this.journal.push(`write ${offset}+${data.length}`);
  }

  async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    await this.write(offset, Buffer.alloc(length), options);
  }
  /** Extends the device with zeroes (as ftruncate extends a file: durable at once here, like the metadata a flush would cover). */
  async grow(size: number): Promise<void> {
    await this.domain.jitter();
    this.fault('write', size, 0);
    this.domain.tick();
    if (size <= this.view.length) return;
    this.view = Buffer.concat([this.view, Buffer.alloc(size - this.view.length)]);
    this.durable = Buffer.concat([this.durable, Buffer.alloc(size - this.durable.length)]);
  }
  async trim(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    await this.writeZeroes(offset, length, options);
  }

  async flush(): Promise<void> {
    await this.domain.jitter();
    this.fault('flush');
    this.domain.tick();
    for (const p of this.unflushed) p.data.copy(this.durable, p.offset);
    this.unflushed = [];
    if (this.keepJournal) this.journal.push('flush');
  }

  /**
   * What the device holds after the power cut: durable bytes plus any subset of unflushed
   * sectors. With `tearInsideSectors`, a torn write may also cut one of its sectors at a random
   * byte (new bytes before the cut, old after, or the other way round), as a medium whose
   * sector writes are not atomic would.
   */
  crashImage(options: { tearInsideSectors?: boolean } = {}): Buffer {
    const img = Buffer.from(this.durable);
    const rng = this.domain.rng;
    for (const p of this.unflushed) {
      const mode = rng.int(3); // 0 vanish, 1 land whole, 2 torn
      if (mode === 0) continue;
      if (mode === 1) {
        p.data.copy(img, p.offset);
        continue;
      }
      // torn at 512-byte boundaries of the device
      let pos = p.offset;
      const end = p.offset + p.data.length;
      while (pos < end) {
        const sectorEnd = Math.min(end, (Math.floor(pos / 512) + 1) * 512);
        if (options.tearInsideSectors && rng.chance(0.3)) {
          const cut = pos + rng.int(sectorEnd - pos);
          if (rng.chance(0.5)) p.data.copy(img, pos, pos - p.offset, cut - p.offset);
          else p.data.copy(img, cut, cut - p.offset, sectorEnd - p.offset);
        } else if (rng.chance(0.5)) p.data.copy(img, pos, pos - p.offset, sectorEnd - p.offset);
        pos = sectorEnd;
      }
    }
    return img;
  }

  /** The bytes reads see now (for checks without a crash). */
  snapshot(): Buffer {
    return Buffer.from(this.view);
  }
}

/** A plain in-memory device (no faults), e.g. to reopen crash images. */
export function memoryDevice(name: string, bytes: Buffer, rng = new Prng(1)): FaultDevice {
  return new FaultDevice(name, bytes, new PowerDomain(rng));
}
