/**
 * Protocol fuzzer: thousands of random and mutated handshakes and requests, over raw unix
 * sockets, against the NBD server running in its own process. Seeded (NBD_FUZZ_SEED) and
 * bounded in count (NBD_FUZZ_CASES) and time. Afterwards the process is alive, has released
 * every connection, its memory is bounded, and real clients (nbdinfo, nbdcopy) still work.
 * Structured-reply sessions whose handshake was left intact also check that everything the
 * server sent parses as well-formed replies to requests that were made.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import {
  NBD,
  makeImage,
  makeTempDir,
  nbdUri,
  nbdcopy,
  nbdinfoJson,
  spawnServerProcess,
  type ServerProcess,
  type TempDir,
} from '../helpers/nbd-clients.js';
import { waitFor } from '../helpers/wait.js';
import { Prng } from '../helpers/prng.js';

const SIZE = 16 * 1024 * 1024;
const MAX_BLOCK = 1024 * 1024;
const SEED = Number(process.env.NBD_FUZZ_SEED ?? 0x5eed);
const CASES = Number(process.env.NBD_FUZZ_CASES ?? 3000);
const TIME_BUDGET_MS = 90_000;
const WORKERS = Number(process.env.NBD_FUZZ_WORKERS ?? 8);

const RANDOM_POOL = randomBytes(2 * MAX_BLOCK + 65536);
const INTERESTING_U32 = [0, 1, 511, 512, 4095, 4096, MAX_BLOCK, MAX_BLOCK + 1, SIZE - 1, SIZE, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function option(opt: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(NBD.IHAVEOPT, 0);
  h.writeUInt32BE(opt >>> 0, 8);
  h.writeUInt32BE(data.length, 12);
  return Buffer.concat([h, data]);
}

function infoData(name: string, requests: number[]): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(requests.length, 4 + n.length);
  requests.forEach((r, i) => b.writeUInt16BE(r & 0xffff, 6 + n.length + 2 * i));
  return b;
}

function request(type: number, flags: number, handle: bigint, offset: bigint, length: number): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(NBD.REQUEST_MAGIC, 0);
  b.writeUInt16BE(flags & 0xffff, 4);
  b.writeUInt16BE(type & 0xffff, 6);
  b.writeBigUInt64BE(handle, 8);
  b.writeBigUInt64BE(offset, 16);
  b.writeUInt32BE(length >>> 0, 24);
  return b;
}

function mutate(rng: Prng, input: Buffer): Buffer {
  let b = Buffer.from(input);
  for (let k = 1 + rng.int(4); k > 0 && b.length > 0; k--) {
    switch (rng.int(6)) {
      case 0: {
        const i = rng.int(b.length);
        b[i] = b[i]! ^ (1 << rng.int(8));
        break;
      }
      case 1:
        b[rng.int(b.length)] = rng.int(256);
        break;
      case 2:
        b = b.subarray(0, rng.int(b.length));
        break;
      case 3: {
        const at = rng.int(b.length + 1);
        b = Buffer.concat([b.subarray(0, at), rng.bytes(1 + rng.int(32)), b.subarray(at)]);
        break;
      }
      case 4:
        if (b.length >= 4) {
          const at = rng.int(b.length - 3);
          b.writeUInt32BE(rng.pick(INTERESTING_U32), at);
        }
        break;
      default: {
        const at = rng.int(b.length);
        const len = Math.min(b.length - at, 1 + rng.int(64));
        b = Buffer.concat([b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len)]);
      }
    }
  }
  return b;
}

/** A valid handshake into transmission, and how many NBD_REP_ACKs the server sends for it. */
function validHandshake(rng: Prng): { bytes: Buffer; structured: boolean; viaExportName: boolean; acks: number } {
  const noZeroes = rng.chance(0.8);
  const parts: Buffer[] = [u32(noZeroes ? 3 : 1)];
  const structured = rng.chance(0.6);
  let acks = 0;
  if (rng.chance(0.3)) {
    parts.push(option(NBD.OPT_LIST));
    acks++;
  }
  if (rng.chance(0.3)) {
    parts.push(option(NBD.OPT_INFO, infoData('snapback', [0, 1, 2, 3])));
    acks++;
  }
  if (structured) {
    parts.push(option(NBD.OPT_STRUCTURED_REPLY));
    acks++;
  }
  // EXPORT_NAME only with NO_ZEROES, so that its reply is exactly 10 bytes.
  const viaExportName = noZeroes && rng.chance(0.15);
  if (viaExportName) parts.push(option(NBD.OPT_EXPORT_NAME, Buffer.from('snapback')));
  else {
    parts.push(option(NBD.OPT_GO, infoData(rng.pick(['', 'snapback']), rng.chance(0.5) ? [3] : [])));
    acks++;
  }
  return { bytes: Buffer.concat(parts), structured, viaExportName, acks };
}

