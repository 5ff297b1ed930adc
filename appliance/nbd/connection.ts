/**
 * One client connection: the greeting, option haggling under a deadline, then the
 * transmission phase; and an orderly end (in-flight requests answered, replies flushed, then
 * the socket closed). `closed` resolves once the socket is gone and no request is in flight.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { NbdTlsOptions } from './tls-config.js';
import type { Logger } from 'pino';
import type { BufferPool } from './buffer-pool.js';
import { ByteQueue } from './byte-queue.js';
import { adoptForDirectReceive } from './direct-receive.js';
import type { ExportSettings } from './export-info.js';
import { greeting, OptionNegotiator, type NegotiationLimits } from './option-negotiation.js';
import { REQUEST_HEADER_SIZE } from './protocol.js';
import { ReplyWriter } from './reply-writer.js';
import type { PipePool } from './pipe-pool.js';
import { PayloadReceiver } from './payload-receiver.js';
import type { NativeIo } from '../native/native-io.js';
import { Transmission, type TransmissionLimits } from './transmission.js';

export interface ConnectionContext {
  settings: ExportSettings;
  negotiation: NegotiationLimits;
  transmission: TransmissionLimits;
  /** Time from accept to the transmission phase before the connection is dropped. */
  handshakeTimeoutMs: number;
  /** Time a peer gets to close after we ended our side, before the socket is destroyed. */
  closeTimeoutMs: number;
  log: Logger;
  /** Large read and write buffers, shared by the server's connections. */
  pool: BufferPool;
  /** Receive large WRITE payloads straight into their buffers (see direct-receive.ts). */
  directReceive: boolean;
  /** Pipes for spliced reads, where the native addon is loaded (null: reads are copied). */
  pipes: PipePool | null;
  /** The addon, for payload receivers (null: WRITE payloads are received by the event loop). */
  receiveIo: NativeIo | null;
  /**
   * Whether a socket's peer has hung up (the addon's poll; null without it). Asked about
   * connections whose input is paused for room, which would otherwise learn it only on their
   * next write: a hostile client that queues requests and vanishes frees its slot at once.
   */
  socketHungUp: ((fd: number) => boolean) | null;
  /** A payload the receiver has taken for this long without its end ends the connection (0 = never). */
  payloadStallMs: number;
  /**
   * Connections idle (nothing received, nothing in flight) for this long are dropped: the
   * first limit applies until the first request, the second after it (0 = never). Null for
   * the gadget's own client, which is never dropped for being idle.
   */
  idle: { beforeFirstRequestMs: number; afterRequestsMs: number } | null;
  /** Set on TLS-only listeners: the options of the server side of each TLS session. */
  tls: NbdTlsOptions | null;
}

/** Reads that are not a large payload go here, and are copied out before the next read. */
const SCRATCH_SIZE = 128 * 1024;

type Phase = 'handshake' | 'transmission' | 'closing';

export class NbdConnection {
  readonly closed: Promise<void>;
  private phase: Phase = 'handshake';
  private readonly queue = new ByteQueue();
  private readonly negotiator: OptionNegotiator;
  private transmission: Transmission | null = null;
  private writer: ReplyWriter | null = null;
  private receiver: PayloadReceiver | null = null;
  private readonly log: Logger;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private closeTimer: NodeJS.Timeout | null = null;
  private socketClosed = false;
  /** Our side was ended (socket.end()). */
  private ended = false;
  private workDone = true;
  private resolveClosed!: () => void;
  /** Set when reading through `onread` (direct receive); null with 'data' events. */
  private scratch: Buffer | null = null;
  /** The start of `scratch`, one request header long: the read after a received payload. */
  private headerScratch: Buffer | null = null;
  /** Reads so far, and the count the idle check saw last (a change means: not idle). */
  private reads = 0;
  private readsSeen = 0;
  private idleSince = 0;
  private readonly onDataListener = (chunk: Buffer): void => this.onData(chunk);
  /** The accepted socket's descriptor (under TLS too), for the hang-up check; -1 if unknown. */
  private readonly fd: number;

  /** `socket` comes from a server created with pauseOnConnect: it is not reading yet. */
  constructor(
    readonly id: number,
    private socket: Socket,
    private readonly ctx: ConnectionContext,
    /** Who is connected: host:port for TCP, the socket path for unix sockets. */
    readonly peer: string,
  ) {
    this.log = ctx.log.child({ conn: id, peer });
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    this.fd = typeof fd === 'number' ? fd : -1;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.negotiator = new OptionNegotiator(ctx.settings, ctx.negotiation, (data) => {
      if (!this.socket.destroyed) this.socket.write(data);
    });
  }

