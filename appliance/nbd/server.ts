/**
 * NbdServer: serves one BlockDevice as one NBD export (fixed newstyle) on a unix socket and/or
 * a TCP port. It never opens or closes the device: its owner does, after `close()` resolved.
 */
import { EventEmitter } from 'node:events';
import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { SnapbackError } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import type { BlockDevice } from '../storage/block-device.js';
import { BufferPool } from './buffer-pool.js';
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
  /** Connections served at once; more are refused (default 64). */
  maxConnections: number;
  /** Options per handshake before the connection is dropped (default 256). */
  maxOptions: number;
  /** Receive large WRITE payloads straight into their buffers (default true; direct-receive.ts). */
  directReceive: boolean;
}

export const DEFAULT_TUNING: Readonly<NbdServerTuning> = Object.freeze({
  handshakeTimeoutMs: 10_000,
  closeTimeoutMs: 5_000,
  maxInflightBytes: 32 * 1024 * 1024,
  maxTotalInflightBytes: 64 * 1024 * 1024,
  connectionFloorBytes: 2 * 1024 * 1024,
  maxInflightRequests: 256,
  maxConnections: 64,
  maxOptions: 256,
  directReceive: true,
});

/** Free large buffers kept for reuse across requests and connections. */
const POOL_FREE_BYTES = 32 * 1024 * 1024;
/** Option data we read and parse (names are at most 4096 bytes). */
const MAX_OPTION_LENGTH = 16 * 1024;
/** Longer option data is skipped (and refused) up to this much; beyond it we hang up. */
const MAX_SKIPPED_OPTION_LENGTH = 1024 * 1024;

export class NbdServer extends EventEmitter {
  private readonly ctx: ConnectionContext;
  private readonly tuning: NbdServerTuning;
  private readonly log: Logger;
  private readonly netServers: net.Server[] = [];
  private readonly connections = new Map<number, NbdConnection>();
  private nextId = 1;
  private closing: Promise<void> | null = null;

  constructor(opts: NbdServerOptions, tuning: Partial<NbdServerTuning> = {}) {
    super();
    this.tuning = { ...DEFAULT_TUNING, ...tuning };
    this.log = opts.logger ?? childLogger('nbd');
    const maxBlockSize = validateMaxBlockSize(opts.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE);
    const exportName = opts.exportName ?? 'snapback';
    if (Buffer.byteLength(exportName) > 4096) throw new SnapbackError('BAD_ARGUMENT', 'export name longer than 4096 bytes');
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
      },
      transmission: {
        maxInflightBytes: this.tuning.maxInflightBytes,
        maxInflightRequests: this.tuning.maxInflightRequests,
        maxSkippedWriteBytes: Math.max(2 * maxBlockSize, 64 * 1024 * 1024),
        floorBytes: this.tuning.connectionFloorBytes,
        // A request of the largest size must always fit, or its connection would wait forever.
        shared: new MemoryBudget(Math.max(this.tuning.maxTotalInflightBytes, maxBlockSize)),
      },
      handshakeTimeoutMs: this.tuning.handshakeTimeoutMs,
      closeTimeoutMs: this.tuning.closeTimeoutMs,
      log: this.log,
      pool: new BufferPool(POOL_FREE_BYTES),
      directReceive: this.tuning.directReceive,
    };
  }

  get clientCount(): number {
    return this.connections.size;
  }

  /** Listens on a unix socket; a stale socket file at `path` is removed first. */
  async listenUnix(path: string): Promise<void> {
    const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (st && !st.isSocket()) throw new SnapbackError('BAD_ARGUMENT', `${path} exists and is not a socket`);
    if (st) await unlink(path);
    await this.listen((s) => s.listen(path));
    this.log.info({ path }, 'NBD server listening on unix socket');
  }

  /** Listens on TCP; port 0 picks a free port. Resolves with the address bound. */
  async listenTcp(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = await this.listen((s) => s.listen(port, host));
    const addr = server.address() as net.AddressInfo;
    this.log.info({ host: addr.address, port: addr.port }, 'NBD server listening on TCP');
    return { host: addr.address, port: addr.port };
  }

  /** Stops accepting, lets in-flight requests finish and their replies go out, then closes. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = this.netServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
      await Promise.all([...this.connections.values()].map((c) => c.shutdown()));
      await Promise.all(stopped);
      this.log.info('NBD server closed');
    })();
    return this.closing;
  }

  private listen(start: (s: net.Server) => void): Promise<net.Server> {
    if (this.closing) return Promise.reject(new SnapbackError('CLOSED', 'the NBD server is closed'));
    // pauseOnConnect: a connection may move its handle into a socket that reads directly.
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => this.accept(socket));
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

  private accept(socket: net.Socket): void {
    if (this.closing || this.connections.size >= this.tuning.maxConnections) {
      socket.destroy();
      return;
    }
    const id = this.nextId++;
    const conn = new NbdConnection(id, socket, this.ctx);
    this.connections.set(id, conn);
    this.log.debug({ conn: id }, 'client connected');
    this.emit('connect', { id });
    void conn.closed.then(() => {
      this.connections.delete(id);
      this.log.debug({ conn: id }, 'client disconnected');
      this.emit('disconnect', { id });
    });
    conn.start();
  }

  /** 'error' is emitted only when someone listens; an unheard error would crash the process. */
  private reportError(err: Error): void {
    this.log.error({ err }, 'NBD listener error');
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}
