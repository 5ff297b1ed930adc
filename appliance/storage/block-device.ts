/**
 * BlockDevice: the one interface every storage layer implements (docs/architecture.md), in the
 * manner of
 * nbdkit's plugins and filters. A layer that changes data implements every mutating call
 * itself; it never forwards one to the layer below by accident.
 *
 * Contract:
 * - `open()` and `close()` are idempotent; I/O on a closed device rejects with code CLOSED.
 * - offsets and lengths are bytes; a request beyond `size` rejects with OUT_OF_RANGE.
 * - `write(..., {fua: true})` resolves only once the data is durable.
 * - `flush()` makes every write that resolved before it was called durable.
 * - `trim()` may discard data: later reads return either the old bytes or zeroes.
 * - `writeZeroes()` makes the range read as zeroes; `noHole` asks that storage stays allocated.
 * - a device must not keep the `data` buffer of `write()` once the call settles: callers (the
 *   NBD server) reuse their buffers.
 * - `readInto()`, where a device has it, reads into the caller's buffer (no allocation per request).
 * - `readNow()` and `writeNow()`, where a device has them, do a read into the caller's buffer or
 *   a plain (not FUA) write before they return, when the device can do so cheaply (the page
 *   cache, tmpfs): true once done; false when the caller must use `readInto()` or `write()`
 *   (a declined write changed nothing; a declined read may have left anything in `buf`). They
 *   throw what the asynchronous call would reject with. No promise is made per request.
 * - `readToPipe()`, where a device has it, puts the range into the pipe whose write end is
 *   `pipeFd` before it returns, by splice(2) from its file (page references, no copy: see
 *   docs/native-io.md): true once the pipe holds all `length` bytes; false, with the pipe
 *   untouched, when the device cannot do so cheaply now; a throw is the read's error (the pipe
 *   may then hold part of the range). The pipe must have room for `length` bytes.
 * - `directWrite()`, where a device has it, opens a window in which the range may be written
 *   straight into a file (`fd` at `position`) by someone else (the NBD server's payload
 *   receiver, which splices a WRITE's payload from the socket: docs/native-io.md); null when the
 *   device cannot take a plain write that way now. With `reach` beyond `length`, the window may
 *   cover more of the device after the range, as far as the device would take such writes now
 *   (`end`; never beyond offset + reach): the holder may write any range inside it, at the same
 *   distance from `position`, without asking again (a client streaming large writes). Each write
 *   through the window is reported with `wrote()` (null, or the system error the writing
 *   failed with: it returns the storage error to report, or null); `close()` ends the window,
 *   once (later calls change nothing); a payload that never fully arrived is not reported
 *   (whatever landed stays, as after a crash mid-write). `finish(outcome)` does both for the
 *   range asked for ('aborted': close only). The device may ask for the window back (host I/O
 *   stopping, the device closing) by calling the holder's `onRevoke`: the holder then closes it
 *   once the write in progress ends, and writes nothing more through it.
 * - `directRead()`, where a device has it, names the file that holds the range as the device
 *   would read it (`fd` at `position`, the bytes already trusted: a model's verified), for
 *   someone else to copy in the kernel (the hydrator's copy_file_range from the model to the
 *   working disk); null when it cannot now (a model region not yet verified, a remote model).
 *   The bytes past the end of a shorter file read as zeroes, as with `readInto()`.
 * - `grow()`, where a device has it, extends the device (a file) to at least `size` bytes; the
 *   new bytes read as zeroes.
 */
export interface DeviceCapabilities {
  readonly canWrite: boolean;
  readonly canFlush: boolean;
  readonly canFua: boolean;
  readonly canTrim: boolean;
  readonly canZero: boolean;
  /** Requests this device prefers to be aligned to (bytes). */
  readonly preferredBlockSize: number;
}

export interface WriteOptions {
  /** Force unit access: durable before the call resolves. */
  fua?: boolean;
}

export interface ZeroOptions extends WriteOptions {
  /** NBD's NO_HOLE: keep the range allocated (write real zeroes rather than punch a hole). */
  noHole?: boolean;
}

