/**
 * The transmission phase of one connection: parses requests from the received bytes, sends
 * each to the device as soon as it is complete (many in flight, replies in completion order),
 * and keeps memory bounded: it stops parsing (and the connection stops reading its socket)
 * while the bytes held for in-flight requests and unsent replies exceed a budget. Payloads of
 * 64 KiB and more are assembled in pooled buffers that the socket may read into directly
 * (direct-receive.ts), smaller ones copied out of a reused receive buffer go to pooled buffers
 * too; reads go through pooled buffers when the device has readInto, and large ones, where the
 * device can splice them from its file and the connection has the native sender, through pipes
 * (docs/native-io.md).
 *
 * Ordering: a FLUSH goes to the device when it is parsed; every write whose reply was sent
 * before it has already resolved, and the device's flush() covers every resolved write.
 */
import type { Logger } from 'pino';
import type { BlockDevice, DirectWrite, WriteOptions, ZeroOptions } from '../storage/block-device.js';
import { errnoName, systemError } from '../native/native-io.js';
import type { PayloadReceiver } from './payload-receiver.js';
import { isSnapbackError } from '../errors.js';
import { POOL_MIN_SIZE, type BufferPool } from './buffer-pool.js';
import type { ByteQueue } from './byte-queue.js';
import type { MemoryBudget } from './memory-budget.js';
import { errorMessageFor, nbdErrnoFor } from './errno.js';
import type { ExportInfo } from './export-info.js';
import {
  CMD_CACHE,
  CMD_DISC,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  NBD_EIO,
  REQUEST_HEADER_SIZE,
  REQUEST_MAGIC,
} from './protocol.js';
import { PIPE_BYTES } from './pipe-pool.js';
import type { ReplyWriter } from './reply-writer.js';
import { checkRequest, commandName, refusalMessage } from './request-checks.js';

export interface TransmissionLimits {
  /** Bytes of in-flight write payloads, pending read data and unsent replies before parsing stops. */
  maxInflightBytes: number;
  /** Requests in flight before parsing stops. */
  maxInflightRequests: number;
  /** A refused WRITE whose payload is longer than this ends the connection instead of being skipped. */
  maxSkippedWriteBytes: number;
  /** Bytes this connection may hold without borrowing from `shared`. */
  floorBytes: number;
  /** The budget shared by all connections, for what a connection holds above its floor. */
  shared: MemoryBudget;
}

export interface TransmissionHooks {
  pauseInput(): void;
  resumeInput(): void;
  /** No more input will be parsed: stop reading and drop what arrives. */
  stopInput(): void;
  /** Every in-flight request has been answered and the replies are queued: end the connection. */
  finished(reason: string): void;
}

const MODE_HEADER = 0;
const MODE_PAYLOAD = 1;
const MODE_SKIP = 2;
/** The payload receiver is taking the current WRITE's payload off the socket. */
const MODE_RECEIVE = 3;
/**
 * WRITEs at least this large, with at least POOL_MIN_SIZE of the payload still to come, go to the
 * payload receiver. Below it the hand-over to its thread and back (a wake-up each way, a
 * descriptor duplicated) costs more than the copy it saves: streaming 128 KiB writes, the event
 * loop's own reads of several requests at a time took about a quarter less CPU than the receiver.
 */
const RECEIVE_MIN_BYTES = 256 * 1024;
/**
 * How far past a WRITE the payload receiver's window may reach (as far as the device allows):
 * following large plain WRITEs inside it are taken by the receiver's thread by itself.
 */
const STANDING_REACH = 64 * 1024 * 1024;

/** A run of the payload receiver: the window, and the WRITE handed over until it is reported. */
interface ReceiveRun {
  w: DirectWrite;
  pooledPrefix: Buffer | null;
  firstLength: number;
  /** The first WRITE (counted in flight when handed over) is not reported yet. */
  firstCounted: boolean;
}
const TWO_32 = 0x100000000;
const FUA: WriteOptions = Object.freeze({ fua: true });
/** Indexed by (FUA ? 1 : 0) | (NO_HOLE ? 2 : 0). */
const ZERO_OPTIONS: readonly ZeroOptions[] = [{}, { fua: true }, { noHole: true }, { fua: true, noHole: true }].map((o) => Object.freeze(o));
const RESOLVED = Promise.resolve();
/** Device failures logged at warn level per connection; later ones at debug. */
const WARN_LIMIT = 10;

