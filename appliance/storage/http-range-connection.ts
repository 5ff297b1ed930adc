/**
 * Range requests of a model image over kept-alive HTTP/1.1 connections whose response bodies
 * are read off the socket straight into the caller's memory (net.Socket and tls `onread`): the
 * kernel copies the bytes into the pieces that are then hashed (shared memory, on a hash
 * worker) and written, with no buffer made per read and no stream in between. Node's HTTP
 * client spends about 2 CPU seconds per GiB on its receive path alone; this path spends a
 * callback per socket read.
 *
 * Only what a Range client needs (http-response-head.ts parses the head): GET, a body framed by
 * Content-Length (a chunked body is refused, clearly), keep-alive. Redirects and retries are
 * the caller's (http-range-source.ts), as are the meanings of the statuses.
 */
import net from 'node:net';
import tls from 'node:tls';
import { HttpProtocolError, ResponseHeadReader, type ResponseHead } from './http-response-head.js';
import { RemoteError } from './remote-error.js';

/** Where a connection goes. */
export interface ConnectionTarget {
  secure: boolean;
  /** A host name or IP address (an IPv6 address without brackets). */
  host: string;
  port: number;
  /** The CAs a TLS server's certificate must chain to (default: the system's). */
  ca?: string[];
}

/** What a request's body is received into, piece by piece (see receiveBody). */
export interface BodyOptions {
  /** Bytes in all (the length of the range asked for). */
  length: number;
  pieceSize: number;
  /** Pieces being handled by `onPiece` at most, while the next one arrives (default 2). */
  depth?: number;
  /** A piece's memory is used again for a later one once `onPiece` settled. */
  reuse?: boolean;
  onPiece: (index: number, bytes: Buffer) => Promise<void>;
}

/** Bytes read while no piece can take them (the head, a paused body): copied from here. */
const SCRATCH_BYTES = 64 << 10;
/** A refused or redirecting answer's body up to this size is read and dropped, keeping the connection. */
const DRAIN_MAX = 64 << 10;

/** One connection; at most one request on it at a time. */
class RangeConnection {
  readonly socket: net.Socket;
  /** It has carried a response already (a failure before the next answer may be a server closing it). */
  used = false;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
  private readonly heads: ResponseHeadReader;
  private exchange: Exchange | null = null;
  private closedWith: Error | null = null;

  constructor(
    readonly key: string,
    target: ConnectionTarget,
    private readonly idleTimeoutMs: number,
    private readonly hooks: { gone: (c: RangeConnection) => void; idle: (c: RangeConnection) => void },
    what: string,
  ) {
    this.heads = new ResponseHeadReader(what);
    const onread = { buffer: () => this.exchange?.target() ?? this.scratch, callback: (n: number, buf: Uint8Array) => this.onData(n, buf) };
    this.socket = target.secure
      ? // tls.connect takes onread as net.connect does (its types leave it out)
        tls.connect({ host: target.host, port: target.port, ...(net.isIP(target.host) ? {} : { servername: target.host }), ...(target.ca ? { ca: target.ca } : {}), onread } as tls.ConnectionOptions)
      : net.connect({ host: target.host, port: target.port, onread });
    this.socket.setNoDelay(true);
    this.socket.on('error', (err) => this.gone(err));
    this.socket.on('end', () => this.gone(null));
    this.socket.on('close', () => this.gone(null));
    this.socket.setTimeout(idleTimeoutMs, () => {
      if (this.exchange) this.exchange.fail(new RemoteError(`${this.exchange.what}: no data for ${Math.round(this.idleTimeoutMs / 1000)} s`, true));
      this.socket.destroy();
    });
  }

  get alive(): boolean {
    return this.closedWith === null && !this.socket.destroyed;
  }

  /** Sends a GET; the returned exchange gives the head, then the body. */
  send(path: string, hostHeader: string, headers: Record<string, string>, what: string, signal?: AbortSignal): Exchange {
    if (this.exchange) throw new Error('a connection carries one request at a time');
    this.heads.reset();
    const ex = new Exchange(this, what, signal);
    this.exchange = ex;
    let text = `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUser-Agent: snapback\r\nConnection: keep-alive\r\n`;
    for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
    this.socket.write(text + '\r\n');
    this.socket.resume(); // reading may have stopped at the last response's end (resume is a no-op when it did not)
    return ex;
  }