function randomHandshake(rng: Prng): Buffer {
  const parts: Buffer[] = [u32(rng.pick([0, 1, 2, 3, 3, 3, 4, 0xffffffff]))];
  for (let n = rng.int(6); n > 0; n--) {
    const opt = rng.pick([1, 2, 3, 5, 6, 7, 8, 9, 10, 11, rng.int(64), rng.int(0x100000000)]);
    let data: Buffer;
    switch (rng.int(4)) {
      case 0:
        data = Buffer.alloc(0);
        break;
      case 1:
        data = infoData(rng.pick(['', 'snapback', 'x', 'snapback\0']), Array.from({ length: rng.int(5) }, () => rng.int(6)));
        break;
      case 2:
        data = rng.bytes(rng.int(64));
        break;
      default:
        data = Buffer.from(rng.pick(['snapback', '', 'nope']));
    }
    parts.push(option(opt, data));
  }
  return Buffer.concat(parts);
}

/** Requests; `framed` is false when a mutation or a short payload breaks the framing. */
function randomRequests(rng: Prng, count: number, nextHandle: () => bigint): { bytes: Buffer; framed: boolean } {
  const parts: Buffer[] = [];
  let framed = true;
  for (let i = 0; i < count; i++) {
    const type = rng.chance(0.85) ? rng.pick([0, 0, 1, 1, 3, 4, 5, 6]) : rng.pick([2, 7, 8, 9, rng.int(0x10000)]);
    const flags = rng.chance(0.8) ? rng.pick([0, 0, 1, 2, 3]) : rng.int(0x10000);
    const offset = rng.chance(0.8) ? BigInt(rng.int(SIZE)) : rng.pick([BigInt(SIZE), BigInt(SIZE - 1), 1n << 62n, (1n << 64n) - 1n, BigInt(rng.int(0x100000000)) << 20n]);
    const length = rng.chance(0.7) ? rng.pick([0, 1, 512, 4096, 65536, 1 + rng.int(MAX_BLOCK)]) : rng.pick(INTERESTING_U32);
    let header = request(type, flags, nextHandle(), offset, length);
    if (rng.chance(0.08)) {
      header = mutate(rng, header);
      framed = false;
    }
    parts.push(header);
    if (type === NBD.CMD_WRITE && length <= RANDOM_POOL.length) {
      const send = rng.chance(0.9) ? length : rng.int(length + 1);
      if (send !== length) framed = false;
      const at = rng.int(RANDOM_POOL.length - send + 1);
      parts.push(RANDOM_POOL.subarray(at, at + send));
    }
  }
  if (rng.chance(0.3)) parts.push(request(NBD.CMD_DISC, 0, nextHandle(), 0n, 0));
  return { bytes: Buffer.concat(parts), framed };
}

interface Outcome {
  received: Buffer;
  closedByServer: boolean;
}

