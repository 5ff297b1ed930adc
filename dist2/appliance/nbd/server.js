/**
 * NbdServer: serves one BlockDevice as one NBD export (fixed newstyle) on a unix socket and/or
 * a TCP port. It never opens or closes the device: its owner does, after `close()` resolved.
 */
import { EventEmitter } from 'node:events';
import { lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import { BufferPool } from './buffer-pool.js';
import { NbdConnection } from './connection.js';
import { validateMaxBlockSize } from './export-info.js';
import { DEFAULT_MAX_BLOCK_SIZE } from './protocol.js';
export const DEFAULT_TUNING = Object.freeze({
    handshakeTimeoutMs: 10_000,
    closeTimeoutMs: 5_000,
    maxInflightBytes: 32 * 1024 * 1024,
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
    ctx;
    tuning;
    log;
    netServers = [];
    connections = new Map();
    nextId = 1;
    closing = null;
    constructor(opts, tuning = {}) {
        super();
        this.tuning = { ...DEFAULT_TUNING, ...tuning };
        this.log = opts.logger ?? childLogger('nbd');
        const maxBlockSize = validateMaxBlockSize(opts.maxBlockSize ?? DEFAULT_MAX_BLOCK_SIZE);
        const exportName = opts.exportName ?? 'snapback';
        if (Buffer.byteLength(exportName) > 4096)
            throw new SnapbackError('BAD_ARGUMENT', 'export name longer than 4096 bytes');
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
            },
            handshakeTimeoutMs: this.tuning.handshakeTimeoutMs,
            closeTimeoutMs: this.tuning.closeTimeoutMs,
            log: this.log,
            pool: new BufferPool(POOL_FREE_BYTES),
            directReceive: this.tuning.directReceive,
        };
    }
    get clientCount() {
        return this.connections.size;
    }
    /** Listens on a unix socket; a stale socket file at `path` is removed first. */
    async listenUnix(path) {
        const st = await lstat(path).catch((err) => {
            if (err.code === 'ENOENT')
                return null;
            throw err;
        });
        if (st && !st.isSocket())
            throw new SnapbackError('BAD_ARGUMENT', `${path} exists and is not a socket`);
        if (st)
            await unlink(path);
        await this.listen((s) => s.listen(path));
        this.log.info({ path }, 'NBD server listening on unix socket');
    }
    /** Listens on TCP; port 0 picks a free port. Resolves with the address bound. */
    async listenTcp(host, port) {
        const server = await this.listen((s) => s.listen(port, host));
        const addr = server.address();
        this.log.info({ host: addr.address, port: addr.port }, 'NBD server listening on TCP');
        return { host: addr.address, port: addr.port };
    }
    /** Stops accepting, lets in-flight requests finish and their replies go out, then closes. */
    close() {
        this.closing ??= (async () => {
            const stopped = this.netServers.map((s) => new Promise((resolve) => s.close(() => resolve())));
            await Promise.all([...this.connections.values()].map((c) => c.shutdown()));
            await Promise.all(stopped);
            this.log.info('NBD server closed');
        })();
        return this.closing;
    }
    listen(start) {
        if (this.closing)
            return Promise.reject(new SnapbackError('CLOSED', 'the NBD server is closed'));
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
    accept(socket) {
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
    reportError(err) {
        this.log.error({ err }, 'NBD listener error');
        if (this.listenerCount('error') > 0)
            this.emit('error', err);
    }
}
//# sourceMappingURL=server.js.map