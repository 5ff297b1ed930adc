/**
 * The Range client's own HTTP/1.1 response reading (http-response-head.ts and
 * http-range-connection.ts, through HttpRangeSource) against a raw TCP server on loopback that
 * answers with exactly the bytes, and in exactly the packets, each case calls for: a head and a
 * body split at every odd place, backpressure while a piece is being handled, keep-alive, a
 * redirect whose body is read and dropped, and malformed answers, each refused with its reason.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { HttpRangeSource, RemoteError } from '../../appliance/storage/http-range-source.js';
import { HttpProtocolError, type HttpProtocolReason } from '../../appliance/storage/http-response-head.js';

const IMAGE = randomBytes(256 * 1024 + 123);
const CRLF = '\r\n';

/** What the server sends for one request: packets, each written apart (with a pause to keep them apart). */
type Script = (range: { start: number; end: number }, port: number) => Array<Buffer | string> | 'close';

function head206(start: number, end: number, extra = ''): string {
  return `HTTP/1.1 206 Partial Content${CRLF}Content-Type: application/octet-stream${CRLF}Content-Length: ${end - start + 1}${CRLF}Content-Range: bytes ${start}-${end}/${IMAGE.length}${CRLF}${extra}${CRLF}`;
}

/** Cuts `b` into pieces of the given sizes, cycling through them. */
function cut(b: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < b.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(b.subarray(at, at + n));
    at += n;
  }
  return out;
}

const SCRIPTS: Record<string, Script> = {
  // the head one byte at a time, the empty line split, the body in odd pieces
  '/split': ({ start, end }) => {
    const h = Buffer.from(head206(start, end));
    return [...cut(h, [1]), ...cut(IMAGE.subarray(start, end + 1), [1, 7, 4093, 65537, 3])];
  },
  // head and the whole body in one packet
  '/whole': ({ start, end }) => [Buffer.concat([Buffer.from(head206(start, end)), IMAGE.subarray(start, end + 1)])],
  // the head and part of the body together, then the rest
  '/headbody': ({ start, end }) => {
    const all = Buffer.concat([Buffer.from(head206(start, end)), IMAGE.subarray(start, end + 1)]);
    return cut(all, [1000, 50_000, 100_000]);
  },
  '/redirect': (_r, port) => [`HTTP/1.1 302 Found${CRLF}Location: http://127.0.0.1:${port}/whole${CRLF}Content-Length: 11${CRLF}${CRLF}`, 'moved there'],
  '/bad-status': () => [`HTTP/1.1 2O6 Partial${CRLF}${CRLF}`],
  '/not-http': () => ['SSH-2.0-OpenSSH_9.2\r\n'],
  '/bad-header': ({ start, end }) => [`HTTP/1.1 206 Partial Content${CRLF}Content-Length: ${end - start + 1}${CRLF}this is no header${CRLF}${CRLF}`],
  '/chunked': ({ start, end }) => [`HTTP/1.1 206 Partial Content${CRLF}Transfer-Encoding: chunked${CRLF}Content-Range: bytes ${start}-${end}/${IMAGE.length}${CRLF}${CRLF}`, '10\r\n0123456789abcdef\r\n0\r\n\r\n'],
  '/two-lengths': ({ start, end }) => [`HTTP/1.1 206 Partial Content${CRLF}Content-Length: ${end - start + 1}${CRLF}Content-Length: 5${CRLF}Content-Range: bytes ${start}-${end}/${IMAGE.length}${CRLF}${CRLF}`],
  '/short-length': ({ start, end }) => [`HTTP/1.1 206 Partial Content${CRLF}Content-Length: ${end - start}${CRLF}Content-Range: bytes ${start}-${end}/${IMAGE.length}${CRLF}${CRLF}`],
  '/huge-head': () => [`HTTP/1.1 206 Partial Content${CRLF}`, ...Array.from({ length: 70 }, (_, i) => `X-Filler-${i}: ${'y'.repeat(1000)}${CRLF}`)],
  '/extra': ({ start, end }) => [Buffer.concat([Buffer.from(head206(start, end)), IMAGE.subarray(start, end + 1), Buffer.from('and more')])],
  '/wrong-range': ({ start, end }) => [head206(start + 1, end + 1), IMAGE.subarray(start + 1, end + 2)],
  '/truncated': ({ start, end }) => [head206(start, end), IMAGE.subarray(start, start + Math.floor((end - start) / 2))],
};

interface RawServer {
  port: number;
  connections: number;
  requests: string[];
  close(): Promise<void>;
}