export class Transmission {
  private inflightCount = 0;
  private inflightBytes = 0;
  /** Requests parsed so far (the idle check tells a client that never asked anything apart). */
  requestCount = 0;
  private mode = MODE_HEADER;
  private paused = false;
  private inputClosed = false;
  private ending: string | null = null;
  private finishedCalled = false;
  private warnings = 0;
  // The WRITE whose payload is being collected or skipped.
  private cFlags = 0;
  private cHi = 0;
  private cLo = 0;
  private cOffset = 0;
  private cLength = 0;
  private cGot = 0;
  private cErrno = 0;
  private pieces: Buffer[] = [];
  /**
   * The buffer the current WRITE's payload is assembled in: pooled for large payloads (which
   * the socket may read into directly), else allocated when the input is transient.
   */
  private direct: Buffer | null = null;
  /** `direct` came from the pool (goes back once written). */
  private directPooled = false;
  /** The socket may read the rest of the payload straight into `direct` (large payloads). */
  private directReceive = false;
  private skipLeft = 0;
  /** Bytes borrowed from the shared budget (what this connection holds above its floor). */
  private borrowed = 0;
  /** What the request this connection waits for must borrow; it wakes only when that is free. */
  private sharedNeed = 0;
  private readonly wake = (): void => {
    if (this.sharedNeed > this.limits.shared.free) this.limits.shared.wait(this.wake);
    else this.maybeResume();
  };
  /** The device's optional readInto, readNow and writeNow (FileDevice and the protected disk have them). */
  private readonly readInto: ((buf: Buffer, offset: number) => Promise<void>) | null;
  private readonly readNow: ((buf: Buffer, offset: number) => boolean) | null;
  private readonly writeNow: ((offset: number, data: Buffer) => boolean) | null;
  private readonly readToPipe: ((pipeFd: number, offset: number, length: number) => boolean) | null;
  private readonly directWrite: ((offset: number, length: number, reach?: number) => DirectWrite | null) | null;
  /** When the payload receiver took the current payload (see receivingSince). */
  private receiveStartedAt = 0;
  /** Requests answered by readNow or writeNow in the current parsing pass (replies not yet sent). */
  private answeredNow = 0;

  constructor(
    private readonly device: BlockDevice,
    private readonly info: ExportInfo,
    private readonly structured: boolean,
    private readonly queue: ByteQueue,
    /** The queue's chunks are views of a buffer the next socket read reuses: copy payloads. */
    private readonly transientInput: boolean,
    private readonly writer: ReplyWriter,
    private readonly limits: TransmissionLimits,
    private readonly hooks: TransmissionHooks,
    private readonly log: Logger,
    private readonly pool: BufferPool,
    /** Takes large WRITE payloads straight into the device's file (null: the event loop does). */
    private readonly receiver: PayloadReceiver | null = null,
  ) {
    this.readInto = device.readInto?.bind(device) ?? null;
    this.readNow = device.readNow?.bind(device) ?? null;
    this.writeNow = device.writeNow?.bind(device) ?? null;
    this.readToPipe = device.readToPipe?.bind(device) ?? null;
    this.directWrite = receiver !== null ? (device.directWrite?.bind(device) ?? null) : null;
  }

