/**
 * The native I/O addon (appliance/native/snapback-io.c, built by `npm ci` with node-gyp): the
 * splice(2) and per-connection sender thread that the NBD server's large reads use
 * (docs/native-io.md). Node.js has no binding for splice or sendfile.
 *
 * The addon is optional: where it was not built (no compiler when `npm ci` ran, another
 * architecture's build), or SNAPBACK_NATIVE_IO=0 is set, `nativeIo()` is null and every caller
 * takes its JavaScript path. Why it is missing is logged once.
 */
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { childLogger } from '../logger.js';

const log = childLogger('native-io');

/** An opaque per-connection sender (a thread writing replies to one socket). */
export type Sender = { readonly __sender: unique symbol };
/** A finished WRITE of a payload receiver (see NativeIo.createReceiver). */
export type ReceiverReport = (fileErrno: number, socketErrno: number, nextBytes: number, handleHi: number, handleLo: number, offset: number, length: number, last: boolean) => void;

/** An opaque per-connection receiver (a thread taking WRITE payloads off one socket). */
export type Receiver = { readonly __receiver: unique symbol };

export interface NativeIo {
  /** Writes all of `buf` at `position` of `fd` on this thread (pwrite(2), retried until done). */
  pwriteAll(fd: number, buf: Buffer, position: number): void;
  /** Reads into `buf` from `position` of `fd` on this thread; fewer bytes only at the end of the file. */
  preadAll(fd: number, buf: Buffer, position: number): number;
  /** The system's page size: a pipe holds one page (or part of one) per slot. */
  readonly pageSize: number;
  /** A non-blocking pipe with room for at least `size` bytes: [read end, write end]. */
  openPipe(size: number): [number, number];
  closeFd(fd: number): void;
  /**
   * Whether the socket `fd` can no longer carry a reply (poll(2) reports POLLHUP or POLLERR:
   * the peer closed a unix socket or reset a TCP one). A half-close is not a hang-up. Never blocks.
   */
  socketHungUp(fd: number): boolean;
  /**
   * Copies `length` bytes from `inPosition` of `inFd` to `outPosition` of `outFd` with
   * copy_file_range(2) on libuv's thread pool (through its own dups of both descriptors).
   * `onDone(errno, copied)` runs on the event loop: `copied` is short at the end of the input
   * file, or with errno non-zero. Use kernelCopy().
   */
  copyFileRange(inFd: number, inPosition: number, outFd: number, outPosition: number, length: number, onDone: (errno: number, copied: number) => void): void;
  /**
   * Puts `length` bytes at `position` of `fileFd` into the pipe (page references, no copy);
   * zeroes past the end of the file. Returns the bytes that came from the file. The pipe must
   * have room: (position % pageSize) + length at most its capacity. On a throw the pipe holds
   * part of the range and must be closed.
   */
  spliceFile(fileFd: number, position: number, length: number, pipeWriteFd: number): number;
  /**
   * A paused sender for the socket `fd` (it keeps a dup of it), whose send buffer it sets to
   * `sendBufferBytes` (0: unchanged; without CAP_NET_ADMIN the kernel caps it at
   * net.core.wmem_max). `onReport(done, errno)` runs on the event loop: `done` more jobs were
   * sent, in order; errno non-zero once the socket failed (later jobs are never sent).
   */
  createSender(fd: number, sendBufferBytes: number, onReport: (done: number, errno: number) => void): Sender;
  /** Queues `buf` (kept alive by the caller until reported). */
  sendBytes(sender: Sender, buf: Buffer): void;
  /** Queues `header` (copied), then `length` bytes from the pipe's read end. */
  sendPipe(sender: Sender, header: Buffer, pipeReadFd: number, length: number): void;
  /** A paused sender keeps its queued jobs until resumed. */
  setPaused(sender: Sender, paused: boolean): void;
  /** Stops the thread and waits for it: nothing queued is touched after. Idempotent. */
  closeSender(sender: Sender): void;
  /**
   * A receiver for the socket `fd` (a dup of it) with a pipe of `pipeBytes` (the kernel's
   * default where refused). `onReport` runs on the event loop once per finished WRITE, in order:
   * socketErrno non-zero if the payload did not fully arrive; fileErrno non-zero if writing it
   * failed (the rest was still taken off the socket); the request's handle, offset and length;
   * `last` when the thread stopped after it (else it went on with the next WRITE inside the
   * standing window), and then nextBytes: how many bytes of the stream after the payload the
   * thread read into the job's `next` buffer.
   */
  createReceiver(fd: number, pipeBytes: number, onReport: ReceiverReport): Receiver;
  /**
   * The WRITE of `length` bytes at device `offset`, at `position` of `fileFd`: `prefix` (bytes
   * already received, kept alive by the caller until reported), then the rest spliced from the
   * socket; then reads what of the stream already waits, up to `next.length` bytes, into `next`
   * (kept alive too; none after a socket error, or when nothing waits). With `windowEnd` beyond
   * the write, the standing window [offset, windowEnd) (the file at the same distance from
   * `position`): when what follows is a plain WRITE of `minLength` to `maxLength` bytes inside it,
   * the thread takes that payload too, and so on, until `stopStanding`. One run at a time; the
   * event loop must not read the socket meanwhile.
   */
  receiveToFile(
    receiver: Receiver,
    prefix: Buffer,
    fileFd: number,
    position: number,
    length: number,
    next: Buffer,
    handleHi: number,
    handleLo: number,
    offset: number,
    windowEnd: number,
    minLength: number,
    maxLength: number,
  ): void;
  /** Revokes the standing window: the thread stops after the WRITE it is in. */
  stopStanding(receiver: Receiver): void;
  /** Stops the thread and waits for it; a job running is dropped, never reported. Idempotent. */
  closeReceiver(receiver: Receiver): void;
}

