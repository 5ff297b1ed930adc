/**
 * The payload receiver of one connection (docs/native-io.md): a thread of the native addon that
 * takes a large WRITE's payload off the socket and splices it into the device's file, socket ->
 * pipe -> file, so the payload is never copied into this process and the event loop is not woken
 * for every part of it that arrives (a unix socket carries about 200 KB at a time, so a 1 MiB
 * payload came in five to seven reads). While a payload is received the event loop does not
 * read the socket. At the end the thread also reads the next request's header if it is already
 * there, and hands it back with its report: when that is another large WRITE, the next payload
 * is handed over without the event loop reading the socket in between (no read, and no
 * restarting and stopping of its reads: five system calls on the event loop per request).
 * Otherwise the event loop reads again, unless the connection is paused for its budget.
 *
 * With a standing window (a range of the device the caller may write straight into the file
 * for as long as the device allows it), the thread does not hand a following large plain WRITE
 * inside it back at all: it takes its payload by itself and reports each WRITE once done, so a
 * client streaming large writes costs neither thread a hand-over per request. The caller
 * revokes the window with `stopStanding` (the device needs it back); the run then ends with the
 * WRITE in progress.
 */
import type { Socket } from 'node:net';
import { constants } from 'node:os';
import type { Logger } from 'pino';
import type { NativeIo, Receiver } from '../native/native-io.js';
import { setSocketReading } from './direct-receive.js';
import { REQUEST_HEADER_SIZE } from './protocol.js';

/** The receiver's pipe: a 1 MiB payload in one splice from the socket where the kernel allows it. */
const PIPE_BYTES = 1024 * 1024;
/** What a dropped job reports (the connection is closing). */
const ECANCELED = constants.errno.ECANCELED;
const EMPTY = Buffer.alloc(0);

/**
 * A WRITE of a run ended (the one handed over, then any the thread took inside the standing
 * window), in order. `last`: the run ended with it, and `next` holds the bytes of the stream
 * after the payload that the thread read (at most one request header; often none), valid until
 * the next `receive`. A run cut short by `close` ends with socketErrno ECANCELED, last, and the
 * request fields zero (the WRITE in progress is unknown to the event loop).
 */
export type ReceiveReport = (fileErrno: number, socketErrno: number, next: Buffer, handleHi: number, handleLo: number, offset: number, length: number, last: boolean) => void;

/** The WRITE handed over: its handle and device offset. */
export interface ReceiveRequest {
  handleHi: number;
  handleLo: number;
  offset: number;
}

/** A standing window: following plain WRITEs of minLength to maxLength bytes inside [request offset, end). */
export interface StandingWindow {
  end: number;
  minLength: number;
  maxLength: number;
}

export class PayloadReceiver {
  private receiver: Receiver | null = null;
  private failed = false;
  private job: { report: ReceiveReport; prefix: Buffer } | null = null;
  /** Where the thread reads what follows a payload (kept alive for it: it outlives every job). */
  private readonly next = Buffer.allocUnsafeSlow(REQUEST_HEADER_SIZE);
  private readonly report = (fileErrno: number, socketErrno: number, nextBytes: number, hi: number, lo: number, offset: number, length: number, last: boolean): void =>
    this.onReport(fileErrno, socketErrno, nextBytes, hi, lo, offset, length, last);

  constructor(
    private readonly io: NativeIo,
    private readonly socket: Socket,
    private readonly fd: number,
    private readonly log: Logger,
  ) {}

  /** Whether payloads can be received now (the thread exists or could be started, none running). */
  get usable(): boolean {
    if (this.job !== null || this.failed) return false;
    if (this.receiver !== null) return true;
    try {
      this.receiver = this.io.createReceiver(this.fd, PIPE_BYTES, this.report);
      return true;
    } catch (err) {
      this.failed = true;
      this.log.warn({ err }, `no payload receiver thread (${(err as Error).message}): large writes of this connection are received by the event loop`);
      return false;
    }
  }

  /**
   * Stops the event loop's reads (if they run), then writes the WRITE of `length` bytes at
   * `position` of `fileFd`: `prefix` (already received), then the rest from the socket; with a
   * `window`, also the following WRITEs inside it. `report` runs on the event loop for each WRITE;
   * after the last one the caller hands over the next payload, or restarts reads with
   * `resumeReading()` (or leaves them paused). Only when `usable`.
   */
  receive(prefix: Buffer, fileFd: number, position: number, length: number, request: ReceiveRequest, window: StandingWindow | null, report: ReceiveReport): void {
    if (!setSocketReading(this.socket, false)) throw new Error('the socket has no handle to stop');
    try {
      this.io.receiveToFile(
        this.receiver!,
        prefix,
        fileFd,
        position,
        length,
        this.next,
        request.handleHi,
        request.handleLo,
        request.offset,
        window?.end ?? 0,
        window?.minLength ?? 0,
        window?.maxLength ?? 0,
      );
    } catch (err) {
      this.failed = true;
      throw err;
    }
    this.job = { report, prefix };
  }

  /** Revokes the standing window of the run in progress: it ends with the WRITE being received. */
  stopStanding(): void {
    if (this.receiver !== null && this.job !== null) this.io.stopStanding(this.receiver);
  }

  /** The event loop reads the socket again. */
  resumeReading(): void {
    if (!this.socket.destroyed) setSocketReading(this.socket, true);
  }

  /** Stops the thread; a run in progress ends with ECANCELED (its `report` runs now). Idempotent. */
  close(): void {
    if (this.receiver !== null) this.io.closeReceiver(this.receiver);
    this.receiver = null;
    this.failed = true;
    const job = this.job;
    this.job = null;
    job?.report(0, ECANCELED, EMPTY, 0, 0, 0, 0, true);
  }

  private onReport(fileErrno: number, socketErrno: number, nextBytes: number, hi: number, lo: number, offset: number, length: number, last: boolean): void {
    const job = this.job;
    if (job === null) return;
    if (last) this.job = null;
    if (socketErrno !== 0) this.log.debug({ socketErrno }, 'payload receiver: the socket failed');
    job.report(fileErrno, socketErrno, last ? this.next.subarray(0, nextBytes) : EMPTY, hi, lo, offset, length, last);
  }
}