  /** Parses and dispatches every complete request in the queue (unless over budget). */
  process(): void {
    const q = this.queue;
    while (this.ending === null) {
      if (this.mode === MODE_RECEIVE) break;
      if (this.mode === MODE_PAYLOAD) {
        if (!this.collectPayload(q)) break;
      } else if (this.mode === MODE_SKIP) {
        this.skipLeft -= q.skip(this.skipLeft);
        if (this.skipLeft > 0) break;
        this.mode = MODE_HEADER;
        this.refuse(CMD_WRITE, this.cFlags, this.cHi, this.cLo, this.cOffset, this.cLength, this.cErrno);
      } else {
        if (q.length < REQUEST_HEADER_SIZE) break;
        if (!this.admit(q)) {
          if (!this.paused) {
            this.paused = true;
            this.hooks.pauseInput();
          }
          this.sendAnsweredNow();
          return;
        }
        this.parseRequest(q);
      }
    }
    this.sendAnsweredNow();
    if (this.inputClosed && this.ending === null) this.end('client closed the connection');
  }

  /** When the payload receiver took the current WRITE's payload (Date.now()); null when it has none. */
  get receivingSince(): number | null {
    return this.mode === MODE_RECEIVE ? this.receiveStartedAt : null;
  }

  /** Parsing stopped for room (this connection's limits or the shared budget): its socket is not read. */
  get inputPaused(): boolean {
    return this.paused && this.ending === null;
  }

  /** Something is in flight, half received, waiting to be parsed, or not yet taken by the kernel. */
  get busy(): boolean {
    return this.inflightCount > 0 || this.mode !== MODE_HEADER || this.writer.pendingBytes > 0 || this.queue.length > 0;
  }

  /** The socket's writable side drained: maybe resume parsing. */
  onDrain(): void {
    this.giveBack();
    this.maybeResume();
  }

  /** Replies were taken by the kernel: give back what is no longer held. */
  onWritten(): void {
    if (this.borrowed > 0) this.giveBack();
  }

  /** The connection is gone: everything it borrowed goes back to the shared budget. */
  releaseAll(): void {
    this.limits.shared.cancel(this.wake);
    this.limits.shared.give(this.borrowed);
    this.borrowed = 0;
  }

  /** The client closed its sending side: finish what was received, then end. */
  onInputClosed(): void {
    this.inputClosed = true;
    if (!this.paused) this.process();
  }

  /** Stop parsing; answer everything in flight; then `hooks.finished`. Idempotent. */
  end(reason: string): void {
    if (this.ending !== null) return;
    this.ending = reason;
    // A payload being received by the payload receiver ends now: never acknowledged; what of it
    // already landed in the file stays, as after a crash in the middle of a write (its window
    // is finished as aborted; docs/native-io.md).
    if (this.mode === MODE_RECEIVE) this.receiver!.close();
    if (this.mode === MODE_PAYLOAD) {
      // A WRITE whose payload the event loop gathered never fully arrived: never acknowledged,
      // never written.
      this.inflightCount--;
      this.inflightBytes -= this.cLength;
      this.pieces = [];
      // Not given back to the pool: the socket's next read may still be aimed at it.
      this.direct = null;
    }
    this.mode = MODE_HEADER;
    this.hooks.stopInput();
    this.maybeFinish();
  }