/** Sends `data` in random slices; waits until the server is quiet or closes; then hangs up. */
function runCase(rng: Prng, socketPath: string, data: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let closedByServer = false;
    let finished = false;
    const sock = net.createConnection(socketPath);
    let idle: NodeJS.Timeout | null = null;
    const hardStop = setTimeout(() => finish(), 3000);
    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(hardStop);
      if (idle) clearTimeout(idle);
      sock.destroy();
      resolve({ received: Buffer.concat(chunks), closedByServer });
    };
    const armIdle = (): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(finish, 60);
    };
    sock.on('data', (d: Buffer) => {
      chunks.push(d);
      armIdle();
    });
    sock.on('end', () => {
      closedByServer = true;
      finish();
    });
    sock.on('error', () => finish());
    sock.on('close', () => finish());
    sock.on('connect', () => {
      const slices: Buffer[] = [];
      if (rng.chance(0.5)) slices.push(data);
      else {
        let at = 0;
        while (at < data.length) {
          const n = 1 + rng.int(Math.min(4096, data.length - at));
          slices.push(data.subarray(at, at + n));
          at += n;
        }
      }
      const sendNext = (): void => {
        if (finished) return;
        const s = slices.shift();
        if (!s) return armIdle();
        sock.write(s);
        setImmediate(sendNext);
      };
      sendNext();
    });
  });
}

/** Skips the greeting, `acks` option replies ending in ACK, and an EXPORT_NAME reply; -1 if cut short. */
function transmissionStart(buf: Buffer, acks: number, viaExportName: boolean): number {
  let at = 18;
  let seen = 0;
  while (seen < acks) {
    if (at + 20 > buf.length) return -1;
    const type = buf.readUInt32BE(at + 12);
    at += 20 + buf.readUInt32BE(at + 16);
    if (type === NBD.REP_ACK) seen++;
  }
  if (viaExportName) at += 10;
  return at <= buf.length ? at : -1;
}

/** Every message after `at` is a well-formed structured chunk or simple reply to a handle we sent. */
function checkStructuredStream(buf: Buffer, at: number, handles: Set<bigint>): string | null {
  while (at < buf.length) {
    if (at + 4 > buf.length) return null; // cut short when we hung up
    const magic = buf.readUInt32BE(at);
    if (magic === NBD.SIMPLE_REPLY_MAGIC) {
      if (at + 16 > buf.length) return null;
      if (!handles.has(buf.readBigUInt64BE(at + 8))) return `simple reply for unknown handle at ${at}`;
      at += 16;
    } else if (magic === NBD.STRUCTURED_REPLY_MAGIC) {
      if (at + 20 > buf.length) return null;
      const flags = buf.readUInt16BE(at + 4);
      const type = buf.readUInt16BE(at + 6);
      const length = buf.readUInt32BE(at + 16);
      if (!handles.has(buf.readBigUInt64BE(at + 8))) return `chunk for unknown handle at ${at}`;
      if (flags !== NBD.REPLY_FLAG_DONE) return `chunk flags ${flags} at ${at}`;
      if (type === NBD.REPLY_TYPE_NONE && length !== 0) return `NONE chunk of length ${length}`;
      if (type === NBD.REPLY_TYPE_OFFSET_DATA && length < 9) return `OFFSET_DATA chunk of length ${length}`;
      if ((type === 0x8001 && length < 6) || (type === 0x8002 && length < 14)) return `error chunk of length ${length}`;
      if (![0, 1, 0x8001, 0x8002].includes(type)) return `chunk type ${type} at ${at}`;
      if ((type & 0x8000) !== 0 && at + 26 <= buf.length) {
        if (buf.readUInt32BE(at + 20) === 0) return 'error chunk with error 0';
        if (buf.readUInt16BE(at + 24) > length - 6) return 'error message overruns its chunk';
      }
      at += 20 + length;
    } else {
      return `bad reply magic 0x${magic.toString(16)} at ${at}`;
    }
  }
  return null;
}

