/**
 * NbdServer: serves one BlockDevice as one NBD export (fixed newstyle) on unix sockets and/or
 * a TCP port. It never opens or closes the device: its owner does, after `close()` resolved.
 *
 * Who gets in: unix sockets are created 0600 (or 0660 for a configured group) whatever the
 * umask, and never replace a socket another server still listens on. A TCP listener on a
 * non-loopback address needs TLS (NBD_OPT_STARTTLS, then required) or an explicit `insecure`.
 * The gadget's own kernel client connects through a listener of its own ('gadget' role): it
 * has reserved connection slots, its own memory allowance and no idle timeout, so ordinary
 * clients can never lock it out; ordinary clients idle too long are dropped and logged.
 */
import { EventEmitter } from 'node:events';
import { chmod, chown, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { NbdTlsOptions } from './tls-config.js';
import { SnapbackError } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import type { BlockDevice } from '../storage/block-device.js';
import { BufferPool } from './buffer-pool.js';
import { PipePool } from './pipe-pool.js';
import { nativeIo } from '../native/native-io.js';
import { checkSocketFree, checkTcpListen, isLoopback } from './listen-policy.js';
import { MemoryBudget } from './memory-budget.js';
import { NbdConnection, type ConnectionContext } from './connection.js';
import { validateMaxBlockSize } from './export-info.js';
import { DEFAULT_MAX_BLOCK_SIZE } from './protocol.js';

export interface NbdServerOptions {
  device: BlockDevice;
  /** Default 'snapback'. The empty name (the protocol's default export) also selects it. */
  exportName?: string;
  description?: string;
  readOnly?: boolean;
  /** Largest READ/WRITE accepted (NBD_INFO_BLOCK_SIZE maximum); default 32 MiB. */
  maxBlockSize?: number;
  logger?: Logger;
}

/** Resource limits; the defaults suit the appliance, tests shorten the timeouts. */
export interface NbdServerTuning {
  /** From accept to the transmission phase (default 10 s). */
  handshakeTimeoutMs: number;
  /** Time a peer gets to close after the server ended the connection (default 5 s). */
  closeTimeoutMs: number;
  /** Per connection: payload, read data and unsent reply bytes before reading pauses (default 32 MiB). */
  maxInflightBytes: number;
  /**
   * All connections together: bytes held above each connection's floor (default 64 MiB; raised
   * to the largest request if smaller). Beyond it connections stop reading until bytes come back.
   */
  maxTotalInflightBytes: number;
  /** Per connection: bytes it may hold without borrowing from the shared budget (default 2 MiB). */
  connectionFloorBytes: number;
  /** Per connection: requests in flight before reading pauses (default 256). */
  maxInflightRequests: number;
  /** Ordinary connections served at once; more are refused (default 64). */
  maxConnections: number;
  /** Connections through 'gadget' listeners, counted apart from the others (default 2). */
  reservedConnections: number;
  /** An ordinary client that sends no request this long after its handshake is dropped (default 30 s). */
  firstRequestTimeoutMs: number;
  /** An ordinary client idle this long (nothing received, nothing in flight) is dropped (default 10 min; 0 = never). */
  idleTimeoutMs: number;
  /** Options per handshake before the connection is dropped (default 256). */
  maxOptions: number;
  /** Receive large WRITE payloads straight into their buffers (default true; direct-receive.ts). */
  directReceive: boolean;
  /**
   * Splice large reads from the device's file to the socket through pipes, where the native
   * addon is loaded and the device can (default true; docs/native-io.md).
   */
  splicedReads: boolean;
  /** Pipes open at most for spliced reads, for all connections (default 64). */
  maxPipes: number;
  /**
   * Splice large WRITE payloads from the socket into the device's file on a thread of each
   * connection, where the native addon is loaded and the device can (default true).
   */
  splicedWrites: boolean;
  /**
   * A WRITE payload the payload receiver has not fully received after this long ends its
   * connection (default 60 s): its window counts as a write in flight, so a client that stalls
   * in the middle of a payload would otherwise hold a session end.
   */
  payloadStallMs: number;
}

export const DEFAULT_TUNING: Readonly<NbdServerTuning> = Object.freeze({
  handshakeTimeoutMs: 10_000,
  closeTimeoutMs: 5_000,
  maxInflightBytes: 32 * 1024 * 1024,
  maxTotalInflightBytes: 64 * 1024 * 1024,
  connectionFloorBytes: 2 * 1024 * 1024,
  maxInflightRequests: 256,
  maxConnections: 64,
  reservedConnections: 2,
  firstRequestTimeoutMs: 30_000,
  idleTimeoutMs: 10 * 60_000,
  maxOptions: 256,
  directReceive: true,
  splicedReads: true,
  maxPipes: 64,
  splicedWrites: true,
  payloadStallMs: 60_000,
});

/** Who a listener serves: ordinary NBD clients, or the gadget's own kernel client. */
export type ListenerRole = 'clients' | 'gadget';

export interface UnixListenOptions {
  /** Default 'clients'. */
  role?: ListenerRole;
  /** Group allowed to connect: the socket is then 0660 with this group id; default: 0600. */
  gid?: number;
}

export interface TcpListenOptions {
  /** TLS-only listener: clients must use NBD_OPT_STARTTLS (see tls-config.ts). */
  tls?: NbdTlsOptions;
  /** Allows a plain-text listener on a non-loopback address. */
  insecure?: boolean;
}

/** Refused-connection warnings logged in full; later ones are counted in every 100th. */
const REFUSAL_WARN_LIMIT = 10;

/** Free large buffers kept for reuse across requests and connections. */
const POOL_FREE_BYTES = 32 * 1024 * 1024;
/** Option data we read and parse (names are at most 4096 bytes). */
const MAX_OPTION_LENGTH = 16 * 1024;
/** Longer option data is skipped (and refused) up to this much; beyond it we hang up. */
const MAX_SKIPPED_OPTION_LENGTH = 1024 * 1024;

export class NbdServer extends EventEmitter {
  private readonly ctx: ConnectionContext;
  private readonly gadgetCtx: ConnectionContext;
  private readonly tuning: NbdServerTuning;
  private readonly log: Logger;
  private readonly netServers: net.Server[] = [];
  private readonly connections = new Map<number, NbdConnection>();
  private readonly counts: Record<ListenerRole, number> = { clients: 0, gadget: 0 };
  private refusals = 0;
  private idleSweep: NodeJS.Timeout | null = null;
  private nextId = 1;
  private closing: Promise<void> | null = null;
  /** Pipes for spliced reads (null without the native addon, or with splicedReads off). */
  private readonly pipes: PipePool | null;

  constructor(opts: NbdServerOptions, tuning: Partial<NbdServerTuning> = {}) {
    super();
    this.tuning = { ...DEFAULT_TUNING, ...tuning };
    this.log = opts.logger ?? childLogger('nbd');
    const maxBlockSize = validateMaxBlockSize(opts.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE);
    const exportName = opts.exportName ?? 'snapback';
    if (Buffer.byteLength(exportName) > 4096) throw new SnapbackError('BAD_ARGUMENT', 'export name longer than 4096 bytes');
    const io = this.tuning.splicedReads && opts.device.readToPipe !== undefined ? nativeIo() : null;
    this.pipes = io !== null ? new PipePool(io, this.tuning.maxPipes, this.log) : null;
    if (this.pipes !== null) this.log.info('NBD reads of 64 KiB to 1 MiB are spliced from the disk file to the socket (native I/O addon)');
    const receiveIo = this.tuning.splicedWrites && this.tuning.directReceive && opts.device.directWrite !== undefined ? nativeIo() : null;
    if (receiveIo !== null) this.log.info('NBD WRITE payloads of 256 KiB and more are spliced from the socket into the disk file (native I/O addon)');
    this.ctx = {
      settings: {
        device: opts.device,
        name: exportName,
        description: opts.description,
        readOnly: opts.readOnly ?? false,
        maxBlockSize,
      },
      negotiation: {
        maxOptionLength: MAX_OPTION_LENGTH,
        maxSkippedOptionLength: MAX_SKIPPED_OPTION_LENGTH,
        maxOptions: this.tuning.maxOptions,
        tls: 'off',
      },
      transmission: {
        maxInflightBytes: this.tuning.maxInflightBytes,
        maxInflightRequests: this.tuning.maxInflightRequests,
        maxSkippedWriteBytes: Math.max(2 * maxBlockSize, 64 * 1024 * 1024),
        floorBytes: this.tuning.connectionFloorBytes,
        // What one connection may hold must always fit, or it could wait forever.
        shared: new MemoryBudget(Math.max(this.tuning.maxTotalInflightBytes, maxBlockSize, this.tuning.maxInflightBytes)),
      },
      handshakeTimeoutMs: this.tuning.handshakeTimeoutMs,
      closeTimeoutMs: this.tuning.closeTimeoutMs,
      log: this.log,
      pool: new BufferPool(POOL_FREE_BYTES),
      directReceive: this.tuning.directReceive,
      pipes: this.pipes,
      receiveIo,
      socketHungUp: hangUpCheck(),
      payloadStallMs: this.tuning.payloadStallMs,
      idle: { beforeFirstRequestMs: this.tuning.firstRequestTimeoutMs, afterRequestsMs: this.tuning.idleTimeoutMs },
      tls: null,
    };
    // The gadget's client never waits for the shared budget: its allowance is its own.
    this.gadgetCtx = {
      ...this.ctx,
      transmission: { ...this.ctx.transmission, floorBytes: this.tuning.maxInflightBytes },
      idle: null,
    };
  }

  get clientCount(): number {
    return this.connections.size;
  }

  /**
   * Listens on a unix socket, created 0600 (0660 with `gid`) whatever the umask. A stale socket
   * file at `path` (nobody listening) is replaced; a live one is refused.
   */
  async listenUnix(path: string, opts: UnixListenOptions = {}): Promise<void> {
    const role = opts.role ?? 'clients';
    await checkSocketFree(path);
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    const mode = opts.gid === undefined ? 0o600 : 0o660;
    await this.listen(role, null, (s) => {
      // The socket file is created by this synchronous bind: with this umask it is never, even
      // for a moment, open to others.
      const previous = process.umask(0o177);
      try {
        s.listen(path);
      } finally {
        process.umask(previous);
      }
    });
    if (opts.gid !== undefined) await chown(path, process.getuid?.() ?? 0, opts.gid);
    await chmod(path, mode);
    this.log.info({ path, role, mode: mode.toString(8), gid: opts.gid }, 'NBD server listening on unix socket');
  }

  /**
   * Listens on TCP; port 0 picks a free port. Resolves with the address bound. A non-loopback
   * address needs `tls` or `insecure`.
   */
  async listenTcp(host: string, port: number, opts: TcpListenOptions = {}): Promise<{ host: string; port: number }> {
    checkTcpListen(host, Boolean(opts.tls), opts.insecure ?? false);
    const server = await this.listen('clients', opts.tls ?? null, (s) => s.listen(port, host));
    const addr = server.address() as net.AddressInfo;
    this.log.info({ host: addr.address, port: addr.port, tls: opts.tls ? 'required' : 'off' }, 'NBD server listening on TCP');
    if (!opts.tls && !isLoopback(host)) this.log.warn({ host: addr.address, port: addr.port }, 'NBD served in plain text without authentication (--nbd-insecure)');
    return { host: addr.address, port: addr.port };
  }

  /** Stops accepting, lets in-flight requests finish and their replies go out, then closes. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.idleSweep) clearInterval(this.idleSweep);
      this.idleSweep = null;
      const stopped = this.netServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      await Promise.all([...this.connections.values()].map((c) => c.shutdown()));
      await Promise.all(stopped);
      this.pipes?.close();
      this.log.info('NBD server closed');
    })();
    return this.closing;
  }

  private listen(role: ListenerRole, tls: NbdTlsOptions | null, start: (s: net.Server) => void): Promise<net.Server> {
    if (this.closing) return Promise.reject(new SnapbackError('CLOSED', 'the NBD server is closed'));
    const base = role === 'gadget' ? this.gadgetCtx : this.ctx;
    const ctx: ConnectionContext = tls ? { ...base, tls, negotiation: { ...base.negotiation, tls: 'required' } } : base;
    this.startIdleSweep();
    // pauseOnConnect: a connection may move its handle into a socket that reads directly.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket, role, ctx, server));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.once('listening', () => {
        server.off('error', reject);
        server.on('error', (err) => this.reportError(err));
        this.netServers.push(server);
        resolve(server);
      });
      start(server);
    });
  }

  private accept(socket: net.Socket, role: ListenerRole, ctx: ConnectionContext, server: net.Server): void {
    const peer = peerOf(socket, server);
    const limit = role === 'gadget' ? this.tuning.reservedConnections : this.tuning.maxConnections;
    if (this.closing || this.counts[role] >= limit) {
      if (!this.closing) this.reportRefusal(peer, role, limit);
      socket.destroy();
      return;
    }
    const id = this.nextId++;
    const conn = new NbdConnection(id, socket, ctx, peer);
    this.connections.set(id, conn);
    this.counts[role]++;
    this.log.debug({ conn: id, peer, role }, 'client connected');
    this.emit('connect', { id, peer, role });
    void conn.closed.then(() => {
      this.connections.delete(id);
      this.counts[role]--;
      this.log.debug({ conn: id, peer }, 'client disconnected');
      this.emit('disconnect', { id, peer, role });
    });
    conn.start();
  }

  private reportRefusal(peer: string, role: ListenerRole, limit: number): void {
    const n = ++this.refusals;
    if (n <= REFUSAL_WARN_LIMIT || n % 100 === 0) {
      this.log.warn({ peer, role, limit, refusedSoFar: n }, `NBD connection refused: all ${limit} ${role === 'gadget' ? 'gadget' : 'client'} slots are taken`);
    }
  }

  /** About once a second (or faster with short test timeouts): drop idle ordinary clients, and clients stalled in a received payload. */
  private startIdleSweep(): void {
    if (this.idleSweep) return;
    const shortest = Math.min(...[this.tuning.firstRequestTimeoutMs, this.tuning.idleTimeoutMs, this.tuning.payloadStallMs].filter((t) => t > 0), 4000);
    this.idleSweep = setInterval(() => {
      const now = Date.now();
      for (const conn of this.connections.values()) conn.checkIdle(now);
    }, Math.max(20, Math.floor(shortest / 4)));
    this.idleSweep.unref();
  }

  /** 'error' is emitted only when someone listens; an unheard error would crash the process. */
  private reportError(err: Error): void {
    this.log.error({ err }, 'NBD listener error');
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}


/** The addon's hang-up check, where it is loaded (connection.ts: socketHungUp). */
function hangUpCheck(): ((fd: number) => boolean) | null {
  const io = nativeIo();
  return io !== null ? (fd) => io.socketHungUp(fd) : null;
}

/** host:port of a TCP peer, or unix:PATH of the listener for unix sockets (no peer address). */
function peerOf(socket: net.Socket, server: net.Server): string {
  if (socket.remoteAddress !== undefined) {
    const host = socket.remoteAddress.includes(':') ? `[${socket.remoteAddress}]` : socket.remoteAddress;
    return `${host}:${socket.remotePort ?? '?'}`;
  }
  const addr = server.address();
  return `unix:${typeof addr === 'string' ? addr : '?'}`;
}
