import { isSnapbackError } from '../errors.js';
import { POOL_MIN_SIZE } from './buffer-pool.js';
import { errorMessageFor, nbdErrnoFor } from './errno.js';
import { CMD_CACHE, CMD_DISC, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES, NBD_EIO, REQUEST_HEADER_SIZE, REQUEST_MAGIC, } from './protocol.js';
import { checkRequest, commandName, refusalMessage } from './request-checks.js';
const MODE_HEADER = 0;
const MODE_PAYLOAD = 1;
const MODE_SKIP = 2;
const TWO_32 = 0x100000000;
const FUA = Object.freeze({ fua: true });
/** Indexed by (FUA ? 1 : 0) | (NO_HOLE ? 2 : 0). */
const ZERO_OPTIONS = [{}, { fua: true }, { noHole: true }, { fua: true, noHole: true }].map((o) => Object.freeze(o));
const RESOLVED = Promise.resolve();
/** Device failures logged at warn level per connection; later ones at debug. */
const WARN_LIMIT = 10;
export class Transmission {
    device;
    info;
    structured;
    queue;
    transientInput;
    writer;
    limits;
    hooks;
    log;
    pool;
    inflightCount = 0;
    inflightBytes = 0;
    mode = MODE_HEADER;
    paused = false;
    inputClosed = false;
    ending = null;
    finishedCalled = false;
    warnings = 0;
    // The WRITE whose payload is being collected or skipped.
    cFlags = 0;
    cHi = 0;
    cLo = 0;
    cOffset = 0;
    cLength = 0;
    cGot = 0;
    cErrno = 0;
    pieces = [];
    /**
     * The buffer the current WRITE's payload is assembled in: pooled for large payloads (which
     * the socket may read into directly), else allocated when the input is transient.
     */
    direct = null;
    directPooled = false;
    skipLeft = 0;
    /** The device's optional readInto (FileDevice and the protected disk have it). */
    readInto;
    constructor(device, info, structured, queue, 
    /** The queue's chunks are views of a buffer the next socket read reuses: copy payloads. */
    transientInput, writer, limits, hooks, log, pool) {
        this.device = device;
        this.info = info;
        this.structured = structured;
        this.queue = queue;
        this.transientInput = transientInput;
        this.writer = writer;
        this.limits = limits;
        this.hooks = hooks;
        this.log = log;
        this.pool = pool;
        this.readInto = readIntoOf(device);
    }
    /** Parses and dispatches every complete request in the queue (unless over budget). */
    process() {
        const q = this.queue;
        while (this.ending === null) {
            if (this.mode === MODE_PAYLOAD) {
                if (!this.collectPayload(q))
                    break;
            }
            else if (this.mode === MODE_SKIP) {
                this.skipLeft -= q.skip(this.skipLeft);
                if (this.skipLeft > 0)
                    break;
                this.mode = MODE_HEADER;
                this.refuse(CMD_WRITE, this.cFlags, this.cHi, this.cLo, this.cOffset, this.cLength, this.cErrno);
            }
            else {
                if (q.length < REQUEST_HEADER_SIZE)
                    break;
                if (this.overBudget()) {
                    if (!this.paused) {
                        this.paused = true;
                        this.hooks.pauseInput();
                    }
                    return;
                }
                this.parseRequest(q);
            }
        }
        if (this.inputClosed && this.ending === null)
            this.end('client closed the connection');
    }
    /** The socket's writable side drained: maybe resume parsing. */
    onDrain() {
        this.maybeResume();
    }
    /** The client closed its sending side: finish what was received, then end. */
    onInputClosed() {
        this.inputClosed = true;
        if (!this.paused)
            this.process();
    }
    /** Stop parsing; answer everything in flight; then `hooks.finished`. Idempotent. */
    end(reason) {
        if (this.ending !== null)
            return;
        this.ending = reason;
        if (this.mode === MODE_PAYLOAD) {
            // A WRITE whose payload never fully arrived: never acknowledged, never written.
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
    parseRequest(q) {
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
            this.inflightCount++;
            this.inflightBytes += length;
            this.cGot = 0;
            this.directPooled = length >= POOL_MIN_SIZE;
            this.direct = this.directPooled ? this.pool.acquire(length) : this.transientInput ? Buffer.allocUnsafe(length) : null;
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
     * Where the next socket read may go: the rest of the current large WRITE's buffer, when
     * nothing received earlier is still queued (bytes must land in stream order).
     */
    directReadTarget() {
        if (this.mode !== MODE_PAYLOAD || !this.directPooled || this.direct === null || this.ending !== null || this.queue.length !== 0)
            return null;
        return this.direct.subarray(this.cGot, this.cLength);
    }
    /** `n` bytes were read into the buffer `directReadTarget` returned. */
    directReceived(n) {
        this.cGot += n;
        if (this.cGot < this.cLength)
            return;
        this.finishAssembledWrite();
        this.process();
    }
    finishAssembledWrite() {
        const buf = this.direct;
        this.direct = null;
        this.mode = MODE_HEADER;
        this.startWrite(this.cFlags, this.cHi, this.cLo, this.cOffset, buf.subarray(0, this.cLength), this.directPooled ? buf : null);
    }
    /** Gathers the current WRITE's payload; true once it was complete and sent to the device. */
    collectPayload(q) {
        const direct = this.direct;
        if (direct !== null) {
            while (this.cGot < this.cLength) {
                if (q.length === 0)
                    return false;
                const piece = q.takeSome(this.cLength - this.cGot);
                this.cGot += piece.copy(direct, this.cGot);
            }
            this.finishAssembledWrite();
            return true;
        }
        while (this.cGot < this.cLength) {
            if (q.length === 0)
                return false;
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
        for (const piece of pieces)
            at += piece.copy(data, at);
        this.startWrite(this.cFlags, this.cHi, this.cLo, this.cOffset, data, null);
        return true;
    }
    /** `pooled`: the pool buffer behind `data`, given back once the device is done with it. */
    startWrite(flags, hi, lo, offset, data, pooled) {
        const length = data.length;
        let p;
        if (length === 0)
            p = RESOLVED;
        else {
            try {
                p = this.device.write(offset, data, (flags & CMD_FLAG_FUA) !== 0 ? FUA : undefined);
            }
            catch (err) {
                p = Promise.reject(err);
            }
        }
        p.then(() => {
            if (pooled)
                this.pool.release(pooled);
            this.completed(hi, lo, length);
        }, (err) => {
            if (pooled)
                this.pool.release(pooled);
            this.failed(CMD_WRITE, hi, lo, offset, length, length, err);
        });
    }
    dispatch(type, flags, hi, lo, offset, length) {
        this.inflightCount++;
        if (type === CMD_READ) {
            this.inflightBytes += length;
            if (length >= POOL_MIN_SIZE && this.readInto) {
                this.pooledRead(hi, lo, offset, length, this.readInto);
                return;
            }
            let r;
            try {
                r = length === 0 ? Promise.resolve(EMPTY) : this.device.read(offset, length);
            }
            catch (err) {
                r = Promise.reject(err);
            }
            r.then((data) => this.readDone(hi, lo, offset, length, data), (err) => this.failed(type, hi, lo, offset, length, length, err));
            return;
        }
        let p;
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
        }
        catch (err) {
            p = Promise.reject(err);
        }
        p.then(() => this.completed(hi, lo, 0), (err) => this.failed(type, hi, lo, offset, length, 0, err));
    }
    /** A large read into a pooled buffer, given back once the reply has been written. */
    pooledRead(hi, lo, offset, length, readInto) {
        const pooled = this.pool.acquire(length);
        const view = pooled.subarray(0, length);
        let r;
        try {
            r = readInto(view, offset);
        }
        catch (err) {
            r = Promise.reject(err);
        }
        r.then(() => this.readDone(hi, lo, offset, length, view, () => this.pool.release(pooled)), (err) => {
            this.pool.release(pooled);
            this.failed(CMD_READ, hi, lo, offset, length, length, err);
        });
    }
    readDone(hi, lo, offset, length, data, release) {
        this.inflightCount--;
        this.inflightBytes -= length;
        if (data.length !== length) {
            this.replyError(hi, lo, NBD_EIO, `READ at ${offset}: the device returned ${data.length} of ${length} bytes`);
        }
        else if (length === 0 && this.structured) {
            this.writer.structuredNone(hi, lo);
        }
        else {
            this.writer.readData(hi, lo, offset, data, this.structured, release);
        }
        this.settled();
    }
    completed(hi, lo, bytes) {
        this.inflightCount--;
        this.inflightBytes -= bytes;
        this.writer.simple(hi, lo, 0);
        this.settled();
    }
    failed(type, hi, lo, offset, length, bytes, err) {
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
    refuse(type, flags, hi, lo, offset, length, errno) {
        const message = refusalMessage(type, flags, offset, length, this.info, errno);
        this.log.debug({ errno }, message);
        this.replyError(hi, lo, errno, message);
    }
    /** A structured client gets the message (and a READ must never get a simple reply then). */
    replyError(hi, lo, errno, message, errorOffset) {
        if (this.structured)
            this.writer.structuredError(hi, lo, errno, message, errorOffset);
        else
            this.writer.simple(hi, lo, errno);
    }
    settled() {
        if (this.ending !== null) {
            this.maybeFinish();
            return;
        }
        // Nothing else in flight: no later completion to batch with, so answer now (latency at
        // queue depth 1); with more in flight the writer batches until the end of this turn.
        if (this.inflightCount === 0)
            this.writer.flushNow();
        this.maybeResume();
    }
    maybeResume() {
        if (!this.paused || this.ending !== null || this.overBudget())
            return;
        this.paused = false;
        this.hooks.resumeInput();
        this.process();
    }
    maybeFinish() {
        if (this.inflightCount !== 0 || this.finishedCalled)
            return;
        this.finishedCalled = true;
        this.writer.flushNow();
        this.hooks.finished(this.ending ?? 'finished');
    }
    overBudget() {
        return (this.inflightCount >= this.limits.maxInflightRequests ||
            this.inflightBytes + this.writer.pendingBytes >= this.limits.maxInflightBytes);
    }
}
const EMPTY = Buffer.alloc(0);
function readIntoOf(device) {
    const fn = device.readInto;
    return typeof fn === 'function' ? fn.bind(device) : null;
}
/** An I/O error a layer located inside the request (details.offset) becomes ERROR_OFFSET. */
function errorOffsetOf(err, type, offset, length) {
    if (type === CMD_FLUSH || !isSnapbackError(err) || (err.code !== 'IO_ERROR' && err.code !== 'NO_SPACE'))
        return undefined;
    const at = err.details?.offset;
    return typeof at === 'number' && at >= offset && at < offset + length ? at : undefined;
}
//# sourceMappingURL=transmission.js.map