/**
 * ReplyWriter: encodes transmission-phase replies and sends them in batches. Replies that
 * complete in the same event-loop turn leave in one socket write (one writev): headers and
 * small payloads are packed into a slab, large payloads are passed by reference (never copied).
 * A full slab is used again once the kernel has taken every part of it: a fresh 256 KiB slab
 * for every 63 replies of 4 KiB cost page faults, kernel zeroing and an munmap each time
 * (about a twentieth of the server's CPU for 4 KiB random reads).
 *
 * Large reads spliced from the file (readPipe) are sent by the connection's native reply sender
 * (reply-sender.ts); while it has replies to send, every reply goes through it.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Pipe, PipePool } from './pipe-pool.js';
import { ReplySender } from './reply-sender.js';
import {
  REPLY_FLAG_DONE,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_ERROR_OFFSET,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_HEADER_SIZE,
  STRUCTURED_REPLY_MAGIC,
} from './protocol.js';

const SLAB_SIZE = 256 * 1024;
/** Written-out slabs kept for reuse (beyond the one being filled). */
const SPARE_SLABS = 1;
/** Read payloads up to this size are copied next to their header; larger ones are referenced. */
const COPY_THRESHOLD = 16 * 1024;
const TWO_32 = 0x100000000;

/** Bytes before a successful read's data: a simple reply, or an OFFSET_DATA chunk header and its offset. */
function readHeaderSize(structured: boolean): number {
  return structured ? STRUCTURED_HEADER_SIZE + 8 : SIMPLE_REPLY_SIZE;
}

/** A write callback that gives a buffer back only if the kernel took it (never on error). */
function afterWrite(release: (() => void) | undefined): ((err?: Error | null) => void) | undefined {
  return release ? (err) => (err ? undefined : release()) : undefined;
}

/** A slab and how many of its pieces the socket still holds. */
interface Slab {
  buf: Buffer;
  /** Pieces handed to the socket and not yet written. */
  held: number;
  /** No longer the slab being filled: reusable once `held` is 0. */
  full: boolean;
  /** A piece of it was written (made once per slab, not per batch). */
  written: () => void;
  /** The same, for the last piece of a batch: also reports that the batch left. */
  writtenLast: (err?: Error | null) => void;
}

export class ReplyWriter {
  private current: Slab = this.newSlab(Buffer.allocUnsafeSlow(SLAB_SIZE));
  private slab = this.current.buf;
  /** Full slabs whose every piece was written, ready to be filled again. */
  private readonly spare: Buffer[] = [];
  /** Slabs allocated so far (the rest were reused). */
  slabsAllocated = 1;
  /** Start of the slab bytes not yet handed to the socket, and end of the bytes written. */
  private sealed = 0;
  private used = 0;
  private pieces: Buffer[] = [];
  /** Called once the piece at the same index has been written (buffers to give back). */
  private releases: Array<(() => void) | undefined> = [];
  private queued = 0;
  private scheduled = false;
  private readonly batchWritten = (): void => this.onWritten?.();
  /** Sends spliced reads, where the native addon and a pipe pool were given. */
  private readonly sender: ReplySender | null;
  /** A spliced read's header (the sender copies it). */
  private readonly pipeHeader = Buffer.alloc(STRUCTURED_HEADER_SIZE + 8);
  private readonly flushCallback = (): void => {
    this.scheduled = false;
    this.flushNow();
  };

  /**
   * `onWritten` runs when a batch has been taken by the kernel (the bytes are no longer held).
   * `splice`: the pipes and socket descriptor for spliced reads (a plain socket, not TLS).
   */
  constructor(
    private readonly socket: Socket,
    private readonly onWritten?: () => void,
    splice?: { pipes: PipePool; fd: number; log: Logger },
  ) {
    this.sender = splice ? new ReplySender(splice.pipes.io, socket, splice.fd, splice.pipes, () => onWritten?.(), splice.log) : null;
  }

  /** Bytes accepted but not yet written to the kernel (ours, the socket's and the sender's). */
  get pendingBytes(): number {
    return this.queued + this.socket.writableLength + (this.sender?.queuedBytes ?? 0);
  }

  /** The pipes spliced reads may use, when this connection can send them now. */
  get pipes(): PipePool | null {
    return this.sender !== null && this.sender.usable ? this.sender.pipes : null;
  }

  simple(handleHi: number, handleLo: number, error: number): void {
    const at = this.reserve(SIMPLE_REPLY_SIZE);
    const b = this.slab;
    b.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
    b.writeUInt32BE(error, at + 4);
    b.writeUInt32BE(handleHi, at + 8);
    b.writeUInt32BE(handleLo, at + 12);
    this.schedule();
  }

