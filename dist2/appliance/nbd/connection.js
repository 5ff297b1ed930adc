import { ByteQueue } from './byte-queue.js';
import { adoptForDirectReceive } from './direct-receive.js';
import { greeting, OptionNegotiator } from './option-negotiation.js';
import { ReplyWriter } from './reply-writer.js';
import { Transmission } from './transmission.js';
/** Reads that are not a large payload go here, and are copied out before the next read. */
const SCRATCH_SIZE = 128 * 1024;
export class NbdConnection {
    id;
    socket;
    ctx;
    closed;
    phase = 'handshake';
    queue = new ByteQueue();
    negotiator;
    transmission = null;
    log;
    handshakeTimer = null;
    closeTimer = null;
    socketClosed = false;
    workDone = true;
    resolveClosed;
    /** Set when reading through `onread` (direct receive); null with 'data' events. */
    scratch = null;
    /** `socket` comes from a server created with pauseOnConnect: it is not reading yet. */
    constructor(id, socket, ctx) {
        this.id = id;
        this.socket = socket;
        this.ctx = ctx;
        this.log = ctx.log.child({ conn: id });
        this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
        this.negotiator = new OptionNegotiator(ctx.settings, ctx.negotiation, (data) => {
            if (!this.socket.destroyed)
                this.socket.write(data);
        });
    }
    start() {
        if (this.ctx.directReceive) {
            this.scratch = Buffer.allocUnsafeSlow(SCRATCH_SIZE);
            const adopted = adoptForDirectReceive(this.socket, {
                buffer: () => this.nextReadBuffer(),
                received: (n, buf) => this.onDirectRead(n, buf),
            });
            if (adopted)
                this.socket = adopted;
            else
                this.scratch = null;
        }
        const socket = this.socket;
        socket.setNoDelay(true);
        if (socket.remoteAddress !== undefined)
            socket.setKeepAlive(true, 30_000);
        if (this.scratch === null) {
            socket.on('data', (chunk) => this.onData(chunk));
            socket.resume();
        }
        socket.on('end', () => this.onEnd());
        socket.on('error', (err) => this.log.debug({ err }, 'socket error'));
        socket.on('close', () => this.onClose());
        this.handshakeTimer = setTimeout(() => {
            this.log.info('handshake timed out');
            socket.destroy();
        }, this.ctx.handshakeTimeoutMs);
        this.handshakeTimer.unref();
        socket.write(greeting());
    }
    /** Server shutdown: answer what is in flight, then close. Resolves with `closed`. */
    shutdown() {
        if (this.phase === 'handshake')
            this.endSocket('server shutting down');
        else
            this.transmission?.end('server shutting down');
        return this.closed;
    }
    onData(chunk) {
        if (this.phase === 'closing')
            return;
        this.queue.push(chunk);
        if (this.phase === 'transmission')
            this.transmission.process();
        else
            this.negotiate();
    }
    /** Direct receive: the next read lands in a large WRITE's own buffer, or in the scratch. */
    nextReadBuffer() {
        const target = this.phase === 'transmission' ? this.transmission.directReadTarget() : null;
        return target ?? this.scratch;
    }
    onDirectRead(n, buf) {
        if (this.phase === 'closing')
            return;
        if (buf !== this.scratch) {
            this.transmission.directReceived(n);
            return;
        }
        // Parsed in place; whatever is left must not stay in the scratch, which the next read reuses.
        this.onData(buf.subarray(0, n));
        if (this.queue.length > 0)
            this.queue.compact();
    }
    negotiate() {
        const step = this.negotiator.process(this.queue);
        if (step === 'pending')
            return;
        if (step === 'close') {
            this.log.debug({ reason: this.negotiator.closeReason }, 'handshake ended');
            this.endSocket(this.negotiator.closeReason);
            return;
        }
        this.enterTransmission();
    }
    enterTransmission() {
        const info = this.negotiator.info;
        if (this.handshakeTimer)
            clearTimeout(this.handshakeTimer);
        this.handshakeTimer = null;
        this.phase = 'transmission';
        this.workDone = false;
        const socket = this.socket;
        const writer = new ReplyWriter(socket);
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
                this.workDone = true;
                this.endSocket(reason);
                this.maybeResolve();
            },
        }, this.log, this.ctx.pool);
        this.transmission = transmission;
        socket.on('drain', () => transmission.onDrain());
        this.log.debug({ structured: this.negotiator.structured, size: info.size, readOnly: info.readOnly }, 'transmission phase');
        if (this.queue.length > 0)
            transmission.process();
    }
    onEnd() {
        if (this.phase === 'transmission')
            this.transmission.onInputClosed();
        else if (this.phase === 'handshake')
            this.endSocket('client closed during the handshake');
    }
    /** Ends our side once queued writes are out; destroys the socket if the peer lingers. */
    endSocket(reason) {
        this.phase = 'closing';
        this.queue.clear();
        if (this.handshakeTimer)
            clearTimeout(this.handshakeTimer);
        this.handshakeTimer = null;
        if (this.socketClosed || this.closeTimer)
            return;
        this.log.debug({ reason }, 'closing');
        this.socket.end();
        this.closeTimer = setTimeout(() => this.socket.destroy(), this.ctx.closeTimeoutMs);
        this.closeTimer.unref();
    }
    onClose() {
        this.socketClosed = true;
        this.phase = 'closing';
        this.queue.clear();
        if (this.handshakeTimer)
            clearTimeout(this.handshakeTimer);
        if (this.closeTimer)
            clearTimeout(this.closeTimer);
        this.handshakeTimer = null;
        if (this.transmission && !this.workDone) {
            // In-flight requests still run to completion; their replies go nowhere.
            this.transmission.end('connection closed');
        }
        this.maybeResolve();
    }
    maybeResolve() {
        if (this.socketClosed && this.workDone)
            this.resolveClosed();
    }
}
//# sourceMappingURL=connection.js.map