  /** The exchange is over: the connection takes the next request, or closes. */
  finish(ex: Exchange, keep: boolean): void {
    if (this.exchange !== ex) return;
    this.exchange = null;
    this.used = true;
    if (!keep || !this.alive) {
      this.socket.destroy();
      return;
    }
    // read on while idle: a server closing the connection, or sending what nobody asked for, is seen at once
    this.socket.resume(); // reading may have stopped at the last response's end (resume is a no-op when it did not)
    this.hooks.idle(this);
  }

  private onData(n: number, buf: Uint8Array): boolean {
    const ex = this.exchange;
    if (!ex) {
      // bytes nobody asked for (a server sending past a response's end): this connection is done
      this.socket.destroy();
      return false;
    }
    if (buf.buffer !== this.scratch.buffer) return ex.bodyArrived(n);
    return ex.bytes(this.scratch, n, this.heads);
  }

  private gone(err: Error | null): void {
    if (this.closedWith === null) this.closedWith = err ?? new Error('closed');
    this.exchange?.lost(err);
    this.exchange = null;
    this.hooks.gone(this);
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

/**
 * One request and its response on a connection: the head, then the body received into pieces
 * (receiveBody) or dropped (discard).
 */
export class Exchange {
  private head: ResponseHead | null = null;
  private headWaiter: { resolve: (h: ResponseHead) => void; reject: (e: Error) => void } | null = null;
  private error: Error | null = null;
  /** Body bytes that came with the head (or while no piece could take them), not placed yet. */
  private carry: Buffer | null = null;
  private body: BodyReceiver | null = null;
  private drainLeft = 0;
  private drainDone: (() => void) | null = null;
  /** Any byte of the answer arrived. */
  answered = false;
  private readonly onAbort = () => this.fail(Object.assign(new Error('the request was cancelled'), { name: 'AbortError' }));

  constructor(
    private readonly conn: RangeConnection,
    readonly what: string,
    private readonly signal?: AbortSignal,
  ) {
    if (signal?.aborted) queueMicrotask(this.onAbort);
    else signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Resolves with the response head. */
  response(): Promise<ResponseHead> {
    if (this.error) return Promise.reject(this.error);
    if (this.head) return Promise.resolve(this.head);
    return new Promise((resolve, reject) => (this.headWaiter = { resolve, reject }));
  }

  /** Where the socket reads next: into the body's current piece, or (null) the scratch buffer. */
  target(): Buffer | null {
    return this.body && this.carry === null ? this.body.target() : null;
  }

  /** Bytes read into the scratch buffer. */
  bytes(scratch: Buffer, n: number, heads: ResponseHeadReader): boolean {
    this.answered = true;
    if (this.error) return false;
    if (!this.head) {
      let got: ReturnType<ResponseHeadReader['push']>;
      try {
        got = heads.push(scratch, 0, n);
      } catch (err) {
        this.fail(err as Error);
        return false;
      }
      if (!got) return true;
      this.head = got.head;
      if (got.bodyStart < n) this.carry = Buffer.from(scratch.subarray(got.bodyStart, n));
      const w = this.headWaiter;
      this.headWaiter = null;
      w?.resolve(got.head);
      return false; // paused until the caller says what to do with the body
    }
    if (this.drainDone) return this.drained(n);
    if (!this.body || this.carry !== null) {
      // no piece can take them yet (or bytes wait before them): kept in order behind those. TLS
      // hands over what it has decrypted already even after reading was told to stop.
      this.carry = this.carry ? Buffer.concat([this.carry, scratch.subarray(0, n)]) : Buffer.from(scratch.subarray(0, n));
      return false;
    }
    return this.place(Buffer.from(scratch.subarray(0, n)));
  }

  /** Bytes the socket read straight into the current piece. */
  bodyArrived(n: number): boolean {
    this.answered = true;
    if (this.error || !this.body) return false;
    return this.check(this.body.arrived(n));
  }

  /**
   * Receives the body of a 2xx answer into pieces (see BodyOptions): resolves once every byte
   * arrived and every piece was handled; rejects with the first failure (the connection is then
   * closed), after the pieces being handled settled.
   */
  receiveBody(o: BodyOptions): Promise<void> {
    const head = this.head!;
    if (head.transferEncoding !== null) {
      const err = new HttpProtocolError('HTTP_TRANSFER_ENCODING', `${this.what}: the server answered with Transfer-Encoding: ${head.transferEncoding}; a Range response must be sent with a Content-Length`, head.status);
      this.fail(err);
      return Promise.reject(err);
    }
    if (head.contentLength !== null && head.contentLength !== o.length) {
      const err = new HttpProtocolError('HTTP_BAD_CONTENT_LENGTH', `${this.what}: Content-Length ${head.contentLength} for the ${o.length} bytes asked for`, head.status);
      this.fail(err);
      return Promise.reject(err);
    }
    const body = new BodyReceiver(o, this.what, (err) => this.fail(err));
    this.body = body;
    if (this.error) body.stop(this.error);
    else if (this.carry) {
      const c = this.carry;
      this.carry = null;
      if (this.place(c)) this.conn.socket.resume();
    } else if (o.length === 0) body.stop(null);
    else this.conn.socket.resume();
    return body.done.then(() => this.end(head.keepAlive && !this.error));
  }

  /** Drops the answer: its body is read when small and framed by its length (the connection kept), else the connection closes. */
  async discard(): Promise<void> {
    const head = this.head;
    const n = head?.contentLength ?? null;
    if (!head || this.error || !head.keepAlive || n === null || n > DRAIN_MAX) {
      this.close();
      return;
    }
    const have = this.carry?.length ?? 0;
    this.carry = null;
    if (have > n) {
      this.close(); // more than the answer: not a connection to keep
      return;
    }
    this.drainLeft = n - have;
    if (this.drainLeft === 0) {
      this.end(true);
      return;
    }
    await new Promise<void>((resolve) => {
      this.drainDone = resolve;
      this.conn.socket.resume();
    });
  }

  /** The request is abandoned; its connection closes. */
  close(): void {
    this.end(false);
  }

  /** Fails the exchange (its connection closes). */
  fail(err: Error): void {
    if (this.error) return;
    this.error = err;
    this.headWaiter?.reject(err);
    this.headWaiter = null;
    this.body?.stop(err);
    this.drainDone?.();
    this.drainDone = null;
    this.end(false);
  }

  /** The connection went away (an error, or the server closed it). */
  lost(err: Error | null): void {
    if (this.error) return;
    const got = this.body?.received ?? 0;
    this.fail(err ?? new RemoteError(this.body ? `${this.what}: the connection was lost after ${got} of ${this.body.length} bytes` : `${this.what}: the server closed the connection before it answered`, true));
  }

  private drained(n: number): boolean {
    if (n > this.drainLeft) {
      this.end(false);
      this.drainDone?.();
      this.drainDone = null;
      return false;
    }
    this.drainLeft -= n;
    if (this.drainLeft > 0) return true;
    const done = this.drainDone;
    this.drainDone = null;
    this.end(true);
    done?.();
    return true;
  }

  /** Places copied bytes into pieces; keeps what no piece can take yet. False: pause the socket. */
  private place(bytes: Buffer): boolean {
    const body = this.body!;
    let at = 0;
    try {
      at = body.absorb(bytes);
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
    if (at < bytes.length) {
      this.carry = bytes.subarray(at);
      body.whenPieceFree(() => {
        const c = this.carry;
        this.carry = null;
        if (c && this.place(c)) this.conn.socket.resume();
      });
      return false;
    }
    return this.check(true);
  }

  /** After bytes were placed: whether to go on reading (a piece free), else waits for one and resumes then. */
  private check(more: boolean): boolean {
    const body = this.body!;
    if (this.error) return false;
    if (body.received === body.length) return false;
    if (more) return true;
    body.whenPieceFree(() => {
      if (!this.error && this.carry === null) this.conn.socket.resume();
    });
    return false;
  }

  private end(keep: boolean): void {
    this.signal?.removeEventListener('abort', this.onAbort);
    this.conn.finish(this, keep);
  }
}

/** A body arriving into pieces of `pieceSize` bytes, each handed to `onPiece` once whole. */
class BodyReceiver {
  readonly length: number;
  received = 0;
  readonly done: Promise<void>;
  private piece: Buffer | null = null;
  private filled = 0;
  private index = 0;
  private inFlight = 0;
  private readonly depth: number;
  private readonly free: Buffer[] = [];
  private failure: Error | null = null;
  private stopped = false;
  private waitingForPiece: (() => void) | null = null;
  private resolveDone!: () => void;
  private rejectDone!: (e: Error) => void;
  private finished = false;

  constructor(
    private readonly o: BodyOptions,
    private readonly what: string,
    private readonly onFailure: (err: Error) => void,
  ) {
    this.length = o.length;
    this.depth = Math.max(1, o.depth ?? 2);
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined);
    if (o.length > 0) this.piece = this.newPiece();
  }

  /** The memory the next socket read goes into, or null when no piece can take bytes now. */
  target(): Buffer | null {
    return this.piece && !this.stopped ? this.piece.subarray(this.filled) : null;
  }

  /** `n` bytes were read into target(). Returns whether a piece can take more now. */
  arrived(n: number): boolean {
    this.filled += n;
    this.received += n;
    if (this.filled === this.piece!.length) this.completePiece();
    return this.piece !== null;
  }

  /** Copies bytes into pieces as far as they take them: how many were placed. Throws on bytes past the body. */
  absorb(bytes: Buffer): number {
    if (this.received + bytes.length > this.length) throw new HttpProtocolError('HTTP_EXTRA_BYTES', `${this.what}: the server sent more than the ${this.length} bytes asked for`, 206);
    let at = 0;
    while (at < bytes.length && this.piece) {
      const n = Math.min(this.piece.length - this.filled, bytes.length - at);
      bytes.copy(this.piece, this.filled, at, at + n);
      at += n;
      this.filled += n;
      this.received += n;
      if (this.filled === this.piece.length) this.completePiece();
    }
    return at;
  }

  /** Calls `fn` once a piece can take bytes again. */
  whenPieceFree(fn: () => void): void {
    if (this.piece) fn();
    else this.waitingForPiece = fn;
  }

  /** Ends receiving: with `err`, the body fails once the pieces being handled settled; with null, it is complete. */
  stop(err: Error | null): void {
    if (this.stopped) return;
    this.stopped = true;
    if (err) this.failure ??= err;
    this.piece = null;
    this.settle();
  }

  private completePiece(): void {
    const bytes = this.piece!;
    const i = this.index++;
    this.piece = null;
    this.filled = 0;
    this.inFlight++;
    let p: Promise<void>;
    try {
      p = this.o.onPiece(i, bytes);
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      () => {
        if (this.o.reuse) this.free.push(bytes);
      },
      (err: unknown) => {
        if (!this.failure) {
          this.failure = err as Error;
          this.onFailure(err as Error);
        }
      },
    ).finally(() => {
      this.inFlight--;
      this.next();
      this.settle();
    });
    if (this.received === this.length) this.stopped = true;
    this.next();
  }

  /** A piece for the next bytes, when the body goes on and fewer than `depth` are being handled. */
  private next(): void {
    if (this.piece || this.stopped || this.failure || this.received === this.length) return;
    if (this.inFlight >= this.depth) return;
    this.piece = this.newPiece();
    const w = this.waitingForPiece;
    this.waitingForPiece = null;
    w?.();
  }

  private newPiece(): Buffer {
    const n = Math.min(this.o.pieceSize, this.length - this.index * this.o.pieceSize);
    const old = this.free.pop();
    return old && old.length === n ? old : sharedPiece(n);
  }

  private settle(): void {
    if (this.finished || this.inFlight > 0) return;
    if (this.failure) {
      this.finished = true;
      this.rejectDone(this.failure);
    } else if (this.received === this.length && this.index * this.o.pieceSize >= this.length) {
      this.finished = true;
      this.resolveDone();
    } else if (this.stopped && !this.failure) {
      this.finished = true;
      this.rejectDone(new RemoteError(`${this.what}: the connection was lost after ${this.received} of ${this.length} bytes`, true));
    }
  }
}

const WASM_PAGE = 64 << 10;
/** WebAssembly.Memory (in Node; the project's TypeScript libraries leave WebAssembly out). */
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer } } }).WebAssembly.Memory;

