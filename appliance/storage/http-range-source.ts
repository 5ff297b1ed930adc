/**
 * A model image on a remote system, read over http:// or https:// with Range requests: the
 * source of URL imports and of lazily provisioned models. Redirects are followed (presigned
 * object-store URLs, CDNs; at most `maxRedirects`, every request from the original URL, so an
 * expiring presigned target is asked for again); TLS is verified against the system's CAs plus,
 * optionally, one given CA (a PEM file). Failures that may pass (the network gone, a reset, a
 * 5xx, a 429) are retryable, and `withRetries` retries them with a doubling backoff; a 4xx, a
 * certificate that is not trusted or a server that ignores Range are not.
 *
 * A server without Range support answers a ranged GET with 200 and the whole file: `probe()`
 * says so (rangeSupported false), `readRange()` refuses with a clear error, and `downloadTo()`
 * fetches the whole file instead (from the start again after a network loss).
 */
import http from 'node:http';
import https from 'node:https';
import { readFileSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { rootCertificates } from 'node:tls';
import { SnapbackError, fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';
import { sleep, systemClock } from '../clock.js';
import { RemoteError } from './remote-error.js';
import { RangeConnectionPool } from './http-range-connection.js';
import { parseContentRange } from './http-response-head.js';

const log = childLogger('http-source');

export interface HttpSourceOptions {
  /** A PEM file of one or more CA certificates to trust besides the system's. */
  caFile?: string;
  /** Redirects followed per request (default 10). */
  maxRedirects?: number;
  /** No byte for this long on a connection: the request fails, retryably (default 30 s). */
  idleTimeoutMs?: number;
  /** Connections kept open to the server (default 8). */
  connections?: number;
}

export interface RetryPolicy {
  /** Attempts in all; Infinity retries until the signal aborts. */
  attempts: number;
  /** First delay (ms); it doubles per failure up to maxMs. */
  baseMs: number;
  maxMs: number;
  signal?: AbortSignal;
  /** Told of each retryable failure before the wait. */
  onRetry?: (err: RemoteError, attempt: number, delayMs: number) => void;
}

/** What a server says about the image. */
export interface RemoteInfo {
  size: number;
  rangeSupported: boolean;
  etag: string | null;
  lastModified: string | null;
}

export { RemoteError };

/** The URL of a model image, or BAD_ARGUMENT for anything but http:// and https://. */
export function parseModelUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new SnapbackError('BAD_ARGUMENT', `"${text}" is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new SnapbackError('BAD_ARGUMENT', `"${text}" is not an http:// or https:// URL (${url.protocol.replace(/:$/, '')} is not supported)`, { protocol: url.protocol });
  }
  return url;
}

/** Whether a model source names a URL (as opposed to a path). */
export function looksLikeUrl(text: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(text);
}

/** Where a server keeps an image's manifest: beside it, IMAGE.manifest.json (same query). */
export function manifestUrlFor(imageUrl: URL): URL {
  const u = new URL(imageUrl.href);
  u.pathname = `${u.pathname}.manifest.json`;
  return u;
}

/** Runs `fn` until it succeeds, a failure is not retryable, or the attempts are spent. */
export async function withRetries<T>(fn: () => Promise<T>, policy: RetryPolicy): Promise<T> {
  let delay = policy.baseMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof RemoteError) || !err.retryable || attempt >= policy.attempts || policy.signal?.aborted) throw err;
      policy.onRetry?.(err, attempt, delay);
      await sleep(systemClock, delay, policy.signal);
      delay = Math.min(policy.maxMs, delay * 2);
    }
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class HttpRangeSource {
  readonly url: URL;
  private readonly maxRedirects: number;
  private readonly idleTimeoutMs: number;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  /** The connections of streamRange (bodies read straight into the pieces). */
  private readonly ranges: RangeConnectionPool;
  private readonly caFile: string | undefined;

  constructor(url: string | URL, options: HttpSourceOptions = {}) {
    this.url = typeof url === 'string' ? parseModelUrl(url) : url;
    this.maxRedirects = options.maxRedirects ?? 10;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    const maxSockets = options.connections ?? 8;
    this.caFile = options.caFile;
    let ca: string[] | undefined;
    if (options.caFile) {
      let pem: string;
      try {
        pem = readFileSync(options.caFile, 'utf8');
      } catch (err) {
        throw new SnapbackError('BAD_ARGUMENT', `cannot read the CA file ${options.caFile}: ${(err as Error).message}`);
      }
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new SnapbackError('BAD_ARGUMENT', `${options.caFile} holds no PEM certificate`);
      ca = [...rootCertificates, pem];
    }
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets, ...(ca ? { ca } : {}) });
    this.ranges = new RangeConnectionPool({ idleTimeoutMs: this.idleTimeoutMs, maxIdle: maxSockets, ...(ca ? { ca } : {}) });
  }

  /** The same server options for another URL (the manifest beside the image). */
  sibling(url: URL): HttpRangeSource {
    return new HttpRangeSource(url, { ...(this.caFile ? { caFile: this.caFile } : {}), maxRedirects: this.maxRedirects, idleTimeoutMs: this.idleTimeoutMs });
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.ranges.close();
  }

  /** The image's size and whether the server honours Range (one ranged GET of its first byte). */
  async probe(signal?: AbortSignal): Promise<RemoteInfo> {
    const res = await this.get({ Range: 'bytes=0-0' }, signal);
    const etag = header(res, 'etag');
    const lastModified = header(res, 'last-modified');
    res.destroy();
    if (res.statusCode === 206) {
      const cr = parseContentRange(header(res, 'content-range') ?? undefined);
      if (!cr || cr.total === null) throw new RemoteError(`${this.url.href} answered a Range request without the image's size (Content-Range: ${header(res, 'content-range') ?? 'none'})`, false, 206);
      return { size: cr.total, rangeSupported: true, etag, lastModified };
    }
    const length = Number(header(res, 'content-length') ?? NaN);
    if (!Number.isSafeInteger(length)) throw new RemoteError(`${this.url.href} does not support Range requests and gives no Content-Length`, false, res.statusCode ?? null);
    return { size: length, rangeSupported: false, etag, lastModified };
  }

  /** Exactly `length` bytes at `offset` (one attempt; see withRetries). */
  async readRange(offset: number, length: number, signal?: AbortSignal): Promise<Buffer> {
    let out: Buffer | null = null;
    await this.streamRange(offset, length, length, async (_i, bytes) => void (out = bytes), signal);
    return out!;
  }

  /**
   * The `length` bytes at `offset` in one request (one attempt; see withRetries), handed to
   * `onPiece` in consecutive pieces of `pieceSize` bytes (the last may be short) as they arrive:
   * several regions of a model fetched at once, each verified as soon as it is whole. At most
   * `depth` pieces are being handled at a time; the connection waits meanwhile (backpressure).
   * A failure of `onPiece` ends the request and is thrown; pieces already handled stay handled.
   * With `reuse`, a piece's memory is used again for a later piece once `onPiece` settled (it
   * must not keep the bytes): no new memory, no page faults, per piece.
   */
  async streamRange(offset: number, length: number, pieceSize: number, onPiece: (index: number, bytes: Buffer) => Promise<void>, signal?: AbortSignal, options: { depth?: number; reuse?: boolean } = {}): Promise<void> {
    const end = offset + length - 1;
    let pieceFailure: unknown = null;
    const handle = async (i: number, bytes: Buffer) => {
      try {
        await onPiece(i, bytes);
      } catch (err) {
        pieceFailure ??= err;
        throw err;
      }
    };
    let url = this.url;
    for (let hop = 0; ; hop++) {
      let answer: Awaited<ReturnType<RangeConnectionPool['request']>>;
      try {
        answer = await this.ranges.request(url, { Range: `bytes=${offset}-${end}` }, signal);
      } catch (err) {
        throw this.networkError(err as Error, url);
      }
      const { head, exchange } = answer;
      const status = head.status;
      if (REDIRECTS.has(status)) {
        await exchange.discard();
        url = this.redirectTarget(url, status, head.headers.get('location') ?? null, hop);
        continue;
      }
      if (status === 200) {
        exchange.close();
        throw new RemoteError(`${this.url.href}: the server does not support Range requests (it answered with the whole file), so the image cannot be fetched region by region`, false, 200);
      }
      if (status < 200 || status >= 300) {
        await exchange.discard();
        throw statusError(url, status);
      }
      const cr = parseContentRange(head.headers.get('content-range'));
      if (status !== 206 || !cr || cr.start !== offset || cr.end !== end) {
        exchange.close();
        throw new RemoteError(`${this.url.href} answered bytes ${offset}-${end} with ${status !== 206 ? `HTTP ${status}` : (head.headers.get('content-range') ?? 'no Content-Range')}`, false, status);
      }
      try {
        await exchange.receiveBody({ length, pieceSize, depth: options.depth ?? 2, reuse: options.reuse ?? false, onPiece: handle });
      } catch (err) {
        if (err === pieceFailure || err instanceof SnapbackError) throw err;
        throw this.networkError(err as Error, url);
      }
      return;
    }
  }

  /**
   * Downloads the whole file to `path`, durably. With Range support a partial file left by an
   * earlier attempt is continued; without it the download starts again from the first byte.
   * Network losses are retried per `retry`. Returns the bytes of the file.
   */
  async downloadTo(path: string, retry: RetryPolicy, onProgress?: (done: number, total: number | null) => void): Promise<number> {
    let info: RemoteInfo | null = null;
    return withRetries(async () => {
      info ??= await this.probe(retry.signal);
      let start = 0;
      if (info.rangeSupported) {
        try {
          start = Math.min((await stat(path)).size, info.size);
        } catch {
          start = 0;
        }
      }
      const fh = await open(path, start > 0 ? 'r+' : 'w', 0o644);
      try {
        if (start === 0) await fh.truncate(0);
        let done = start;
        onProgress?.(done, info.size);
        if (done < info.size) {
          const res = await this.get(info.rangeSupported ? { Range: `bytes=${start}-` } : {}, retry.signal);
          if (info.rangeSupported && res.statusCode !== 206) {
            res.destroy();
            throw new RemoteError(`${this.url.href} answered a Range request with HTTP ${res.statusCode}`, false, res.statusCode ?? null);
          }
          try {
            for await (const chunk of res as AsyncIterable<Buffer>) {
              await fh.write(chunk, 0, chunk.length, done);
              done += chunk.length;
              onProgress?.(done, info.size);
            }
          } catch (err) {
            throw err instanceof SnapbackError ? err : this.networkError(err as Error);
          }
          if (!res.complete) throw new RemoteError(`${this.url.href}: the connection was lost after ${done} of ${info.size} bytes`, true);
        }
        if (done !== info.size) throw new RemoteError(`${this.url.href} sent ${done} bytes, expected ${info.size}`, true);
        await fh.sync();
        return done;
      } catch (err) {
        if (err instanceof SnapbackError) throw err;
        throw fromSystemError(err, `writing ${path}`);
      } finally {
        await fh.close();
      }
    }, retry);
  }

  /** A GET of the URL with its redirects followed; the response has a 2xx status. */
  private async get(headers: Record<string, string>, signal?: AbortSignal): Promise<http.IncomingMessage> {
    let url = this.url;
    for (let hop = 0; ; hop++) {
      const res = await this.once(url, headers, signal);
      const status = res.statusCode ?? 0;
      if (REDIRECTS.has(status)) {
        res.resume();
        url = this.redirectTarget(url, status, header(res, 'location'), hop);
        continue;
      }
      if (status >= 200 && status < 300) return res;
      res.resume();
      throw statusError(url, status);
    }
  }

  /** Where a redirect (HTTP `status` from `url`, hop `hop` of this request) leads, or why it is not followed. */
  private redirectTarget(url: URL, status: number, location: string | null, hop: number): URL {
    if (!location) throw new RemoteError(`${url.href} redirected (HTTP ${status}) without a Location`, false, status);
    if (hop >= this.maxRedirects) throw new RemoteError(`${this.url.href}: more than ${this.maxRedirects} redirects`, false, status);
    const next = new URL(location, url);
    if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new RemoteError(`${url.href} redirected to ${next.href}, which is not http(s)`, false, status);
    log.debug({ from: url.href, to: next.href, status }, 'redirect');
    return next;
  }

  private once(url: URL, headers: Record<string, string>, signal?: AbortSignal): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const secure = url.protocol === 'https:';
      const mod = secure ? https : http;
      const req = mod.request(url, { method: 'GET', headers: { 'User-Agent': 'snapback', ...headers }, agent: secure ? this.httpsAgent : this.httpAgent, ...(signal ? { signal } : {}) });
      req.setTimeout(this.idleTimeoutMs, () => req.destroy(new RemoteError(`${url.href}: no answer for ${Math.round(this.idleTimeoutMs / 1000)} s`, true)));
      req.on('response', (res) => {
        res.setTimeout(this.idleTimeoutMs, () => res.destroy(new RemoteError(`${url.href}: no data for ${Math.round(this.idleTimeoutMs / 1000)} s`, true)));
        resolve(res);
      });
      req.on('error', (err) => reject(err instanceof RemoteError ? err : this.networkError(err, url)));
      req.end();
    });
  }

  /** A network or TLS failure as a RemoteError (TLS trust failures are not retryable). */
  private networkError(err: Error, url: URL = this.url): SnapbackError {
    if (err instanceof SnapbackError) return err;
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (err.name === 'AbortError') return new SnapbackError('CLOSED', `${url.href}: the request was cancelled`);
    if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS|HOSTNAME/.test(code)) {
      return new RemoteError(`${url.href}: the server's TLS certificate is not trusted (${err.message}); give the CA that signed it with --ca FILE`, false, null, { cause: err });
    }
    return new RemoteError(`${url.href}: ${err.message}${code && !err.message.includes(code) ? ` (${code})` : ''}`, true, null, { cause: err });
  }
}

/** A refusal or failure of the server (a 4xx or 5xx); 5xx, 429 and 408 may pass. */
function statusError(url: URL, status: number): RemoteError {
  const retryable = status >= 500 || status === 429 || status === 408;
  const why = status === 404 ? 'not found' : status === 403 || status === 401 ? 'access denied' : status === 416 ? 'range not satisfiable' : `HTTP ${status}`;
  return new RemoteError(`${url.href}: ${why} (HTTP ${status})`, retryable, status);
}

function header(res: http.IncomingMessage, name: string): string | null {
  const v = res.headers[name];
  return Array.isArray(v) ? (v[0] ?? null) : (v ?? null);
}
