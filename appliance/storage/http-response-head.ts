/**
 * The head of an HTTP/1.1 response, parsed from the bytes as they come off a socket: the status
 * line and the headers, up to the empty line. Only what a client of Range requests needs: the
 * status, the headers by (lower-case) name, whether the connection may be kept, and the body's
 * framing. A body read here must be framed by its length; a chunked (or otherwise
 * transfer-encoded) one is refused by the reader (http-range-connection.ts), as is anything
 * malformed, each with its own `reason` for callers and tests.
 */
import { RemoteError } from './remote-error.js';

/** Why a response could not be read; machine-readable (`details.reason` of the error). */
export type HttpProtocolReason =
  | 'HTTP_BAD_STATUS_LINE'
  | 'HTTP_BAD_HEADER'
  | 'HTTP_HEAD_TOO_LARGE'
  | 'HTTP_TRANSFER_ENCODING'
  | 'HTTP_BAD_CONTENT_LENGTH'
  | 'HTTP_BAD_CONTENT_RANGE'
  | 'HTTP_EXTRA_BYTES'
  | 'HTTP_UNEXPECTED_DATA';

/** A response that breaks HTTP/1.1 or what a Range response must be (not retryable: the server would do it again). */
export class HttpProtocolError extends RemoteError {
  constructor(
    readonly reason: HttpProtocolReason,
    message: string,
    status: number | null = null,
  ) {
    super(message, false, status, undefined, { reason });
  }
}

/** The most bytes a response head may take. */
export const MAX_HEAD_BYTES = 64 << 10;

export interface ResponseHead {
  status: number;
  /** Lower-case names; a header sent twice keeps its values joined by ", " (Set-Cookie aside, which a Range client ignores). */
  headers: Map<string, string>;
  /** The body's length (Content-Length), or null when the response gives none. */
  contentLength: number | null;
  /** A Transfer-Encoding other than identity (chunked): such a body is never read here. */
  transferEncoding: string | null;
  /** Whether the connection may carry another request after this response. */
  keepAlive: boolean;
}

const STATUS_LINE = /^HTTP\/1\.([01]) ([1-5]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const CRLFCRLF = Buffer.from('\r\n\r\n');

/**
 * Collects a response head from the bytes of a connection, which may come in pieces of any
 * size: `push()` takes the next bytes and returns the head once the empty line has arrived
 * (with the offset in those bytes where the body starts), or null while more are needed.
 */
export class ResponseHeadReader {
  private readonly buf = Buffer.allocUnsafe(MAX_HEAD_BYTES);
  private len = 0;

  constructor(private readonly what: string) {}

  /** Forgets what was collected (a new response on the same connection). */
  reset(): void {
    this.len = 0;
  }

  /** The bytes [start, end) of `chunk`: the head and where the body begins in `chunk`, or null. */
  push(chunk: Uint8Array, start = 0, end = chunk.length): { head: ResponseHead; bodyStart: number } | null {
    const before = this.len;
    const room = MAX_HEAD_BYTES - before;
    const n = Math.min(room, end - start);
    this.buf.set(chunk.subarray(start, start + n), before);
    this.len += n;
    // the empty line may straddle the previous bytes and these: search from 3 bytes back
    const from = Math.max(0, before - 3);
    const at = this.buf.subarray(0, this.len).indexOf(CRLFCRLF, from);
    if (at < 0) {
      if (this.len >= MAX_HEAD_BYTES) throw new HttpProtocolError('HTTP_HEAD_TOO_LARGE', `${this.what}: the response head is larger than ${MAX_HEAD_BYTES} bytes`);
      if (before < 8) checkStart(this.buf.subarray(0, this.len), this.what);
      return null;
    }
    const headLen = at + 4;
    const head = parseHead(this.buf.toString('latin1', 0, at), this.what);
    this.len = 0;
    return { head, bodyStart: start + (headLen - before) };
  }
}

/** Fails early when the first bytes cannot begin a status line (a server that is not speaking HTTP). */
function checkStart(bytes: Buffer, what: string): void {
  const prefix = 'HTTP/1.';
  const n = Math.min(prefix.length, bytes.length);
  if (bytes.toString('latin1', 0, n) !== prefix.slice(0, n)) {
    throw new HttpProtocolError('HTTP_BAD_STATUS_LINE', `${what}: the answer is not HTTP/1.x (it begins ${JSON.stringify(bytes.toString('latin1', 0, Math.min(bytes.length, 20)))})`);
  }
}

/** The head's text (without the final empty line): status line and headers. */
export function parseHead(text: string, what: string): ResponseHead {
  const lines = text.split('\r\n');
  const statusLine = lines[0] ?? '';
  const m = STATUS_LINE.exec(statusLine);
  if (!m) throw new HttpProtocolError('HTTP_BAD_STATUS_LINE', `${what}: a malformed status line ${JSON.stringify(statusLine.slice(0, 80))}`);
  const minor = Number(m[1]);
  const status = Number(m[2]);
  const headers = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name) || /[\r\n\0]/.test(line)) {
      throw new HttpProtocolError('HTTP_BAD_HEADER', `${what}: a malformed header line ${JSON.stringify(line.slice(0, 80))}`, status);
    }
    const key = name.toLowerCase();
    const value = line.slice(colon + 1).trim();
    const had = headers.get(key);
    headers.set(key, had === undefined ? value : `${had}, ${value}`);
  }
  const te = headers.get('transfer-encoding');
  const transferEncoding = te !== undefined && te.toLowerCase() !== 'identity' ? te : null;
  let contentLength: number | null = null;
  const cl = headers.get('content-length');
  if (cl !== undefined) {
    // "a, a" (the same length twice) is allowed; different lengths are not
    const values = new Set(cl.split(',').map((v) => v.trim()));
    const v = [...values][0] ?? '';
    if (values.size !== 1 || !/^\d{1,15}$/.test(v)) throw new HttpProtocolError('HTTP_BAD_CONTENT_LENGTH', `${what}: a malformed Content-Length ${JSON.stringify(cl)}`, status);
    contentLength = Number(v);
  }
  const connection = (headers.get('connection') ?? '').toLowerCase().split(',').map((t) => t.trim());
  const keepAlive = minor === 1 ? !connection.includes('close') : connection.includes('keep-alive');
  // a body framed otherwise than by its length cannot be followed by another response we could find
  return { status, headers, contentLength, transferEncoding, keepAlive: keepAlive && transferEncoding === null && contentLength !== null };
}

/** A byte range of the form "bytes a-b/total" (Content-Range), or null when it is not one. */
export function parseContentRange(value: string | undefined | null): { start: number; end: number; total: number | null } | null {
  const m = /^bytes (\d{1,15})-(\d{1,15})\/(\d{1,15}|\*)$/.exec(value?.trim() ?? '');
  if (!m) return null;
  const r = { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) };
  if (r.end < r.start || (r.total !== null && r.end >= r.total)) return null;
  return r;
}