  start(): void {
    if (this.ctx.directReceive && this.ctx.tls === null) {
      this.scratch = Buffer.allocUnsafeSlow(SCRATCH_SIZE);
      this.headerScratch = this.scratch.subarray(0, REQUEST_HEADER_SIZE);
      const adopted = adoptForDirectReceive(this.socket, {
        buffer: () => this.nextReadBuffer(),
        received: (n, buf) => this.onDirectRead(n, buf),
      });
      if (adopted) this.socket = adopted;
      else this.scratch = null;
    }
    const socket = this.socket;
    socket.setNoDelay(true);
    if (socket.remoteAddress !== undefined) socket.setKeepAlive(true, 30_000);
    if (this.scratch === null) {
      socket.on('data', this.onDataListener);
      socket.resume();
    }
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.log.debug({ err }, 'socket error'));
    socket.on('close', () => this.onClose());
    this.handshakeTimer = setTimeout(() => {
      this.log.info('handshake timed out');
      this.socket.destroy(); // the TLS socket, once STARTTLS has wrapped the plain one
    }, this.ctx.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    socket.write(greeting());
  }

  /** Server shutdown: answer what is in flight, then close. Resolves with `closed`. */
  shutdown(): Promise<void> {
    if (this.phase === 'handshake') this.endSocket('server shutting down');
    else this.transmission?.end('server shutting down');
    return this.closed;
  }

  /**
   * Drops the connection if it has been idle too long (called about once a second): nothing
   * received and nothing in flight since the last check that saw activity; or if a WRITE
   * payload the payload receiver took has not fully arrived after `payloadStallMs`.
   */
  checkIdle(now: number): void {
    if (this.phase !== 'transmission') return;
    const t = this.transmission!;
    if (t.inputPaused && this.hungUp()) {
      this.log.info('dropped an NBD client that hung up while its requests waited for memory');
      this.phase = 'closing';
      t.end('client hung up');
      this.socket.destroy();
      return;
    }
    const since = t.receivingSince;
    if (since !== null && this.ctx.payloadStallMs > 0 && now - since >= this.ctx.payloadStallMs) {
      this.log.info({ stalledSeconds: Math.round((now - since) / 1000) }, 'dropped an NBD client stalled in the middle of a WRITE payload');
      this.phase = 'closing';
      t.end('WRITE payload stalled');
      this.socket.destroy();
      return;
    }
    const idle = this.ctx.idle;
    if (idle === null) return;
    if (this.reads !== this.readsSeen || t.busy) {
      this.readsSeen = this.reads;
      this.idleSince = now;
      return;
    }
    const first = t.requestCount === 0;
    const limit = first ? idle.beforeFirstRequestMs : idle.afterRequestsMs;
    if (limit <= 0 || now - this.idleSince < limit) return;
    const seconds = Math.round((now - this.idleSince) / 1000);
    this.log.info({ idleSeconds: seconds }, first ? 'dropped an NBD client that sent no request after its handshake' : 'dropped an idle NBD client');
    this.phase = 'closing';
    t.end('idle');
    this.socket.destroy();
  }

  /** The peer hung up (see ConnectionContext.socketHungUp); false when that cannot be asked. */
  private hungUp(): boolean {
    const ask = this.ctx.socketHungUp;
    return ask !== null && this.fd >= 0 && !this.socketClosed && ask(this.fd);
  }

  private onData(chunk: Buffer): void {
    this.reads++;
    if (this.phase === 'closing') return;
    this.queue.push(chunk);
    if (this.phase === 'transmission') this.transmission!.process();
    else this.negotiate();
  }

  /** Direct receive: the next read lands in a large WRITE's own buffer, or in the scratch. */
  private nextReadBuffer(): Buffer {
    if (this.phase !== 'transmission') return this.scratch!;
    const t = this.transmission!;
    // While the payload receiver takes a WRITE's payload, the next read (once it is done) is the
    // next request's header only: were it the header of another large WRITE, a full read would
    // take up to 128 KiB of that payload into this process, for the receiver to write out again,
    // where its thread splices the whole payload if nothing of it was read.
    if (t.receivingSince !== null) return this.headerScratch!;
    return t.directReadTarget() ?? this.scratch!;
  }

  private onDirectRead(n: number, buf: Buffer): void {
    this.reads++;
    if (this.phase === 'closing') return;
    if (buf !== this.scratch && buf !== this.headerScratch) {
      this.transmission!.directReceived(n);
      return;
    }
    // Parsed in place; whatever is left must not stay in the scratch, which the next read reuses.
    this.onData(buf.subarray(0, n));
    if (this.queue.length > 0) this.queue.compact();
  }

  private negotiate(): void {
    const step = this.negotiator.process(this.queue);
    if (step === 'pending') return;
    if (step === 'close') {
      this.log.debug({ reason: this.negotiator.closeReason }, 'handshake ended');
      this.endSocket(this.negotiator.closeReason);
      return;
    }
    if (step === 'starttls') {
      this.startTls();
      return;
    }
    this.enterTransmission();
  }