  private parseRequest(q: ByteQueue): void {
    const b = q.contiguous(REQUEST_HEADER_SIZE);
    const o = q.offset;
    const magic = b.readUInt32BE(o);
    const flags = b.readUInt16BE(o + 4);
    const type = b.readUInt16BE(o + 6);
    const hi = b.readUInt32BE(o + 8);
    const lo = b.readUInt32BE(o + 12);
    const offset = b.readUInt32BE(o + 16) * TWO_32 + b.readUInt32BE(o + 20);
    const length = b.readUInt32BE(o + 24);
    q.consume(REQUEST_HEADER_SIZE);
    this.requestCount++;
    if (magic !== REQUEST_MAGIC) {
      // The stream cannot be framed any more: answer what is in flight, then hang up.
      this.end(`bad request magic 0x${magic.toString(16)}`);
      return;
    }
    if (type === CMD_DISC) {
      this.end('client disconnected (NBD_CMD_DISC)');
      return;
    }
    const errno = checkRequest(type, flags, offset, length, this.info, this.structured);
    if (type === CMD_WRITE) {
      this.cFlags = flags;
      this.cHi = hi;
      this.cLo = lo;
      this.cOffset = offset;
      this.cLength = length;
      if (errno !== 0) {
        if (length > this.limits.maxSkippedWriteBytes) {
          this.refuse(type, flags, hi, lo, offset, length, errno);
          this.end(`WRITE payload of ${length} bytes is too large to skip`);
          return;
        }
        this.cErrno = errno;
        this.skipLeft = length;
        this.mode = MODE_SKIP;
        return;
      }
      if (this.writeNow !== null && length > 0 && length < POOL_MIN_SIZE && (flags & CMD_FLAG_FUA) === 0 && this.tryWriteNow(q, hi, lo, offset, length, this.writeNow)) return;
      if (this.directWrite !== null && length >= RECEIVE_MIN_BYTES && length - q.length >= POOL_MIN_SIZE && (flags & CMD_FLAG_FUA) === 0 && this.tryReceive(q, hi, lo, offset, length, this.directWrite)) return;
      this.inflightCount++;
      this.inflightBytes += length;
      this.cGot = 0;
      this.directReceive = length >= POOL_MIN_SIZE;
      this.directPooled = this.directReceive || (this.transientInput && length > 0);
      this.direct = this.directPooled ? this.pool.acquire(length) : null;
      this.mode = MODE_PAYLOAD;
      return;
    }
    if (errno !== 0) {
      this.refuse(type, flags, hi, lo, offset, length, errno);
      return;
    }
    this.dispatch(type, flags, hi, lo, offset, length);
  }

  /**
   * A small plain WRITE whose payload is already received in one piece, done by the device
   * before this returns (BlockDevice.writeNow): straight from the received bytes, with no
   * buffer, promise or microtask per request. True if answered (written or failed); false,
   * with nothing consumed, when the device cannot write now and the usual path must.
   */
  private tryWriteNow(q: ByteQueue, hi: number, lo: number, offset: number, length: number, writeNow: (offset: number, data: Buffer) => boolean): boolean {
    const data = q.peek(length);
    if (data === null) return false;
    try {
      if (!writeNow(offset, data)) return false;
    } catch (err) {
      q.consume(length);
      this.inflightCount++;
      this.failed(CMD_WRITE, hi, lo, offset, length, 0, err);
      return true;
    }
    q.consume(length);
    this.writer.simple(hi, lo, 0);
    this.answeredNow++;
    return true;
  }

  /**
   * A large plain WRITE whose payload is mostly still to come, received by the payload receiver
   * straight into the device's file (BlockDevice.directWrite): the bytes already queued are
   * its prefix, the rest is spliced from the socket on the receiver's thread while the event
   * loop does not read. The device's window reaches up to STANDING_REACH past it, as far as the
   * device allows: following large plain WRITEs inside it the thread takes by itself (a run),
   * each reported to `received`. Parsing resumes when the run ends. False, with nothing
   * consumed, when the device or the receiver cannot take it now.
   */
  private tryReceive(q: ByteQueue, hi: number, lo: number, offset: number, length: number, directWrite: (offset: number, length: number, reach?: number) => DirectWrite | null): boolean {
    const receiver = this.receiver!;
    if (!receiver.usable) return false;
    const w = directWrite(offset, length, STANDING_REACH);
    if (w === null) return false;
    const prefixLength = q.length;
    const pooledPrefix = prefixLength > 0 ? this.pool.acquire(prefixLength) : null;
    const prefix = pooledPrefix !== null ? pooledPrefix.subarray(0, prefixLength) : EMPTY;
    let at = 0;
    while (q.length > 0) at += q.takeSome(q.length).copy(prefix, at);
    this.inflightCount++;
    this.inflightBytes += length;
    this.mode = MODE_RECEIVE;
    this.receiveStartedAt = Date.now();
    const run: ReceiveRun = { w, pooledPrefix, firstLength: length, firstCounted: true };
    const window = w.end > offset + length ? { end: w.end, minLength: RECEIVE_MIN_BYTES, maxLength: this.info.maxBlockSize } : null;
    w.onRevoke = () => receiver.stopStanding();
    try {
      receiver.receive(prefix, w.fd, w.position, length, { handleHi: hi, handleLo: lo, offset }, window, (fileErrno, socketErrno, next, rHi, rLo, rOffset, rLength, last) =>
        this.received(run, fileErrno, socketErrno, next, rHi, rLo, rOffset, rLength, last),
      );
    } catch (err) {
      // The thread could not take the job (no descriptor left to duplicate, say). The prefix is
      // already off the queue, so the stream cannot be parsed on: the connection ends, and the
      // write was never acknowledged nor written.
      this.received(run, 0, -1, EMPTY, hi, lo, offset, length, true);
      this.log.warn({ err }, 'the payload receiver could not take a WRITE payload: connection closed');
    }
    return true;
  }

