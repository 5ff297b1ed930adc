/**
 * The native reply sender of one connection (docs/native-io.md): a thread of the addon
 * that writes this connection's replies to the socket while a spliced read is among them. It
 * sends a spliced read's header and then its pipe's contents, and the other replies queued
 * meanwhile from their buffers, blocking in poll(2) while the socket is full, as nbdkit's
 * connection threads do in send(2). The event loop only queues jobs and hears, in order,
 * which were sent.
 *
 * The socket is written by one side at a time. Jobs wait (the sender is paused) until the
 * socket's own write queue is empty (an empty write queued behind it says when); while jobs are
 * queued, the reply writer gives every reply to the sender; once all were sent the sender
 * pauses again and replies go through the socket.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { errnoName, type NativeIo, type Sender } from '../native/native-io.js';
import type { Pipe, PipePool } from './pipe-pool.js';

/**
 * The socket's send buffer once the sender exists. With Linux's default (208 KiB) a 1 MiB
 * reply took 7 splices and 3 waits for the client; with 2 MiB, spliced 1 MiB reads went from
 * 0.9x to 1.8x nbdkit's speed (A/B with nbdcopy over a unix socket, this machine).
 */
export const SEND_BUFFER_BYTES = 2 * 1024 * 1024;

const EMPTY = Buffer.alloc(0);

interface Job {
  /** Bytes this job holds until sent (for the connection's memory budget). */
  bytes: number;
  /** Gives the job's buffer back once it was sent. */
  release: (() => void) | undefined;
  /** A spliced read's pipe: back to the pool once sent, closed if dropped. */
  pipe: Pipe | null;
}

export class ReplySender {
  private sender: Sender | null = null;
  private failed = false;
  /** Jobs queued and not yet reported sent, oldest first from `head`. */
  private jobs: Array<Job | undefined> = [];
  private head = 0;
  private paused = true;
  /** Bytes of the jobs not yet sent. */
  queuedBytes = 0;
  private idleWaiters: Array<() => void> = [];
  private readonly report = (done: number, errno: number): void => this.onReport(done, errno);
  /** An empty write is queued to learn when the socket's own queue is empty. */
  private waitingForSocket = false;
  private readonly socketEmptied = (): void => {
    this.waitingForSocket = false;
    this.maybeStart();
  };

  constructor(
    private readonly io: NativeIo,
    private readonly socket: Socket,
    private readonly fd: number,
    readonly pipes: PipePool,
    /** Some jobs were sent: their bytes are no longer held. */
    private readonly onSent: () => void,
    private readonly log: Logger,
  ) {}

  /** Jobs are queued or being sent: every reply must go through the sender until they are out. */
  get active(): boolean {
    return this.head < this.jobs.length;
  }

  /** Whether pipes can be sent (the thread exists or could be started). */
  get usable(): boolean {
    if (this.sender !== null) return true;
    if (this.failed) return false; // it could not be started, or it was closed
    try {
      this.sender = this.io.createSender(this.fd, SEND_BUFFER_BYTES, this.report);
      return true;
    } catch (err) {
      this.failed = true;
      this.log.warn({ err }, `no reply sender thread (${(err as Error).message}): large reads of this connection are copied through buffers`);
      return false;
    }
  }

  /** Queues `buf` (a complete reply or batch of replies); `release` runs once it was sent. */
  bytes(buf: Buffer, release: (() => void) | undefined): void {
    this.io.sendBytes(this.sender!, buf);
    this.jobs.push({ bytes: buf.length, release, pipe: null });
    this.queuedBytes += buf.length;
  }

  /** Queues a spliced read: `header`, then `length` bytes from `pipe`. */
  pipe(header: Buffer, pipe: Pipe, length: number): void {
    this.io.sendPipe(this.sender!, header, pipe.readFd, length);
    this.jobs.push({ bytes: header.length + length, release: undefined, pipe });
    this.queuedBytes += header.length + length;
  }

  /**
   * Lets the thread write once the socket has nothing of its own left to write. While it has,
   * an empty write is queued behind what it holds: its callback runs when all of it is out.
   */
  maybeStart(): void {
    if (!this.paused || !this.active || this.sender === null || this.waitingForSocket) return;
    if (this.socket.writableLength !== 0) {
      this.waitingForSocket = true;
      this.socket.write(EMPTY, this.socketEmptied);
      return;
    }
    this.paused = false;
    this.io.setPaused(this.sender, false);
  }

  /** Runs `fn` once nothing is queued (at once if nothing is). */
  whenIdle(fn: () => void): void {
    if (this.active) this.idleWaiters.push(fn);
    else fn();
  }

  /** Stops the thread; jobs not sent are dropped (their pipes closed). Idempotent. */
  close(): void {
    if (this.sender !== null) this.io.closeSender(this.sender);
    this.sender = null;
    this.failed = true;
    for (let i = this.head; i < this.jobs.length; i++) {
      const pipe = this.jobs[i]?.pipe;
      if (pipe) this.pipes.discard(pipe);
    }
    this.jobs = [];
    this.head = 0;
    this.queuedBytes = 0;
    this.runIdleWaiters();
  }

  private onReport(done: number, errno: number): void {
    for (let i = 0; i < done; i++) {
      const job = this.jobs[this.head]!;
      this.jobs[this.head++] = undefined;
      this.queuedBytes -= job.bytes;
      job.release?.();
      if (job.pipe) this.pipes.release(job.pipe);
    }
    if (this.head >= 1024 && this.head * 2 >= this.jobs.length) {
      // Busy for long stretches, the sender may never be idle: drop the sent jobs' slots.
      this.jobs = this.jobs.slice(this.head);
      this.head = 0;
    }
    if (!this.active) {
      this.jobs = [];
      this.head = 0;
      if (this.sender !== null && !this.paused) {
        this.paused = true;
        this.io.setPaused(this.sender, true);
      }
    }
    if (errno !== 0) {
      const code = errnoName(errno);
      this.log.debug({ code }, 'reply sender: the socket failed');
      this.close();
      this.socket.destroy(Object.assign(new Error(`sending replies: ${code}`), { code }));
      return;
    }
    if (!this.active) this.runIdleWaiters();
    this.onSent();
  }

  private runIdleWaiters(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const fn of waiters) fn();
  }
}