describe('NBD server: protocol fuzzer', function () {
  this.timeout(300_000);
  let dir: TempDir;
  let server: ServerProcess;
  let imagePath: string;
  let socketPath: string;

  before(async function () {
    dir = await makeTempDir('snapback-nbd-fuzz-');
    imagePath = join(dir.path, 'disk.img');
    socketPath = join(dir.path, 'nbd.sock');
    await makeImage(imagePath, SIZE);
    server = await spawnServerProcess(imagePath, socketPath, ['--max-block-size', String(MAX_BLOCK), '--handshake-timeout-ms', '2000']);
  });
  after(async function () {
    await server?.stop();
    await dir?.remove();
  });

  it(`survives ${CASES} random and mutated sessions (seed ${SEED}) and still serves correct clients`, async function () {
    let handleCounter = 1n;
    const started = Date.now();
    let done = 0;
    let baseline: Awaited<ReturnType<ServerProcess['stats']>>['memory'] | null = null;
    const problems: string[] = [];
    const counts = { garbage: 0, handshake: 0, mutatedHandshake: 0, transmission: 0, checkedStreams: 0 };

    const oneCase = async (caseRng: Prng, index: number): Promise<void> => {
      const kind = caseRng.int(10);
      if (kind === 0) {
        counts.garbage++;
        await runCase(caseRng, socketPath, caseRng.bytes(caseRng.int(300)));
      } else if (kind <= 2) {
        counts.handshake++;
        await runCase(caseRng, socketPath, randomHandshake(caseRng));
      } else if (kind === 3) {
        counts.mutatedHandshake++;
        const hs = validHandshake(caseRng);
        await runCase(caseRng, socketPath, mutate(caseRng, Buffer.concat([hs.bytes, randomRequests(caseRng, 3, () => handleCounter++).bytes])));
      } else {
        counts.transmission++;
        const hs = validHandshake(caseRng);
        const handles = new Set<bigint>();
        const reqs = randomRequests(caseRng, 1 + caseRng.int(24), () => {
          const h = handleCounter++;
          handles.add(h);
          return h;
        });
        const out = await runCase(caseRng, socketPath, Buffer.concat([hs.bytes, reqs.bytes]));
        if (hs.structured && reqs.framed) {
          const at = transmissionStart(out.received, hs.acks, hs.viaExportName);
          if (at >= 0) {
            counts.checkedStreams++;
            const problem = checkStructuredStream(out.received, at, handles);
            if (problem) problems.push(`case ${index}: ${problem}`);
          }
        }
      }
    };

    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < CASES && Date.now() - started < TIME_BUDGET_MS) {
        const index = next++;
        await oneCase(new Prng((SEED ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0), index);
        done++;
        if (index === 200) baseline = (await server.stats()).memory;
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));

    assert.ok(server.alive(), 'the server process is alive');
    assert.deepEqual(problems.slice(0, 10), [], 'malformed server output');
    assert.ok(done >= Math.min(CASES, 1000), `only ${done} cases ran within the time budget`);
    assert.ok(counts.checkedStreams > 100, `only ${counts.checkedStreams} reply streams were checked`);

    // Every fuzz connection is released (the handshake deadline ends the half-open ones).
    await waitFor('the server to release every fuzz connection', async () => (await server.stats()).clients === 0, 30_000);
    const after = (await server.stats()).memory;
    const base = baseline ?? after;
    const mib = (n: number): string => `${(n / 1048576).toFixed(1)} MiB`;
    const report = `heap ${mib(base.heapUsed)} -> ${mib(after.heapUsed)}, rss ${mib(base.rss)} -> ${mib(after.rss)}, buffers ${mib(after.arrayBuffers)}`;
    assert.ok(after.heapUsed - base.heapUsed < 16 * 1048576, `heap grew: ${report}`);
    assert.ok(after.arrayBuffers < 64 * 1048576, `buffers retained: ${report}`);
    assert.ok(after.rss < 512 * 1048576, `rss: ${report}`);

    // A correct client still works: metadata, and a random image in and back out.
    const info = await nbdinfoJson(nbdUri(socketPath));
    assert.equal(info.exports[0]!['export-size'], SIZE);
    const src = join(dir.path, 'src.img');
    const back = join(dir.path, 'back.img');
    const data = randomBytes(SIZE);
    await writeFile(src, data);
    await nbdcopy(src, nbdUri(socketPath), ['--flush']);
    await nbdcopy(nbdUri(socketPath), back, ['--no-extents']);
    assert.ok((await readFile(back)).equals(data), 'image round trip after fuzzing');
    assert.ok(server.alive(), 'the server process is still alive');
    this.test!.title += ` [${done} cases: ${JSON.stringify(counts)}; ${report}]`;
  });
});