  /**
   * A successful read: a simple reply with data, or one OFFSET_DATA chunk marked DONE.
   * `release` is called once `data` is no longer needed (copied, or written to the socket).
   */
  readData(handleHi: number, handleLo: number, offset: number, data: Buffer, structured: boolean, release?: () => void): void {
    const headerSize = readHeaderSize(structured);
    const inline = data.length <= COPY_THRESHOLD;
    const at = this.reserve(inline ? headerSize + data.length : headerSize);
    this.readHeader(this.slab, at, handleHi, handleLo, offset, data.length, structured);
    if (inline) {
      data.copy(this.slab, at + headerSize);
      release?.();
    } else this.appendReference(data, release);
    this.schedule();
  }

  /**
   * A successful read whose data the device puts straight into the reply, before this returns:
   * `fill` (BlockDevice.readNow) reads into the slab right after the header. False, with
   * nothing queued, when the read is too large to copy into the slab or `fill` declines; a
   * throw from `fill` also leaves nothing queued.
   */
  readDataNow(handleHi: number, handleLo: number, offset: number, length: number, structured: boolean, fill: (buf: Buffer, offset: number) => boolean): boolean {
    if (length > COPY_THRESHOLD) return false;
    const headerSize = readHeaderSize(structured);
    const n = headerSize + length;
    const at = this.reserve(n);
    let done = false;
    try {
      done = fill(this.slab.subarray(at + headerSize, at + n), offset);
    } finally {
      if (!done) {
        // Nothing else was reserved meanwhile (fill is synchronous): give the room back.
        this.used = at;
        this.queued -= n;
      }
    }
    if (!done) return false;
    this.readHeader(this.slab, at, handleHi, handleLo, offset, length, structured);
    this.schedule();
    return true;
  }

  /**
   * A successful read whose `length` bytes are in `pipe` (spliced from the file): sent by the
   * native sender, after which the pipe goes back to its pool. Only when `pipes` is non-null.
   */
  readPipe(handleHi: number, handleLo: number, offset: number, length: number, structured: boolean, pipe: Pipe): void {
    const sender = this.sender!;
    const header = this.pipeHeader.subarray(0, readHeaderSize(structured));
    this.readHeader(header, 0, handleHi, handleLo, offset, length, structured);
    sender.pipe(header, pipe, length);
    sender.maybeStart();
    // Replies queued before it now go through the sender too.
    if (this.queued > 0) this.schedule();
  }

  /** Runs `fn` once the native sender has sent everything given to it (at once without one). */
  whenSent(fn: () => void): void {
    if (this.sender) this.sender.whenIdle(fn);
    else fn();
  }

  /** The connection is gone: stops the native sender and drops what it had not sent. */
  close(): void {
    this.sender?.close();
    this.discard();
  }

  /** A structured reply with no payload (success of a zero-length read). */
  structuredNone(handleHi: number, handleLo: number): void {
    const at = this.reserve(STRUCTURED_HEADER_SIZE);
    this.structuredHeader(at, handleHi, handleLo, REPLY_TYPE_NONE, 0);
    this.schedule();
  }

  /** A final error chunk; with `errorOffset` it is ERROR_OFFSET, otherwise ERROR. */
  structuredError(handleHi: number, handleLo: number, error: number, message: string, errorOffset?: number): void {
    const msg = Buffer.from(message, 'utf8').subarray(0, 4096);
    const withOffset = errorOffset !== undefined;
    const length = 6 + msg.length + (withOffset ? 8 : 0);
    const at = this.reserve(STRUCTURED_HEADER_SIZE + length);
    const b = this.slab;
    this.structuredHeader(at, handleHi, handleLo, withOffset ? REPLY_TYPE_ERROR_OFFSET : REPLY_TYPE_ERROR, length);
    let p = at + STRUCTURED_HEADER_SIZE;
    b.writeUInt32BE(error, p);
    b.writeUInt16BE(msg.length, p + 4);
    p += 6;
    msg.copy(b, p);
    p += msg.length;
    if (withOffset) {
      b.writeUInt32BE(Math.floor(errorOffset / TWO_32), p);
      b.writeUInt32BE(errorOffset >>> 0, p + 4);
    }
    this.schedule();
  }