  /** NBD_OPT_STARTTLS was acknowledged: the TLS handshake follows on the same socket. */
  private startTls(): void {
    if (this.queue.length > 0 || this.ctx.tls === null) {
      // A client must wait for the acknowledgement before its TLS handshake.
      this.endSocket('data after NBD_OPT_STARTTLS before the TLS handshake');
      return;
    }
    const raw = this.socket;
    raw.off('data', this.onDataListener);
    raw.removeAllListeners('end');
    raw.removeAllListeners('close');
    const secure = new TLSSocket(raw, { ...this.ctx.tls, isServer: true });
    this.socket = secure;
    secure.on('secure', () => {
      this.log.debug({ protocol: secure.getProtocol(), cipher: secure.getCipher().name }, 'TLS established');
      this.negotiator.tlsStarted();
    });
    secure.on('data', this.onDataListener);
    secure.on('end', () => this.onEnd());
    secure.on('error', (err) => {
      this.log.info({ err: err.message }, 'TLS failed');
      secure.destroy();
    });
    secure.on('close', () => this.onClose());
  }

  private enterTransmission(): void {
    const info = this.negotiator.info!;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.phase = 'transmission';
    this.workDone = false;
    const socket = this.socket;
    this.idleSince = Date.now();
    // Spliced reads need the socket's own descriptor: a plain socket, not TLS.
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    const pipes = this.ctx.pipes;
    const splice = pipes !== null && !(socket instanceof TLSSocket) && typeof fd === 'number' && fd >= 0 ? { pipes, fd, log: this.log } : undefined;
    const writer = new ReplyWriter(socket, () => this.transmission?.onWritten(), splice);
    this.writer = writer;
    // Large payloads spliced into the device's file: only on a socket read through `onread`
    // (direct receive), whose reads can be stopped below the stream.
    const receiveIo = this.ctx.receiveIo;
    const receiver = receiveIo !== null && this.scratch !== null && !(socket instanceof TLSSocket) && typeof fd === 'number' && fd >= 0 ? new PayloadReceiver(receiveIo, socket, fd, this.log) : null;
    this.receiver = receiver;
    const transmission = new Transmission(this.ctx.settings.device, info, this.negotiator.structured, this.queue, this.scratch !== null, writer, this.ctx.transmission, {
      pauseInput: () => socket.pause(),
      resumeInput: () => socket.resume(),
      stopInput: () => {
        this.phase = 'closing';
        this.queue.clear();
        socket.resume(); // keep reading (and dropping) so the peer's close is seen
      },
      finished: (reason) => {
        this.log.debug({ reason }, 'transmission ended');
        // Replies the native sender still holds leave before our side ends; a client that
        // stops reading gets the close timeout, as unsent bytes in the socket's queue do.
        if (this.closeTimer === null) {
          this.closeTimer = setTimeout(() => this.socket.destroy(), this.ctx.closeTimeoutMs);
          this.closeTimer.unref();
        }
        writer.whenSent(() => {
          this.workDone = true;
          this.endSocket(reason);
          this.maybeResolve();
        });
      },
    }, this.log, this.ctx.pool, receiver);
    this.transmission = transmission;
    socket.on('drain', () => transmission.onDrain());
    this.log.debug({ structured: this.negotiator.structured, size: info.size, readOnly: info.readOnly }, 'transmission phase');
    if (this.queue.length > 0) transmission.process();
  }

  private onEnd(): void {
    if (this.phase === 'transmission') this.transmission!.onInputClosed();
    else if (this.phase === 'handshake') this.endSocket('client closed during the handshake');
  }

  /** Ends our side once queued writes are out; destroys the socket if the peer lingers. */
  private endSocket(reason: string): void {
    this.phase = 'closing';
    this.queue.clear();
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    if (this.socketClosed || this.ended) return;
    this.ended = true;
    this.log.debug({ reason }, 'closing');
    this.socket.end();
    this.closeTimer ??= setTimeout(() => this.socket.destroy(), this.ctx.closeTimeoutMs);
    this.closeTimer.unref();
  }

  private onClose(): void {
    this.socketClosed = true;
    this.phase = 'closing';
    this.queue.clear();
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.closeTimer) clearTimeout(this.closeTimer);
    this.handshakeTimer = null;
    if (this.transmission && !this.workDone) {
      // In-flight requests still run to completion; their replies go nowhere.
      this.transmission.end('connection closed');
    }
    this.transmission?.releaseAll();
    // Stops the native threads (if any) and runs what waited for them.
    this.receiver?.close();
    this.writer?.close();
    this.maybeResolve();
  }

  private maybeResolve(): void {
    if (this.socketClosed && this.workDone) this.resolveClosed();
  }
}
