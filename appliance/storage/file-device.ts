/**
 * File device: a regular file or a block device as a BlockDevice. Positional I/O,
 * fdatasync on flush. The size of a block device comes from /sys/class/block/NAME/size
 * (512-byte sectors), since fstat reports 0 for it.
 *
 * Where a request goes: a small read or plain write is done inline (synchronously) while
 * that stays fast (inline-io.ts), else by the batched worker (batched-io.ts); so is a small
 * FUA write to a file in RAM (tmpfs); other FUA writes, flushes, large requests, and whatever
 * the worker does not take go through libuv's pool.
 */
import { promises as fsp, constants as fsc, statSync, readFileSync, realpathSync, read as fsRead, write as fsWrite } from 'node:fs';
import { basename } from 'node:path';
import type { FileHandle } from 'node:fs/promises';
import { checkRange, readToNewBuffer, type BlockDevice, type DeviceCapabilities, directWriteWindow, type DirectRead, type DirectWrite, type WriteOptions, type ZeroOptions } from './block-device.js';
import { SnapbackError, fromSystemError } from '../errors.js';
import { sharedBatchedIo, type BatchedIo } from './batched-io.js';
import { InlineIo } from './inline-io.js';
import { asSystemError, nativeIo } from '../native/native-io.js';

export interface FileDeviceOptions {
  readOnly?: boolean;
  /** For a regular file that is shorter than this, the device still has this size (sparse tail). */
  size?: number;
  /**
   * Small reads and plain writes are done synchronously while that is fast (inline-io.ts),
   * as this device's own governor decides by default (a slow SD card behind one device does
   * not send the requests of a fast one, or of a file on tmpfs, to other threads), or as the
   * given one decides; null: never.
   */
  inlineIo?: InlineIo | null;
  /**
   * Where small reads and plain writes go when they are not done inline: a batched I/O worker
   * (default: the process's), or null for libuv's thread pool only.
   */
  batchedIo?: BatchedIo | null;
}

const ZERO_CHUNK = Buffer.alloc(1 << 20);
const DONE: Promise<void> = Promise.resolve();

// Callback-style positional I/O on the raw fd: FileHandle's promise API costs about 10 µs more
// per request, which is most of the server's CPU for 4 KiB requests (measured, bench/).
function preadOnce(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((res, rej) => fsRead(fd, buf, off, len, pos, (err, n) => (err ? rej(err) : res(n))));
}
function pwriteOnce(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((res, rej) => fsWrite(fd, buf, off, len, pos, (err, n) => (err ? rej(err) : res(n))));
}

/** statfs(2)'s f_type of tmpfs and of ramfs. */
export const TMPFS_MAGIC = 0x01021994;
export const RAMFS_MAGIC = 0x858458f6;

/** Whether `path` lies on a file system kept in RAM (tmpfs, ramfs): fsync there is a no-op. */
export async function fileSystemInRam(path: string): Promise<boolean> {
  try {
    const { type } = await fsp.statfs(path);
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC;
  } catch {
    return false;
  }
}

/** The size of a file or block device in bytes. */
export function sizeOfPath(path: string): number {
  const st = statSync(path);
  if (st.isBlockDevice()) {
    const name = basename(realpathSync(path));
    const sectors = Number(readFileSync(`/sys/class/block/${name}/size`, 'utf8').trim());
    return sectors * 512;
  }
  return st.size;
}

export class FileDevice implements BlockDevice {
  readonly path: string;
  readonly readOnly: boolean;
  private handle: FileHandle | null = null;
  /** A second descriptor opened with O_DSYNC, for FUA writes: durable in one call, no fdatasync after. */
  private syncHandle: Promise<FileHandle> | null = null;
  /** The O_DSYNC descriptor's number once it is open (for inline FUA writes). */
  private syncFd: number | null = null;
  private opening: Promise<void> | null = null;
  private _size: number;
  private isBlockDev = false;
  private closed = false;
  /** Direct-write windows not yet closed (asked back when the device closes). */
  private readonly windows = new Set<DirectWrite>();
  private readonly io: BatchedIo | null;
  private readonly inline: InlineIo | null;
  /** The governor of this device's inline I/O (null: none), for its stats. */
  get inlineIo(): InlineIo | null {
    return this.inline;
  }
  /**
   * A regular file on tmpfs or ramfs (asked of the file system at open): durable as soon as it
   * is written, so its small FUA writes are done inline too. Never a block device (/dev is
   * a tmpfs, the disk behind a device node is not).
   */
  private inRam = false;

  constructor(path: string, options: FileDeviceOptions = {}) {
    this.path = path;
    this.readOnly = options.readOnly ?? false;
    this._size = options.size ?? -1;
    this.io = options.batchedIo === undefined ? sharedBatchedIo() : options.batchedIo;
    this.inline = options.inlineIo === undefined ? new InlineIo({ name: path }) : options.inlineIo;
  }