async function rawServer(): Promise<RawServer> {
  const state = { connections: 0, requests: [] as string[] };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    state.connections++;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let pending = '';
    sock.on('data', async (d) => {
      pending += d.toString('latin1');
      let at: number;
      while ((at = pending.indexOf('\r\n\r\n')) >= 0) {
        const req = pending.slice(0, at);
        pending = pending.slice(at + 4);
        const [line = '', ...headers] = req.split('\r\n');
        const path = line.split(' ')[1] ?? '';
        state.requests.push(path);
        const m = /^range: bytes=(\d+)-(\d+)$/im.exec(headers.join('\n'));
        const range = { start: Number(m?.[1] ?? 0), end: Number(m?.[2] ?? IMAGE.length - 1) };
        const script = SCRIPTS[path];
        const packets = script ? script(range, (server.address() as net.AddressInfo).port) : [`HTTP/1.1 404 Not Found${CRLF}Content-Length: 0${CRLF}${CRLF}`];
        if (packets === 'close') {
          sock.destroy();
          return;
        }
        for (const p of packets) {
          sock.write(p);
          // a macrotask between writes: each goes out as its own packet on loopback
          await new Promise((r) => setImmediate(r));
        }
        if (path === '/truncated') sock.destroy();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get connections() {
      return state.connections;
    },
    requests: state.requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

describe('the Range client reads HTTP/1.1 responses off the socket itself', function () {
  let server: RawServer;
  const sources: HttpRangeSource[] = [];
  before(async () => {
    server = await rawServer();
  });
  after(async () => {
    for (const s of sources) s.close();
    await server.close();
  });
  const source = (path: string): HttpRangeSource => {
    const s = new HttpRangeSource(`http://127.0.0.1:${server.port}${path}`, { idleTimeoutMs: 10_000 });
    sources.push(s);
    return s;
  };

  /** The range [offset, offset+length) in pieces, each handled slowly (`holdMs`) so that the socket must wait for a free piece. */
  async function pieces(s: HttpRangeSource, offset: number, length: number, pieceSize: number, o: { depth?: number; holdMs?: number; reuse?: boolean } = {}): Promise<Buffer> {
    const got: Buffer[] = [];
    await s.streamRange(
      offset,
      length,
      pieceSize,
      async (i, bytes) => {
        assert.equal(bytes.length, Math.min(pieceSize, length - i * pieceSize), `piece ${i} has its size`);
        got[i] = Buffer.from(bytes);
        if (o.holdMs) await new Promise((r) => setTimeout(r, o.holdMs));
      },
      undefined,
      { depth: o.depth ?? 1, reuse: o.reuse ?? true },
    );
    return Buffer.concat(got);
  }

  it('a head and a body split at odd places arrive whole, in pieces of any size, with the socket held while pieces are handled', async function () {
    for (const path of ['/split', '/whole', '/headbody']) {
      const s = source(path);
      for (const [offset, length, pieceSize, holdMs] of [
        [0, IMAGE.length, 65_536, 0],
        [17, 200_000, 999, 0],
        [100, 150_001, 40_000, 5],
        [IMAGE.length - 10, 10, 4096, 0],
      ] as const) {
        const got = await pieces(s, offset, length, pieceSize, { holdMs });
        assert.ok(got.equals(IMAGE.subarray(offset, offset + length)), `${path}: bytes ${offset}+${length} in pieces of ${pieceSize}`);
      }
    }
    assert.ok((await source('/split').readRange(5, 70_000)).equals(IMAGE.subarray(5, 70_005)));
  });

  it('keeps the connection for the next request, and follows a redirect on it (its body read and dropped)', async function () {
    const before = server.connections;
    const s = source('/redirect');
    for (let i = 0; i < 3; i++) assert.ok((await s.readRange(i * 1000, 1000)).equals(IMAGE.subarray(i * 1000, i * 1000 + 1000)));
    assert.equal(server.connections - before, 1, 'one connection for three redirected requests');
    assert.deepEqual(server.requests.slice(-6), ['/redirect', '/whole', '/redirect', '/whole', '/redirect', '/whole']);
  });

  const refusals: Array<[string, HttpProtocolReason, RegExp]> = [
    ['/bad-status', 'HTTP_BAD_STATUS_LINE', /malformed status line/],
    ['/not-http', 'HTTP_BAD_STATUS_LINE', /not HTTP\/1\.x/],
    ['/bad-header', 'HTTP_BAD_HEADER', /malformed header line "this is no header"/],
    ['/chunked', 'HTTP_TRANSFER_ENCODING', /Transfer-Encoding: chunked; a Range response must be sent with a Content-Length/],
    ['/two-lengths', 'HTTP_BAD_CONTENT_LENGTH', /malformed Content-Length/],
    ['/short-length', 'HTTP_BAD_CONTENT_LENGTH', /Content-Length 999 for the 1000 bytes asked for/],
    ['/huge-head', 'HTTP_HEAD_TOO_LARGE', /larger than 65536 bytes/],
    ['/extra', 'HTTP_EXTRA_BYTES', /sent more than the 1000 bytes asked for/],
  ];
  for (const [path, reason, message] of refusals) {
    it(`a malformed answer (${path.slice(1)}) is refused as ${reason}, not retried`, async function () {
      await assert.rejects(
        source(path).readRange(0, 1000),
        (err: unknown) => err instanceof HttpProtocolError && err.reason === reason && err.details?.reason === reason && err.retryable === false && message.test(err.message),
      );
    });
  }

  it('a body for other bytes than asked for is refused; a connection lost mid-body fails retryably, saying how far it got', async function () {
    await assert.rejects(source('/wrong-range').readRange(0, 1000), (err: unknown) => err instanceof RemoteError && !err.retryable && /answered bytes 0-999 with bytes 1-1000/.test(err.message));
    await assert.rejects(pieces(source('/truncated'), 0, 100_000, 10_000), (err: unknown) => err instanceof RemoteError && err.retryable && /connection was lost after \d+ of 100000 bytes/.test(err.message));
  });

  it('a failure of the piece handler ends the request with that very error', async function () {
    const boom = new Error('disk on fire');
    await assert.rejects(
      source('/split').streamRange(0, 100_000, 10_000, async (i) => {
        if (i === 3) throw boom;
      }),
      (err: unknown) => err === boom,
    );
  });
});