  /**
   * The payload receiver's report on a WRITE of the run (socketErrno -1: it never started); the
   * first is the one tryReceive handed over, the others the thread took inside the window.
   * `next`: on the last, what of the stream after the payload its thread read (the receiver
   * reuses that memory).
   */
  private received(run: ReceiveRun, fileErrno: number, socketErrno: number, next: Buffer, hi: number, lo: number, offset: number, length: number, last: boolean): void {
    const w = run.w;
    if (run.pooledPrefix !== null) {
      this.pool.release(run.pooledPrefix);
      run.pooledPrefix = null;
    }
    // A WRITE the thread took by itself is a request parsed now; the first one is already counted.
    const bytes = run.firstCounted ? run.firstLength : 0;
    if (!run.firstCounted) {
      this.requestCount++;
      this.inflightCount++;
    }
    if (socketErrno !== 0) {
      // Never acknowledged; what landed stays, as after a crash in the middle of a write.
      this.mode = MODE_HEADER;
      w.close();
      this.inflightCount--;
      this.inflightBytes -= bytes;
      this.end(socketErrno < 0 ? `the payload receiver could not take the WRITE at ${offset}` : `a WRITE payload did not fully arrive (${errnoName(socketErrno)})`);
      this.maybeFinish();
      return;
    }
    run.firstCounted = false;
    this.receiveStartedAt = Date.now();
    const err = w.wrote(offset, length, fileErrno === 0 ? null : systemError(fileErrno, `splice to file: ${errnoName(fileErrno)}`));
    if (last) {
      this.mode = MODE_HEADER;
      w.close();
    }
    if (err === null) this.completed(hi, lo, bytes);
    else this.failed(CMD_WRITE, hi, lo, offset, length, bytes, err);
    // Not the last: the thread went on with the next WRITE, and the run goes on.
    if (!last) return;
    const q = this.queue;
    if (this.ending === null) q.push(next);
    this.process();
    if (q.length > 0) q.compact();
    // Unless the next payload was handed over at once, the event loop reads again.
    if (this.mode !== MODE_RECEIVE && !this.paused && this.ending === null) this.receiver!.resumeReading();
  }

  /**
   * A small READ the device does before this returns (BlockDevice.readNow), straight into the
   * reply being built: no buffer, copy, promise or microtask per request. True if answered
   * (read or failed); false when the device cannot read now or the read is too large to copy.
   */
  private tryReadNow(hi: number, lo: number, offset: number, length: number, readNow: (buf: Buffer, offset: number) => boolean): boolean {
    try {
      if (!this.writer.readDataNow(hi, lo, offset, length, this.structured, readNow)) return false;
    } catch (err) {
      this.inflightCount++;
      this.failed(CMD_READ, hi, lo, offset, length, 0, err);
      return true;
    }
    this.answeredNow++;
    return true;
  }

  /**
   * A large READ the device splices from its file into a pipe before this returns
   * (BlockDevice.readToPipe): the connection's native sender then sends the header and the
   * pipe's contents; the data is never copied into this process. True if answered (queued or
   * failed); false when the read does not fit a pipe, no pipe is free, the connection cannot
   * send pipes, or the device declines (the usual path reads it then).
   */
  private tryReadPipe(hi: number, lo: number, offset: number, length: number, readToPipe: (pipeFd: number, offset: number, length: number) => boolean): boolean {
    const pipes = this.writer.pipes;
    if (pipes === null || !pipes.fits(offset, length)) return false;
    const pipe = pipes.acquire();
    if (pipe === null) return false;
    try {
      if (!readToPipe(pipe.writeFd, offset, length)) {
        pipes.release(pipe);
        return false;
      }
    } catch (err) {
      pipes.discard(pipe); // it may hold part of the range
      this.inflightCount++;
      this.failed(CMD_READ, hi, lo, offset, length, 0, err);
      return true;
    }
    this.writer.readPipe(hi, lo, offset, length, this.structured, pipe);
    this.answeredNow++;
    return true;
  }