/** A range of a device writable straight into its file until closed (BlockDevice.directWrite). */
export interface DirectWrite {
  readonly fd: number;
  /** Where in the file the range asked for starts. */
  readonly position: number;
  /** The device offset where the window ends (at least the end of the range asked for). */
  readonly end: number;
  /** A write of [offset, offset + length) inside the window ended: the storage error to report, or null. */
  wrote(offset: number, length: number, outcome: unknown | null): SnapbackError | null;
  /** Ends the window. Idempotent. */
  close(): void;
  /** `wrote()` for the range asked for (unless 'aborted'), then `close()`. Once; later calls change nothing. */
  finish(outcome: unknown | 'aborted' | null): SnapbackError | null;
  /** Set by the holder: called when the device needs the window closed (see BlockDevice). */
  onRevoke: (() => void) | null;
}

/** What a device gives to make a DirectWrite (directWriteWindow). */
export interface DirectWriteSpec {
  fd: number;
  position: number;
  /** The range asked for. */
  offset: number;
  length: number;
  end: number;
  wrote(offset: number, length: number, outcome: unknown | null): SnapbackError | null;
  /** Runs once, when the window is closed. */
  closed(): void;
}

/** A DirectWrite whose `close` and `finish` run once, and whose writes after closing are refused. */
export function directWriteWindow(spec: DirectWriteSpec): DirectWrite {
  let open = true;
  const w: DirectWrite = {
    fd: spec.fd,
    position: spec.position,
    end: spec.end,
    onRevoke: null,
    wrote: (offset, length, outcome) => {
      if (!open) throw new SnapbackError('CLOSED', `a write at ${offset} through a closed direct-write window`);
      return spec.wrote(offset, length, outcome);
    },
    close: () => {
      if (!open) return;
      open = false;
      w.onRevoke = null;
      spec.closed();
    },
    finish: (outcome) => {
      if (!open) return null;
      const err = outcome === 'aborted' ? null : spec.wrote(spec.offset, spec.length, outcome);
      w.close();
      return err;
    },
  };
  return w;
}

/** A range of a device readable straight from its file (BlockDevice.directRead). */
export interface DirectRead {
  readonly fd: number;
  readonly position: number;
}

export interface BlockDevice {
  readonly size: number;
  readonly capabilities: DeviceCapabilities;
  open(): Promise<void>;
  read(offset: number, length: number): Promise<Buffer>;
  readInto?(buf: Buffer, offset: number): Promise<void>;
  readNow?(buf: Buffer, offset: number): boolean;
  write(offset: number, data: Buffer, options?: WriteOptions): Promise<void>;
  writeNow?(offset: number, data: Buffer): boolean;
  readToPipe?(pipeFd: number, offset: number, length: number): boolean;
  directWrite?(offset: number, length: number, reach?: number): DirectWrite | null;
  directRead?(offset: number, length: number): DirectRead | null;
  flush(): Promise<void>;
  trim(offset: number, length: number, options?: WriteOptions): Promise<void>;
  writeZeroes(offset: number, length: number, options?: ZeroOptions): Promise<void>;
  grow?(size: number): Promise<void>;
  close(): Promise<void>;
}

import { SnapbackError } from '../errors.js';

/** Throws OUT_OF_RANGE unless [offset, offset+length) lies within a device of `size` bytes. */
export function checkRange(size: number, offset: number, length: number, what = 'request'): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new SnapbackError('OUT_OF_RANGE', `${what} at ${offset}+${length} is outside the device (size ${size})`, {
      offset,
      length,
      size,
    });
  }
}

/** A device's read() where it has readInto(): checks the range, then reads into a new buffer. */
export async function readToNewBuffer(
  device: { readonly size: number; readInto(buf: Buffer, offset: number): Promise<void> },
  offset: number,
  length: number,
): Promise<Buffer> {
  checkRange(device.size, offset, length, 'read');
  const buf = Buffer.allocUnsafe(length);
  await device.readInto(buf, offset);
  return buf;
}