  /** Hands everything queued to the socket now, in one write or one corked batch. */
  flushNow(): void {
    this.seal();
    const pieces = this.pieces;
    if (pieces.length === 0) return;
    const releases = this.releases;
    this.pieces = [];
    this.releases = [];
    this.queued = 0;
    const socket = this.socket;
    if (socket.destroyed || !socket.writable) return; // dropped buffers go to the GC
    const sender = this.sender;
    if (sender !== null && sender.active) {
      for (let i = 0; i < pieces.length; i++) sender.bytes(pieces[i]!, releases[i]);
      sender.maybeStart();
      return;
    }
    const last = pieces.length - 1;
    if (last === 0) {
      socket.write(pieces[0]!, this.lastCallback(releases[0]));
      return;
    }
    socket.cork();
    for (let i = 0; i < last; i++) socket.write(pieces[i]!, afterWrite(releases[i]));
    socket.write(pieces[last]!, this.lastCallback(releases[last]));
    socket.uncork();
  }

  /** The last write of a batch also reports that the batch left. */
  private lastCallback(release: (() => void) | undefined): ((err?: Error | null) => void) | undefined {
    const onWritten = this.onWritten;
    if (!onWritten) return afterWrite(release);
    if (!release) return this.batchWritten;
    if (release === this.current.written) return this.current.writtenLast;
    return (err) => {
      if (!err) release?.();
      onWritten();
    };
  }

  /** Drops whatever is queued (the socket is gone). */
  discard(): void {
    this.pieces = [];
    this.releases = [];
    this.queued = 0;
    this.sealed = this.used;
  }

  /** The header of a successful read's reply at `at`: simple, or one OFFSET_DATA chunk marked DONE. */
  private readHeader(b: Buffer, at: number, handleHi: number, handleLo: number, offset: number, length: number, structured: boolean): void {
    if (structured) {
      b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
      b.writeUInt16BE(REPLY_FLAG_DONE, at + 4);
      b.writeUInt16BE(REPLY_TYPE_OFFSET_DATA, at + 6);
      b.writeUInt32BE(handleHi, at + 8);
      b.writeUInt32BE(handleLo, at + 12);
      b.writeUInt32BE(8 + length, at + 16);
      b.writeUInt32BE(Math.floor(offset / TWO_32), at + 20);
      b.writeUInt32BE(offset >>> 0, at + 24);
    } else {
      b.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
      b.writeUInt32BE(0, at + 4);
      b.writeUInt32BE(handleHi, at + 8);
      b.writeUInt32BE(handleLo, at + 12);
    }
  }

  private structuredHeader(at: number, handleHi: number, handleLo: number, type: number, length: number): void {
    const b = this.slab;
    b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
    b.writeUInt16BE(REPLY_FLAG_DONE, at + 4);
    b.writeUInt16BE(type, at + 6);
    b.writeUInt32BE(handleHi, at + 8);
    b.writeUInt32BE(handleLo, at + 12);
    b.writeUInt32BE(length, at + 16);
  }

  /** Room for `n` bytes in the slab; returns where to write them. */
  private reserve(n: number): number {
    if (this.slab.length - this.used < n) {
      this.seal();
      // Slab regions already handed out stay referenced by the socket until written: fill a
      // slab whose pieces have all been written, or a fresh one.
      const full = this.current;
      full.full = true;
      this.keepIfWritten(full);
      const reused = n <= SLAB_SIZE ? this.spare.pop() : undefined;
      if (reused === undefined) this.slabsAllocated++;
      this.current = this.newSlab(reused ?? Buffer.allocUnsafeSlow(Math.max(SLAB_SIZE, n)));
      this.slab = this.current.buf;
      this.sealed = 0;
      this.used = 0;
    }
    const at = this.used;
    this.used += n;
    this.queued += n;
    return at;
  }

  private appendReference(data: Buffer, release: (() => void) | undefined): void {
    this.seal();
    this.pieces.push(data);
    this.releases.push(release);
    this.queued += data.length;
  }

  private seal(): void {
    if (this.used > this.sealed) {
      const slab = this.current;
      slab.held++;
      this.pieces.push(this.slab.subarray(this.sealed, this.used));
      // Runs only once the kernel took the piece (afterWrite): a failed or dropped write never
      // gives its slab back, and the GC frees it.
      this.releases.push(slab.written);
      this.sealed = this.used;
    }
  }

  private newSlab(buf: Buffer): Slab {
    const slab: Slab = {
      buf,
      held: 0,
      full: false,
      written: () => {
        slab.held--;
        this.keepIfWritten(slab);
      },
      writtenLast: (err) => {
        if (!err) slab.written();
        this.onWritten?.();
      },
    };
    return slab;
  }

  /** A full slab none of whose pieces the socket still holds is kept for reuse (up to SPARE_SLABS). */
  private keepIfWritten(slab: Slab): void {
    if (slab.full && slab.held === 0 && slab.buf.length === SLAB_SIZE && this.spare.length < SPARE_SLABS) {
      slab.full = false; // kept once only
      this.spare.push(slab.buf);
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flushCallback);
  }
}