/** The error code the addon throws with; `errno` holds the number. */
export const NATIVE_ERRNO = 'NATIVE_ERRNO';

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

/** The errno's name ('EIO', 'EPIPE'), as Node's system errors carry it in `code`. */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/**
 * What the addon threw, as a Node-style system error (`code` 'EIO', 'ENOSPC'...), so
 * fromSystemError and the NBD errno mapping treat it as they treat fs errors.
 */
export function asSystemError(err: unknown, syscall = 'splice'): unknown {
  if (!(err instanceof Error) || (err as NodeJS.ErrnoException).code !== NATIVE_ERRNO) return err;
  return systemError((err as NodeJS.ErrnoException).errno ?? 0, err.message, syscall);
}

/** A Node-style system error for an errno the addon reported (`code` 'EIO', 'ENOSPC'...). */
export function systemError(errno: number, message: string, syscall = 'splice'): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code: errnoName(errno), errno: -errno, syscall });
}

/**
 * copyFileRange as a promise: resolves with the bytes copied (fewer than `length` only at the
 * end of the input file); rejects with a system error ('EXDEV', 'EIO', ...; syscall
 * 'copy_file_range').
 */
export function kernelCopy(io: NativeIo, inFd: number, inPosition: number, outFd: number, outPosition: number, length: number): Promise<number> {
  return new Promise((resolve, reject) => {
    try {
      io.copyFileRange(inFd, inPosition, outFd, outPosition, length, (errno, copied) => {
        if (errno === 0) resolve(copied);
        else reject(systemError(errno, `copy_file_range: ${errnoName(errno)} after ${copied} of ${length} bytes`, 'copy_file_range'));
      });
    } catch (err) {
      reject(asSystemError(err, 'copy_file_range'));
    }
  });
}

/**
 * The errors of copy_file_range(2) that say the kernel cannot copy between these two files
 * (other file systems, an old kernel, a file system that refuses): copy through a buffer.
 */
export const KERNEL_COPY_UNSUPPORTED: ReadonlySet<string> = new Set(['EXDEV', 'EINVAL', 'EOPNOTSUPP', 'ENOSYS', 'ENOTSUP']);

let loaded: NativeIo | null | undefined;

/** The addon, or null where it is not available (see the module comment). */
export function nativeIo(): NativeIo | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (process.env.SNAPBACK_NATIVE_IO === '0') {
    log.info('native I/O is off (SNAPBACK_NATIVE_IO=0): large NBD reads are copied through buffers');
    return null;
  }
  if (process.platform !== 'linux') return null;
  // dist/appliance/native/native-io.js -> appliance/native/build/Release/ in the same tree.
  const path = new URL('../../../appliance/native/build/Release/snapback_io.node', import.meta.url).pathname;
  try {
    loaded = createRequire(import.meta.url)(path) as NativeIo;
  } catch (err) {
    log.warn({ err, path }, `native I/O addon not loaded (${(err as Error).message}); large NBD reads are copied through buffers. Rebuild it with: npm rebuild snapback || (cd appliance/native && npx node-gyp rebuild)`);
  }
  return loaded;
}