  get size(): number {
    if (this._size < 0) throw new SnapbackError('CLOSED', `${this.path} is not open`);
    return this._size;
  }

  get capabilities(): DeviceCapabilities {
    return {
      canWrite: !this.readOnly,
      canFlush: true,
      canFua: true,
      canTrim: !this.readOnly,
      canZero: !this.readOnly,
      preferredBlockSize: 4096,
    };
  }

  /** The raw file descriptor, for callers that batch positional I/O themselves. */
  get fd(): number {
    return this.h().fd;
  }

  async open(): Promise<void> {
    if (this.handle) return;
    if (this.opening) return this.opening;
    this.opening = (async () => {
      try {
        const flags = this.readOnly ? fsc.O_RDONLY : fsc.O_RDWR;
        const handle = await fsp.open(this.path, flags);
        const st = await handle.stat();
        this.isBlockDev = st.isBlockDevice();
        this.inRam = st.isFile() && !this.readOnly && (await fileSystemInRam(this.path));
        const actual = this.isBlockDev ? sizeOfPath(this.path) : st.size;
        if (this._size < 0) this._size = actual;
        else if (this.isBlockDev && actual < this._size) {
          await handle.close();
          throw new SnapbackError('SIZE_MISMATCH', `${this.path} holds ${actual} bytes, less than the ${this._size} needed`);
        }
        this.handle = handle;
        this.closed = false;
      } catch (err) {
        throw fromSystemError(err, `opening ${this.path}`);
      } finally {
        this.opening = null;
      }
    })();
    return this.opening;
  }

  private h(): FileHandle {
    if (!this.handle || this.closed) throw new SnapbackError('CLOSED', `${this.path} is closed`);
    return this.handle;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return readToNewBuffer(this, offset, length);
  }

  /** Reads exactly buf.length bytes at offset into buf (zeroes past the end of a short file). */
  readInto(buf: Buffer, offset: number): Promise<void> {
    try {
      if (this.readNow(buf, offset)) return DONE;
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.io !== null && this.handle !== null && !this.closed) {
      const p = this.io.read(this.handle.fd, buf, offset, this.path);
      if (p !== null) return p;
    }
    return this.readIntoPool(buf, offset);
  }

  private async readIntoPool(buf: Buffer, offset: number): Promise<void> {
    const fd = this.h().fd;
    let done = 0;
    try {
      while (done < buf.length) {
        const bytesRead = await preadOnce(fd, buf, done, buf.length - done, offset + done);
        if (bytesRead === 0) {
          buf.fill(0, done); // sparse tail of a file shorter than the device
          return;
        }
        done += bytesRead;
      }
    } catch (err) {
      throw fromSystemError(err, `reading ${this.path} at ${offset + done}`);
    }
  }