/**
 * `n` bytes of shared memory (a hash worker reads them without a copy). Whole multiples of 64 KiB
 * (a region) come page-aligned, from a shared WebAssembly memory, so that they can be written
 * with direct I/O; other sizes, or when such memory cannot be had, a SharedArrayBuffer.
 */
function sharedPiece(n: number): Buffer {
  if (n > 0 && n % WASM_PAGE === 0) {
    try {
      const pages = n / WASM_PAGE;
      return Buffer.from(new WasmMemory({ initial: pages, maximum: pages, shared: true }).buffer, 0, n);
    } catch {
      /* no address space for it now: plain shared memory */
    }
  }
  return Buffer.from(new SharedArrayBuffer(n));
}

/**
 * Kept-alive connections per server (scheme, host, port), at most `maxIdle` idle each, and the
 * requests made on them.
 */
export class RangeConnectionPool {
  private readonly idle = new Map<string, RangeConnection[]>();
  private readonly all = new Set<RangeConnection>();
  private closed = false;

  constructor(
    private readonly options: { idleTimeoutMs: number; maxIdle: number; ca?: string[] },
  ) {}

  /**
   * A GET of `url` with `headers`: resolves once the response head has arrived (the body is the
   * exchange's to receive or discard). A kept-alive connection that fails before any byte of
   * the answer (the server closed it meanwhile) is tried once more on a new connection.
   */
  async request(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<{ head: ResponseHead; exchange: Exchange }> {
    for (let fresh = false; ; fresh = true) {
      const conn = fresh ? this.open(url) : this.take(url);
      const ex = conn.send(`${url.pathname}${url.search}`, url.host, headers, url.href, signal);
      try {
        return { head: await ex.response(), exchange: ex };
      } catch (err) {
        if (!fresh && conn.used && !ex.answered && !signal?.aborted && !(err instanceof HttpProtocolError)) continue;
        throw err;
      }
    }
  }

  /** Closes every connection. */
  close(): void {
    this.closed = true;
    for (const c of this.all) c.socket.destroy();
    this.all.clear();
    this.idle.clear();
  }

  private take(url: URL): RangeConnection {
    const list = this.idle.get(keyOf(url));
    while (list && list.length > 0) {
      const c = list.pop()!;
      if (c.alive) return c;
    }
    return this.open(url);
  }

  private open(url: URL): RangeConnection {
    const secure = url.protocol === 'https:';
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = url.port ? Number(url.port) : secure ? 443 : 80;
    const key = keyOf(url);
    const conn = new RangeConnection(key, { secure, host, port, ...(this.options.ca ? { ca: this.options.ca } : {}) }, this.options.idleTimeoutMs, { gone: (c) => this.forget(c), idle: (c) => this.release(c) }, url.href);
    this.all.add(conn);
    return conn;
  }

  private release(conn: RangeConnection): void {
    if (this.closed) {
      conn.socket.destroy();
      return;
    }
    const list = this.idle.get(conn.key) ?? [];
    if (list.includes(conn)) return;
    if (list.length >= this.options.maxIdle) {
      conn.socket.destroy();
      return;
    }
    list.push(conn);
    this.idle.set(conn.key, list);
  }

  private forget(conn: RangeConnection): void {
    this.all.delete(conn);
    const list = this.idle.get(conn.key);
    const i = list?.indexOf(conn) ?? -1;
    if (list && i >= 0) list.splice(i, 1);
  }
}

function keyOf(url: URL): string {
  return `${url.protocol}//${url.host}`;
}
