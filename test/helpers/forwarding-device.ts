/**
 * A BlockDevice that forwards every call to another one, so a test can watch and steer what
 * reaches the device: it records each call with its options, counts the calls in flight (and
 * the most at once), and awaits `hook` before forwarding, which may delay, block or fail the
 * call. `readFilter` can replace what a read returns (a layer returning the wrong length).
 */
import { directWriteWindow, type BlockDevice, type DirectWrite, type WriteOptions, type ZeroOptions } from '../../appliance/storage/block-device.js';

export type DeviceOp = 'read' | 'write' | 'flush' | 'trim' | 'zero';

export interface DeviceCall {
  op: DeviceOp;
  offset: number;
  length: number;
  options?: WriteOptions | ZeroOptions;
  /** Done through readNow or writeNow (synchronously). */
  now?: boolean;
  /** Done through readToPipe (spliced). */
  pipe?: boolean;
  /** Done through a directWrite window (the payload spliced into the file); `outcome` once finished. */
  direct?: { outcome: unknown };
}

export class ForwardingDevice implements BlockDevice {
  hook: (op: DeviceOp, offset: number, length: number) => Promise<void> | void = () => undefined;
  readFilter: (data: Buffer) => Buffer = (d) => d;
  calls: DeviceCall[] = [];
  /** Calls started and not yet finished; the most there were at once; all started. */
  pending = 0;
  maxPending = 0;
  started = 0;
  /** Writes finished so far, and that count as each flush() was called. */
  writesDone = 0;
  writesDoneAtFlush: number[] = [];

  constructor(private readonly inner: BlockDevice) {}

  get size(): number {
    return this.inner.size;
  }
  get capabilities(): BlockDevice['capabilities'] {
    return this.inner.capabilities;
  }
  open(): Promise<void> {
    return this.inner.open();
  }
  close(): Promise<void> {
    return this.inner.close();
  }

  /** Forgets what was recorded (between test cases). */
  reset(): void {
    this.calls = [];
    this.maxPending = 0;
    this.started = 0;
    this.writesDone = 0;
    this.writesDoneAtFlush = [];
  }

  private async run<T>(call: DeviceCall, fn: () => Promise<T>): Promise<T> {
    this.calls.push(call);
    this.pending++;
    this.started++;
    this.maxPending = Math.max(this.maxPending, this.pending);
    try {
      await this.hook(call.op, call.offset, call.length);
      return await fn();
    } finally {
      this.pending--;
    }
  }

  async read(offset: number, length: number): Promise<Buffer> {
    return this.readFilter(await this.run({ op: 'read', offset, length }, () => this.inner.read(offset, length)));
  }
  /** The optional fast path the NBD server reads through (FileDevice has it too). */
  readInto(buf: Buffer, offset: number): Promise<void> {
    return this.run({ op: 'read', offset, length: buf.length }, () => this.inner.read(offset, buf.length).then((d) => void d.copy(buf)));
  }
  /**
   * The optional synchronous read and write (FileDevice and the protected disk have them):
   * declined (false) unless `nowHook` is set; then the hook decides (true: done now through the
   * inner device's readNow or writeNow, if that takes it; false: declined; a throw: it fails).
   */
  nowHook: ((op: 'read' | 'write', offset: number, length: number) => boolean) | null = null;
  readNow(buf: Buffer, offset: number): boolean {
    if (this.nowHook === null || !this.nowHook('read', offset, buf.length) || this.inner.readNow?.(buf, offset) !== true) return false;
    this.calls.push({ op: 'read', offset, length: buf.length, now: true });
    return true;
  }
  writeNow(offset: number, data: Buffer): boolean {
    if (this.nowHook === null || !this.nowHook('write', offset, data.length) || this.inner.writeNow?.(offset, data) !== true) return false;
    this.calls.push({ op: 'write', offset, length: data.length, now: true });
    this.writesDone++;
    return true;
  }
  /**
   * The optional spliced read (FileDevice and the protected disk have it): declined unless
   * `pipeHook` is set; then the hook decides (true: done through the inner device's
   * readToPipe, if that takes it; false: declined; a throw: it fails, after whatever the hook
   * put in the pipe).
   */
  pipeHook: ((pipeFd: number, offset: number, length: number) => boolean) | null = null;
  readToPipe(pipeFd: number, offset: number, length: number): boolean {
    if (this.pipeHook === null || !this.pipeHook(pipeFd, offset, length) || this.inner.readToPipe?.(pipeFd, offset, length) !== true) return false;
    this.calls.push({ op: 'read', offset, length, pipe: true });
    return true;
  }
  /**
   * The optional direct write (FileDevice and the protected disk have it): declined unless
   * `directHook` is set; then the hook decides (true: the inner device's window, if it gives
   * one, reaching as far as asked; false: declined; a DirectWrite: that window instead, as a disk
   * that fails would give). Each write through a window is recorded, with the outcome it was
   * reported with ('aborted': the window closed before the range asked for was reported).
   */
  directHook: ((offset: number, length: number) => boolean | DirectWrite) | null = null;
  /** Windows opened so far, and writes reported through them beyond the range asked for. */
  windowsOpened = 0;
  standingWrites = 0;
  directWrite(offset: number, length: number, reach?: number): DirectWrite | null {
    if (this.directHook === null) return null;
    const decided = this.directHook(offset, length);
    const w = decided === true ? (this.inner.directWrite?.(offset, length, reach) ?? null) : decided === false ? null : decided;
    if (w === null) return null;
    this.windowsOpened++;
    let first: DeviceCall | null = { op: 'write', offset, length, direct: { outcome: undefined } };
    this.calls.push(first);
    const window = directWriteWindow({
      fd: w.fd,
      position: w.position,
      offset,
      length,
      end: w.end,
      wrote: (at, n, outcome) => {
        let call = first;
        first = null;
        if (call === null || call.offset !== at || call.length !== n) {
          call = { op: 'write', offset: at, length: n, direct: { outcome: undefined } };
          this.calls.push(call);
          this.standingWrites++;
        }
        call.direct = { outcome };
        if (outcome === null) this.writesDone++;
        return w.wrote(at, n, outcome);
      },
      closed: () => {
        if (first !== null) first.direct = { outcome: 'aborted' };
        this.openWindows.delete(window);
        w.close();
      },
    });
    w.onRevoke = () => window.onRevoke?.();
    this.openWindows.add(window);
    return window;
  }
  private readonly openWindows = new Set<DirectWrite>();
  /** Asks for every open window back, as a device whose host I/O stops does; how many were open. */
  revokeWindows(): number {
    for (const w of this.openWindows) w.onRevoke?.();
    return this.openWindows.size;
  }
  async write(offset: number, data: Buffer, options?: WriteOptions): Promise<void> {
    await this.run({ op: 'write', offset, length: data.length, options }, () => this.inner.write(offset, data, options));
    this.writesDone++;
  }
  flush(): Promise<void> {
    this.writesDoneAtFlush.push(this.writesDone);
    return this.run({ op: 'flush', offset: 0, length: 0 }, () => this.inner.flush());
  }
  trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.run({ op: 'trim', offset, length, options }, () => this.inner.trim(offset, length, options));
  }
  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void> {
    return this.run({ op: 'zero', offset, length, options }, () => this.inner.writeZeroes(offset, length, options));
  }
}