  /**
   * The replies of requests answered in this parsing pass leave together: at once if nothing
   * else is in flight (latency at queue depth 1), else with the completions of this turn.
   */
  private sendAnsweredNow(): void {
    if (this.answeredNow === 0) return;
    this.answeredNow = 0;
    if (this.inflightCount === 0) this.writer.flushNow();
  }

  /**
   * Where the next socket read may go: the rest of the current large WRITE's buffer, when
   * nothing received earlier is still queued (bytes must land in stream order) and at least
   * POOL_MIN_SIZE bytes of it are missing. A read aimed at a payload stops at its end: for a
   * short rest it would be a read of its own (measured: 128 KiB writes cost two reads each, a
   * full one and one for the last 28 bytes, and ran a fifth slower); the scratch read that
   * takes the rest with the next requests costs a small copy instead.
   */
  directReadTarget(): Buffer | null {
    if (this.mode !== MODE_PAYLOAD || !this.directReceive || this.direct === null || this.ending !== null || this.queue.length !== 0) return null;
    if (this.cLength - this.cGot < POOL_MIN_SIZE) return null;
    return this.direct.subarray(this.cGot, this.cLength);
  }

  /** `n` bytes were read into the buffer `directReadTarget` returned. */
  directReceived(n: number): void {
    this.cGot += n;
    if (this.cGot < this.cLength) return;
    this.finishAssembledWrite();
    this.process();
  }

  private finishAssembledWrite(): void {
    const buf = this.direct!;
    this.direct = null;
    this.mode = MODE_HEADER;
    this.startWrite(this.cFlags, this.cHi, this.cLo, this.cOffset, buf.subarray(0, this.cLength), this.directPooled ? buf : null);
  }

  /** Gathers the current WRITE's payload; true once it was complete and sent to the device. */
  private collectPayload(q: ByteQueue): boolean {
    const direct = this.direct;
    if (direct !== null) {
      while (this.cGot < this.cLength) {
        if (q.length === 0) return false;
        const piece = q.takeSome(this.cLength - this.cGot);
        this.cGot += piece.copy(direct, this.cGot);
      }
      this.finishAssembledWrite();
      return true;
    }
    while (this.cGot < this.cLength) {
      if (q.length === 0) return false;
      const piece = q.takeSome(this.cLength - this.cGot);
      this.pieces.push(piece);
      this.cGot += piece.length;
    }
    const pieces = this.pieces;
    this.pieces = [];
    this.mode = MODE_HEADER;
    if (pieces.length <= 1) {
      // The whole payload arrived in one chunk: write straight from it.
      this.startWrite(this.cFlags, this.cHi, this.cLo, this.cOffset, pieces[0] ?? EMPTY, null);
      return true;
    }
    const data = Buffer.allocUnsafe(this.cLength);
    let at = 0;
    for (const piece of pieces) at += piece.copy(data, at);
    this.startWrite(this.cFlags, this.cHi, this.cLo, this.cOffset, data, null);
    return true;
  }

  /** `pooled`: the pool buffer behind `data`, given back once the device is done with it. */
  private startWrite(flags: number, hi: number, lo: number, offset: number, data: Buffer, pooled: Buffer | null): void {
    const length = data.length;
    let p: Promise<void>;
    if (length === 0) p = RESOLVED;
    else {
      try {
        p = this.device.write(offset, data, (flags & CMD_FLAG_FUA) !== 0 ? FUA : undefined);
      } catch (err) {
        p = Promise.reject(err);
      }
    }
    p.then(
      () => {
        if (pooled) this.pool.release(pooled);
        this.completed(hi, lo, length);
      },
      (err: unknown) => {
        if (pooled) this.pool.release(pooled);
        this.failed(CMD_WRITE, hi, lo, offset, length, length, err);
      },
    );
  }