  write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    const fua = options.fua === true;
    try {
      // A FUA write is inline only to a file in RAM, through the O_DSYNC descriptor once it is open.
      if (fua ? this.inRam && this.writeInline(this.syncFd, offset, data) : this.writeNow(offset, data)) return DONE;
    } catch (err) {
      return Promise.reject(err);
    }
    if (!fua && this.io !== null && this.handle !== null && !this.closed && this.canWriteAt(offset, data.length)) {
      const p = this.io.write(this.handle.fd, data, offset, this.path);
      if (p !== null) return p;
    }
    return this.writePool(offset, data, options);
  }

  /** A read done inline (see BlockDevice.readNow): while inline I/O is on and fast. */
  readNow(buf: Buffer, offset: number): boolean {
    if (this.inline === null || this.handle === null || this.closed || !this.inline.allows(buf.length)) return false;
    try {
      this.inline.read(this.handle.fd, buf, offset);
    } catch (err) {
      throw fromSystemError(err, `reading ${this.path} at ${offset}`);
    }
    return true;
  }

  /**
   * A read spliced into a pipe on this thread (see BlockDevice.readToPipe), where the native
   * addon is loaded and while inline I/O is on: from the page cache that takes page references
   * only; a splice that waited for the disk counts as a slow inline call.
   */
  readToPipe(pipeFd: number, offset: number, length: number): boolean {
    const io = nativeIo();
    if (io === null || this.inline === null || this.handle === null || this.closed || !this.inline.allows(length, Infinity)) return false;
    checkRange(this._size, offset, length, 'read');
    const fd = this.handle.fd;
    try {
      this.inline.timed(length, () => io.spliceFile(fd, offset, length, pipeFd));
    } catch (err) {
      throw fromSystemError(asSystemError(err), `reading ${this.path} at ${offset}`);
    }
    return true;
  }

  /**
   * A window for a plain write straight into the file by another thread (BlockDevice.directWrite):
   * whenever the device is open and takes a write of the range; with `reach`, as far as that
   * (within the device). Closing the device asks for open windows back.
   */
  directWrite(offset: number, length: number, reach = length): DirectWrite | null {
    if (this.handle === null || this.closed || length === 0 || !this.canWriteAt(offset, length)) return null;
    const w = directWriteWindow({
      fd: this.handle.fd,
      position: offset,
      offset,
      length,
      end: Math.min(this._size, offset + Math.max(length, reach)),
      wrote: (at, _length, outcome) => (outcome === null ? null : fromSystemError(outcome, `writing ${this.path} at ${at}`)),
      closed: () => this.windows.delete(w),
    });
    this.windows.add(w);
    return w;
  }

  /** The file behind a range, for a copy in the kernel (BlockDevice.directRead): whenever the device is open. */
  directRead(offset: number, length: number): DirectRead | null {
    if (this.handle === null || this.closed || length === 0 || !Number.isSafeInteger(offset) || offset < 0 || offset + length > this._size) return null;
    return { fd: this.handle.fd, position: offset };
  }

  /** A plain write done inline (see BlockDevice.writeNow): while inline I/O is on and fast. */
  writeNow(offset: number, data: Buffer): boolean {
    return this.handle !== null && this.writeInline(this.handle.fd, offset, data);
  }

  /** Writes `data` through `fd` on this thread if inline I/O allows it now; false if not. */
  private writeInline(fd: number | null, offset: number, data: Buffer): boolean {
    if (fd === null || this.inline === null || this.closed || !this.canWriteAt(offset, data.length) || !this.inline.allows(data.length)) return false;
    try {
      this.inline.write(fd, data, offset);
    } catch (err) {
      throw fromSystemError(err, `writing ${this.path} at ${offset}`);
    }
    return true;
  }

  /** Whether this device takes a write of `length` bytes at `offset` (else writePool says why not). */
  private canWriteAt(offset: number, length: number): boolean {
    return !this.readOnly && Number.isSafeInteger(offset) && offset >= 0 && offset + length <= this._size;
  }

  private async writePool(offset: number, data: Buffer, options: WriteOptions): Promise<void> {
    this.checkWritable();
    checkRange(this.size, offset, data.length, 'write');
    const h = this.h();
    let done = 0;
    try {
      const fd = options.fua ? (await this.dsync()).fd : h.fd;
      while (done < data.length) {
        done += await pwriteOnce(fd, data, done, data.length - done, offset + done);
      }
    } catch (err) {
      throw fromSystemError(err, `writing ${this.path} at ${offset + done}`);
    }
  }

  async flush(): Promise<void> {
    const h = this.h();
    if (this.readOnly) return;
    try {
      await h.datasync();
    } catch (err) {
      throw fromSystemError(err, `flushing ${this.path}`);
    }
  }

  /** Trim writes zeroes: portable, and keeps "reads return old bytes or zeroes" trivially true. */
  async trim(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    await this.writeZeroes(offset, length, options);
  }

  async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    this.checkWritable();
    checkRange(this.size, offset, length, 'write-zeroes');
    let pos = offset;
    const end = offset + length;
    while (pos < end) {
      const n = Math.min(ZERO_CHUNK.length, end - pos);
      await this.write(pos, ZERO_CHUNK.subarray(0, n));
      pos += n;
    }
    if (options.fua) await this.flush();
  }

  /** Extends a regular file to `size` bytes (sparse zeroes); a block device cannot grow. */
  async grow(size: number): Promise<void> {
    this.checkWritable();
    const h = this.h();
    if (size <= this._size) return;
    if (this.isBlockDev) throw new SnapbackError('NOT_SUPPORTED', `${this.path} is a block device of ${this._size} bytes; it cannot grow to ${size}`);
    try {
      await h.truncate(size);
    } catch (err) {
      throw fromSystemError(err, `growing ${this.path} to ${size} bytes`);
    }
    this._size = size;
  }

  /** The O_DSYNC descriptor (opened on the first FUA write). */
  private dsync(): Promise<FileHandle> {
    if (!this.syncHandle) {
      const p = fsp.open(this.path, fsc.O_RDWR | fsc.O_DSYNC);
      this.syncHandle = p;
      p.then(
        (h) => {
          if (this.syncHandle === p) this.syncFd = h.fd;
        },
        () => {
          if (this.syncHandle === p) this.syncHandle = null;
        },
      );
    }
    return this.syncHandle;
  }

  async close(): Promise<void> {
    if (this.opening) await this.opening.catch(() => undefined);
    for (const w of this.windows) w.onRevoke?.();
    // The batched worker must be done with the descriptor before its number can be reused.
    if (this.io !== null && this.handle !== null) await this.io.drained(this.handle.fd);
    const h = this.handle;
    const sh = this.syncHandle;
    this.handle = null;
    this.syncHandle = null;
    this.syncFd = null;
    this.closed = true;
    if (sh) await (await sh.catch(() => null))?.close();
    if (h) await h.close();
  }

  private checkWritable(): void {
    if (this.readOnly) throw new SnapbackError('READ_ONLY', `${this.path} is open read-only`);
  }
}