  private dispatch(type: number, flags: number, hi: number, lo: number, offset: number, length: number): void {
    if (type === CMD_READ && this.readNow !== null && length > 0 && this.tryReadNow(hi, lo, offset, length, this.readNow)) return;
    if (type === CMD_READ && this.readToPipe !== null && length >= POOL_MIN_SIZE && length <= PIPE_BYTES && this.tryReadPipe(hi, lo, offset, length, this.readToPipe)) return;
    this.inflightCount++;
    if (type === CMD_READ) {
      this.inflightBytes += length;
      if (length > 0 && this.readInto) {
        this.pooledRead(hi, lo, offset, length, this.readInto);
        return;
      }
      let r: Promise<Buffer>;
      try {
        r = length === 0 ? Promise.resolve(EMPTY) : this.device.read(offset, length);
      } catch (err) {
        r = Promise.reject(err);
      }
      r.then(
        (data) => this.readDone(hi, lo, offset, length, data),
        (err: unknown) => this.failed(type, hi, lo, offset, length, length, err),
      );
      return;
    }
    let p: Promise<void>;
    try {
      const fua = (flags & CMD_FLAG_FUA) !== 0;
      switch (type) {
        case CMD_FLUSH:
          p = this.device.flush();
          break;
        case CMD_TRIM:
          p = length === 0 ? RESOLVED : this.device.trim(offset, length, fua ? FUA : undefined);
          break;
        case CMD_WRITE_ZEROES:
          p = length === 0 ? RESOLVED : this.device.writeZeroes(offset, length, ZERO_OPTIONS[(fua ? 1 : 0) | ((flags & CMD_FLAG_NO_HOLE) !== 0 ? 2 : 0)]);
          break;
        case CMD_CACHE:
          p = RESOLVED; // advisory; the device has no cache to warm
          break;
        default:
          p = Promise.reject(new Error(`unexpected command ${type}`));
      }
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => this.completed(hi, lo, 0),
      (err: unknown) => this.failed(type, hi, lo, offset, length, 0, err),
    );
  }

  /** A read into a pooled buffer, given back once the reply has been copied or written. */
  private pooledRead(hi: number, lo: number, offset: number, length: number, readInto: (buf: Buffer, offset: number) => Promise<void>): void {
    const pooled = this.pool.acquire(length);
    const view = pooled.subarray(0, length);
    let r: Promise<void>;
    try {
      r = readInto(view, offset);
    } catch (err) {
      r = Promise.reject(err);
    }
    r.then(
      () => this.readDone(hi, lo, offset, length, view, () => this.pool.release(pooled)),
      (err: unknown) => {
        this.pool.release(pooled);
        this.failed(CMD_READ, hi, lo, offset, length, length, err);
      },
    );
  }

  private readDone(hi: number, lo: number, offset: number, length: number, data: Buffer, release?: () => void): void {
    this.inflightCount--;
    this.inflightBytes -= length;
    if (data.length !== length) {
      this.replyError(hi, lo, NBD_EIO, `READ at ${offset}: the device returned ${data.length} of ${length} bytes`);
    } else if (length === 0 && this.structured) {
      this.writer.structuredNone(hi, lo);
    } else {
      this.writer.readData(hi, lo, offset, data, this.structured, release);
    }
    this.settled();
  }

  private completed(hi: number, lo: number, bytes: number): void {
    this.inflightCount--;
    this.inflightBytes -= bytes;
    this.writer.simple(hi, lo, 0);
    this.settled();
  }

  private failed(type: number, hi: number, lo: number, offset: number, length: number, bytes: number, err: unknown): void {
    this.inflightCount--;
    this.inflightBytes -= bytes;
    const errno = nbdErrnoFor(err);
    const message = `${commandName(type)} at ${offset} length ${length}: ${errorMessageFor(err)}`;
    const level = this.warnings++ < WARN_LIMIT ? 'warn' : 'debug';
    this.log[level]({ err, errno }, 'request failed');
    this.replyError(hi, lo, errno, message, errorOffsetOf(err, type, offset, length));
    this.settled();
  }

  /** Answers a request that `checkRequest` refused. */
  private refuse(type: number, flags: number, hi: number, lo: number, offset: number, length: number, errno: number): void {
    const message = refusalMessage(type, flags, offset, length, this.info, errno);
    this.log.debug({ errno }, message);
    this.replyError(hi, lo, errno, message);
  }

  /** A structured client gets the message (and a READ must never get a simple reply then). */
  private replyError(hi: number, lo: number, errno: number, message: string, errorOffset?: number): void {
    if (this.structured) this.writer.structuredError(hi, lo, errno, message, errorOffset);
    else this.writer.simple(hi, lo, errno);
  }

  private settled(): void {
    this.giveBack();
    if (this.ending !== null) {
      this.maybeFinish();
      return;
    }
    // Nothing else in flight: no later completion to batch with, so answer now (latency at
    // queue depth 1); with more in flight the writer batches until the end of this turn.
    if (this.inflightCount === 0) this.writer.flushNow();
    this.maybeResume();
  }

  private maybeResume(): void {
    if (!this.paused || this.ending !== null || this.mode === MODE_RECEIVE || this.overConnectionBudget()) return;
    this.paused = false;
    this.hooks.resumeInput();
    this.process();
  }

  private maybeFinish(): void {
    if (this.inflightCount !== 0 || this.finishedCalled) return;
    this.finishedCalled = true;
    this.writer.flushNow();
    this.hooks.finished(this.ending ?? 'finished');
  }

  /** Bytes this connection holds: request buffers in flight and replies the kernel has not taken. */
  private held(): number {
    return this.inflightBytes + this.writer.pendingBytes;
  }

  private overConnectionBudget(): boolean {
    return this.inflightCount >= this.limits.maxInflightRequests || this.held() >= this.limits.maxInflightBytes;
  }

  /**
   * Whether the request whose header is next in `q` may be parsed now: within this connection's
   * limits, and with what it will hold beyond its floor borrowed from the shared budget. A
   * single request may exceed the per-connection byte limit only when nothing else is held.
   */
  private admit(q: ByteQueue): boolean {
    if (this.inflightCount >= this.limits.maxInflightRequests) return false;
    const b = q.contiguous(REQUEST_HEADER_SIZE);
    const type = b.readUInt16BE(q.offset + 6);
    const length = b.readUInt32BE(q.offset + 24);
    const cost = (type === CMD_READ || type === CMD_WRITE) && length <= this.info.maxBlockSize ? length : 0;
    const held = this.held();
    if (held > 0 && held + cost > this.limits.maxInflightBytes) return false;
    const need = held + cost - this.limits.floorBytes;
    if (need > this.borrowed) {
      if (!this.limits.shared.tryTake(need - this.borrowed)) {
        this.sharedNeed = need - this.borrowed;
        this.limits.shared.wait(this.wake);
        return false;
      }
      this.borrowed = need;
      this.sharedNeed = 0;
    }
    return true;
  }

  /** Returns borrowed bytes this connection no longer holds. */
  private giveBack(): void {
    const excess = this.borrowed - Math.max(0, this.held() - this.limits.floorBytes);
    if (excess <= 0) return;
    this.borrowed -= excess;
    this.limits.shared.give(excess);
  }
}

const EMPTY = Buffer.alloc(0);

/** An I/O error a layer located inside the request (details.offset) becomes ERROR_OFFSET. */
function errorOffsetOf(err: unknown, type: number, offset: number, length: number): number | undefined {
  if (type === CMD_FLUSH || !isSnapbackError(err) || (err.code !== 'IO_ERROR' && err.code !== 'NO_SPACE')) return undefined;
  const at = err.details?.offset;
  return typeof at === 'number' && at >= offset && at < offset + length ? at : undefined;
}
