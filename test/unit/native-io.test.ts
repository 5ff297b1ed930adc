/**
 * The native I/O addon (appliance/native/snapback-io.c) on its own: splice from a file into a
 * pipe, FileDevice.readToPipe over it, and the reply sender thread writing buffers and pipes
 * to a real unix socket in order, pausing, failing when the peer goes and stopping while it
 * waits for a full socket. `npm ci` builds the addon; a missing build fails here.
 */
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { asSystemError, nativeIo, type NativeIo, type Receiver, type Sender } from '../../appliance/native/native-io.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { InlineIo } from '../../appliance/storage/inline-io.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { ProtectedDisk } from '../../appliance/storage/protected-disk.js';
import { RegionLog, logFileSize } from '../../appliance/storage/region-log.js';
import { memoryDevice } from '../helpers/fault-device.js';
import { Prng } from '../helpers/prng.js';
import { sleep, waitFor } from '../helpers/wait.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** receiveToFile's request and window arguments for a single job (no standing window). */
const NO_WINDOW = [0, 0, 0, 0, 0, 0] as const;

/** An NBD request header (28 bytes). */
function requestHeader(type: number, flags: number, handle: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(0x25609513, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeUInt32BE(0, 8);
  b.writeUInt32BE(handle, 12);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return b;
}

/** Everything the pipe holds now (its read end is non-blocking). */
function drainPipe(fd: number, max = 2 * MiB): Buffer {
  const out = Buffer.alloc(max);
  let n = 0;
  for (;;) {
    let got: number;
    try {
      got = readSync(fd, out, n, out.length - n, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw err;
    }
    if (got === 0) break;
    n += got;
  }
  return out.subarray(0, n);
}

/** A connected pair of unix sockets: `server` is the side whose descriptor the sender writes. */
async function socketPair(dir: string): Promise<{ server: Socket; client: Socket; listener: Server; fd: number }> {
  const path = join(dir, `pair-${Math.random().toString(36).slice(2)}.sock`);
  const listener = createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
  const client = connect(path);
  await new Promise<void>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  const server = await accepted;
  const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
  return { server, client, listener, fd };
}

/** Collects what `client` receives until `n` bytes have arrived. */
function receive(client: Socket, n: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  return new Promise((resolve, reject) => {
    const onData = (c: Buffer): void => {
      chunks.push(c);
      got += c.length;
      if (got >= n) {
        client.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    client.on('data', onData);
    client.once('error', reject);
  });
}

describe('native I/O addon', function () {
  let io: NativeIo;
  let dir: string;
  const cleanups: Array<() => void> = [];

  before(function () {
    const loaded = nativeIo();
    assert.ok(loaded !== null, 'the addon is built by npm ci (npm run build:native) and loads');
    io = loaded;
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-native-'));
  });
  afterEach(() => {
    for (const fn of cleanups.splice(0).reverse()) fn();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A protected disk of 16 regions over a FileDevice whose file holds the model's bytes (closed after the test). */
  async function protectedDisk(rs: number, seed: number, inlineIo: InlineIo | null = new InlineIo({ slowUs: 1e9 })): Promise<{ pd: ProtectedDisk; modelBytes: Buffer }> {
    const size = 16 * rs;
    const rng = new Prng(seed);
    const modelBytes = rng.bytes(size);
    const path = join(dir, 'disk.img');
    writeFileSync(path, modelBytes);
    const disk = new FileDevice(path, inlineIo !== null ? { inlineIo } : {});
    await disk.open();
    const log = await RegionLog.create(
      memoryDevice('log', Buffer.alloc(logFileSize(16)), rng),
      { modelId: 'm'.repeat(64), regionSize: rs, diskSize: size, sessionNumber: 1, sessionStartedAt: 0, mode: 'frozen', restoreMode: 'instant' },
      () => false,
    );
    const pd = new ProtectedDisk({ disk, model: memoryDevice('model', modelBytes, rng), log });
    cleanups.push(() => void disk.close());
    return { pd, modelBytes };
  }

  function pipe(): [number, number] {
    const p = io.openPipe(MiB);
    cleanups.push(() => {
      io.closeFd(p[0]);
      io.closeFd(p[1]);
    });
    return p;
  }

  it('splices a file range into a pipe, zeroes past the end of the file, and reports errors with their errno', function () {
    const data = new Prng(3).bytes(300 * KiB);
    const path = join(dir, 'f');
    writeFileSync(path, data);
    const [r, w] = pipe();
    const file = openSync(path, 'r');
    cleanups.push(() => io.closeFd(file));
    assert.equal(io.spliceFile(file, 4096, 200 * KiB, w), 200 * KiB);
    assert.deepEqual(drainPipe(r), data.subarray(4096, 4096 + 200 * KiB));
    // 100 KiB from the file, then 156 KiB of zeroes (a file shorter than the device).
    assert.equal(io.spliceFile(file, 200 * KiB, 256 * KiB, w), 100 * KiB);
    const got = drainPipe(r);
    assert.equal(got.length, 256 * KiB);
    assert.deepEqual(got.subarray(0, 100 * KiB), data.subarray(200 * KiB));
    assert.ok(got.subarray(100 * KiB).every((b) => b === 0));

    assert.throws(
      () => io.spliceFile(987654, 0, 4096, w),
      (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ERRNO' && err.errno === 9 && /splice from file/.test(err.message),
    );
    let thrown: unknown;
    try {
      io.spliceFile(987654, 0, 4096, w);
    } catch (err) {
      thrown = asSystemError(err);
    }
    assert.equal((thrown as NodeJS.ErrnoException).code, 'EBADF');
    assert.throws(() => io.spliceFile(file, -1, 4096, w), /non-negative safe integer/);
    assert.throws(() => io.openPipe(1 << 30), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ERRNO', 'a pipe larger than pipe-max-size is refused');
  });

  it('copies a range between files in the kernel (copyFileRange) through its own descriptors: short at the end of the input, errors with their errno', async function () {
    const data = new Prng(31).bytes(3 * MiB);
    const src = join(dir, 'src');
    const dst = join(dir, 'dst');
    writeFileSync(src, data);
    writeFileSync(dst, Buffer.alloc(4 * MiB, 7));
    const copy = (inFd: number, inPos: number, outFd: number, outPos: number, length: number): Promise<[number, number]> =>
      new Promise((resolve) => io.copyFileRange(inFd, inPos, outFd, outPos, length, (errno, copied) => resolve([errno, copied])));
    let inFd = openSync(src, 'r');
    let outFd = openSync(dst, 'r+');
    // The caller closes its descriptors at once: the job holds its own.
    const job = copy(inFd, 4096, outFd, MiB + 512, 2 * MiB);
    closeSync(inFd);
    closeSync(outFd);
    assert.deepEqual(await job, [0, 2 * MiB]);
    const got = readFileSync(dst);
    assert.ok(got.subarray(MiB + 512, 3 * MiB + 512).equals(data.subarray(4096, 4096 + 2 * MiB)), 'the bytes at their positions');
    assert.ok(got.subarray(0, MiB + 512).every((b) => b === 7) && got.subarray(3 * MiB + 512).every((b) => b === 7), 'nothing else written');
    inFd = openSync(src, 'r');
    outFd = openSync(dst, 'r+');
    cleanups.push(() => closeSync(inFd), () => closeSync(outFd));
    assert.deepEqual(await copy(inFd, 2 * MiB, outFd, 0, 2 * MiB), [0, MiB], 'short at the end of the input file');
    assert.deepEqual(await copy(inFd, 3 * MiB, outFd, 0, 4096), [0, 0]);
    // The input opened read-only as the output: EBADF, reported, not thrown.
    const [errno, copied] = await copy(outFd, 0, inFd, 0, 4096);
    assert.deepEqual([errno, copied], [constants.errno.EBADF, 0]);
    assert.throws(() => io.copyFileRange(-1, 0, outFd, 0, 1, () => undefined), { code: 'NATIVE_ERRNO' });
    assert.throws(() => io.copyFileRange(inFd, -1, outFd, 0, 1, () => undefined), { code: 'NATIVE_ARGUMENT' });
    assert.throws(() => (io.copyFileRange as (...a: unknown[]) => void)(inFd, 0, outFd, 0, 1, 'not a function'), { code: 'NATIVE_ARGUMENT' });
  });

  it('writes and reads a file on the calling thread (pwriteAll, preadAll): every byte, short only at the end of the file, errors with their errno', function () {
    const path = join(dir, 'file.img');
    writeFileSync(path, Buffer.alloc(64 * KiB, 1));
    const fd = openSync(path, 'r+');
    cleanups.push(() => closeSync(fd));
    const data = new Prng(50).bytes(12 * KiB + 7);
    io.pwriteAll(fd, data, 4097);
    const back = Buffer.alloc(data.length);
    assert.equal(io.preadAll(fd, back, 4097), data.length);
    assert.ok(back.equals(data));
    assert.ok(readFileSync(path).subarray(4097, 4097 + data.length).equals(data), 'in the file');
    const tail = Buffer.alloc(8 * KiB, 0xff);
    assert.equal(io.preadAll(fd, tail, 60 * KiB), 4 * KiB, 'short at the end of the file');
    io.pwriteAll(fd, Buffer.alloc(100, 2), 70 * KiB);
    assert.equal(readFileSync(path).length, 70 * KiB + 100, 'a write past the end extends the file');
    const ro = openSync(path, 'r');
    cleanups.push(() => closeSync(ro));
    assert.throws(() => io.pwriteAll(ro, data, 0), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ERRNO' && err.errno === 9);
    assert.throws(() => io.preadAll(-1, back, 0), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ERRNO' && err.errno === 9);
    assert.throws(() => io.pwriteAll(fd, 'x' as unknown as Buffer, 0), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ARGUMENT');
    assert.throws(() => io.preadAll(fd, back, -1), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ARGUMENT');
  });

  it('FileDevice.readToPipe: the bytes of the file while inline I/O is on, declined when it is off or the device closed, errors as storage errors', async function () {
    const data = new Prng(5).bytes(MiB);
    const path = join(dir, 'disk.img');
    writeFileSync(path, data.subarray(0, 768 * KiB));
    const inline = new InlineIo({ slowUs: 1e9 });
    const dev = new FileDevice(path, { inlineIo: inline, size: MiB });
    await dev.open();
    cleanups.push(() => void dev.close());
    const [r, w] = pipe();
    assert.equal(dev.readToPipe(w, 512 * KiB, 512 * KiB), true);
    const got = drainPipe(r);
    assert.deepEqual(got.subarray(0, 256 * KiB), data.subarray(512 * KiB, 768 * KiB));
    assert.ok(got.subarray(256 * KiB).every((b) => b === 0), 'the sparse tail is zeroes');
    assert.equal(inline.stats.calls, 1, 'timed by the inline governor');
    assert.throws(() => dev.readToPipe(w, MiB - 4096, 8192), (err: unknown) => isSnapbackError(err, 'OUT_OF_RANGE'));
    assert.throws(
      () => dev.readToPipe(987654, 0, 4096),
      (err: unknown) => isSnapbackError(err, 'IO_ERROR') && /reading .*disk\.img at 0: .*Bad file descriptor/.test(err.message),
    );
    const off = new FileDevice(path, { inlineIo: null });
    await off.open();
    assert.equal(off.readToPipe(w, 0, 4096), false, 'no inline I/O: declined');
    await off.close();
    await dev.close();
    assert.equal(dev.readToPipe(w, 0, 4096), false, 'closed: declined');
    assert.equal(drainPipe(r).length, 0, 'a declined read leaves the pipe untouched');
  });

  it('ProtectedDisk.readToPipe: the bytes of the working disk when no region of the range is pending, counted; declined while quiesced, for a pending region and once closed', async function () {
    const rs = 64 * KiB;
    const size = 16 * rs;
    const { pd, modelBytes } = await protectedDisk(rs, 13);
    const [r, w] = pipe();
    const reads = pd.stats.reads;
    assert.equal(pd.readToPipe(w, rs, 4 * rs), true);
    assert.deepEqual(drainPipe(r), modelBytes.subarray(rs, 5 * rs));
    assert.equal(pd.stats.reads, reads + 1);

    const written = Buffer.alloc(rs, 7);
    await pd.write(2 * rs, written);
    assert.equal(pd.readToPipe(w, 2 * rs, rs), true, 'a region written this session is on the working disk');
    assert.deepEqual(drainPipe(r), written);

    await pd.quiesce();
    assert.equal(pd.readToPipe(w, 0, rs), false, 'host I/O is stopped');
    pd.resume();
    // The session ends: region 2 is pending (the model's bytes, which the model device holds).
    await pd.endSession({ keepWrites: false });
    assert.equal(pd.readToPipe(w, rs, 4 * rs), false, 'a pending region in the range');
    assert.equal(pd.readToPipe(w, 4 * rs, rs), true, 'the rest is still read from the working disk');
    assert.deepEqual(drainPipe(r), modelBytes.subarray(4 * rs, 5 * rs));
    assert.throws(() => pd.readToPipe(w, size - 4096, 8192), (err: unknown) => isSnapbackError(err, 'OUT_OF_RANGE'));
    await pd.close();
    assert.equal(pd.readToPipe(w, 0, rs), false, 'closed');
    assert.equal(drainPipe(r).length, 0, 'nothing was put in the pipe by a declined read');
  });

  it('ProtectedDisk.directWrite: a window only over regions written this session, counted in flight until finished, once; declined while quiesced and once closed', async function () {
    const rs = 64 * KiB;
    const size = 16 * rs;
    const { pd } = await protectedDisk(rs, 14, null);
    assert.equal(pd.directWrite(rs, 2 * rs), null, 'regions not written this session: their marks come first (the ordinary path)');
    await pd.write(rs, Buffer.alloc(2 * rs, 5));
    const writes = pd.stats.writes;
    const w = pd.directWrite(rs, 2 * rs);
    assert.ok(w !== null, 'a window over regions written this session');
    assert.equal(w.position, rs);
    let quiesced = false;
    const q = pd.quiesce().then(() => (quiesced = true));
    await sleep(50);
    assert.equal(quiesced, false, 'a session end waits for an open window');
    assert.equal(pd.directWrite(rs, rs), null, 'declined while host I/O is stopping');
    assert.equal(w.finish(null), null);
    await q;
    assert.equal(pd.stats.writes, writes + 1, 'counted once finished');
    assert.equal(w.finish(null), null, 'a second finish changes nothing');
    assert.equal(pd.stats.writes, writes + 1);
    pd.resume();
    const failing = pd.directWrite(rs, rs)!;
    const ioErrors = pd.stats.ioErrors;
    const err = failing.finish(Object.assign(new Error('no space'), { code: 'ENOSPC', errno: -28 }));
    assert.ok(err !== null && isSnapbackError(err), 'a failed write is reported as a storage error');
    assert.equal(pd.stats.ioErrors, ioErrors + 1);
    assert.equal(pd.directWrite(rs, rs)!.finish('aborted'), null, 'a payload that never arrived is no error, and not counted');
    assert.equal(pd.stats.writes, writes + 1);
    assert.throws(() => pd.directWrite(size - rs, 2 * rs), (e: unknown) => isSnapbackError(e, 'OUT_OF_RANGE'));
    await pd.close();
    assert.equal(pd.directWrite(rs, rs), null, 'closed');
  });

  it('ProtectedDisk.directWrite with a reach: the window extends over the following regions written this session, no further; each write through it counted; a session end asks for it back and waits until it is closed', async function () {
    const rs = 64 * KiB;
    const { pd } = await protectedDisk(rs, 14, null);
    await pd.write(rs, Buffer.alloc(4 * rs, 5)); // regions 1-4 written this session
    await pd.write(8 * rs, Buffer.alloc(rs, 5)); // and region 8
    const first = pd.directWrite(rs, rs, 16 * rs)!;
    assert.equal(first.end, 5 * rs, 'up to the first region not written this session');
    first.close();
    const w = pd.directWrite(rs + 100, rs, 2 * rs)!;
    assert.equal(w.end, 3 * rs + 100, 'never beyond offset + reach');
    w.close();
    const writes = pd.stats.writes;
    const window = pd.directWrite(rs, rs, 16 * rs)!;
    let revoked = 0;
    window.onRevoke = () => revoked++;
    assert.equal(window.wrote(rs, rs, null), null);
    assert.equal(window.wrote(3 * rs, 2 * rs, null), null);
    assert.ok(isSnapbackError(window.wrote(2 * rs, rs, Object.assign(new Error('no space'), { code: 'ENOSPC', errno: -28 }))));
    assert.equal(pd.stats.writes, writes + 2, 'every write through the window counted');
    let quiesced = false;
    const q = pd.quiesce().then(() => (quiesced = true));
    await sleep(50);
    assert.equal(revoked, 1, 'a session end asks for the window back');
    assert.equal(quiesced, false, 'and waits until it is closed');
    window.close();
    await q;
    window.close();
    assert.throws(() => window.wrote(rs, rs, null), (e: unknown) => isSnapbackError(e, 'CLOSED'), 'nothing more through a closed window');
    pd.resume();
    await pd.close();
  });

  it('sends buffers and pipes in the order queued, only once resumed, and reports each sent job', async function () {
    const { server, client, listener, fd } = await socketPair(dir);
    cleanups.push(() => {
      client.destroy();
      server.destroy();
      listener.close();
    });
    const reports: Array<[number, number]> = [];
    const sender = io.createSender(fd, 2 * MiB, (done, errno) => reports.push([done, errno]));
    cleanups.push(() => io.closeSender(sender));
    const prng = new Prng(9);
    const a = prng.bytes(1000);
    const header = prng.bytes(32);
    const body = prng.bytes(MiB);
    const b = prng.bytes(70 * KiB);
    const [r, w] = pipe();
    const file = join(dir, 'body');
    writeFileSync(file, body);
    const ffd = openSync(file, 'r');
    cleanups.push(() => io.closeFd(ffd));
    io.spliceFile(ffd, 0, MiB, w);

    const total = a.length + header.length + body.length + b.length;
    const arrived = receive(client, total);
    io.sendBytes(sender, a);
    io.sendPipe(sender, header, r, MiB);
    io.sendBytes(sender, b);
    await sleep(100);
    assert.equal(client.bytesRead, 0, 'a new sender is paused: nothing is sent');
    assert.equal(reports.length, 0);
    io.setPaused(sender, false);
    const got = await arrived;
    assert.deepEqual(got, Buffer.concat([a, header, body, b]));
    await waitFor('every job reported', () => reports.reduce((n, [d]) => n + d, 0) === 3);
    assert.ok(reports.every(([, errno]) => errno === 0));
    assert.equal(drainPipe(r).length, 0, 'the pipe was emptied');
  });

  it('reports the failure once the peer is gone (a pipe to splice first), and sends nothing after it', async function () {
    const { server, client, listener, fd } = await socketPair(dir);
    cleanups.push(() => {
      server.destroy();
      listener.close();
    });
    const reports: Array<[number, number]> = [];
    const sender = io.createSender(fd, 0, (done, errno) => reports.push([done, errno]));
    cleanups.push(() => io.closeSender(sender));
    client.destroy();
    await waitFor('the peer closed', () => client.destroyed);
    await sleep(50);
    const big = Buffer.alloc(4 * MiB, 1);
    const [r, w] = pipe();
    const path = join(dir, 'f');
    writeFileSync(path, big.subarray(0, MiB));
    const file = openSync(path, 'r');
    cleanups.push(() => io.closeFd(file));
    io.spliceFile(file, 0, MiB, w);
    io.sendPipe(sender, Buffer.alloc(16), r, MiB); // splice(2) to the closed socket fails too
    io.sendBytes(sender, big);
    io.setPaused(sender, false);
    const [, errno] = await waitFor('a failure report', () => reports.find(([, e]) => e !== 0));
    assert.ok(errno === 32 || errno === 104, `EPIPE or ECONNRESET, got ${errno}`);
    assert.equal(reports.reduce((n, [d]) => n + d, 0), 0, 'no job counts as sent');
  });

  it('tells a socket whose peer hung up (socketHungUp): not while connected or after a half-close; yes once the peer closed a unix socket or reset a TCP one', async function () {
    const { server, client, listener, fd } = await socketPair(dir);
    cleanups.push(() => {
      server.destroy();
      listener.close();
    });
    client.write(Buffer.alloc(64 * KiB, 7)); // never read by the paused server side
    await sleep(20);
    assert.equal(io.socketHungUp(fd), false, 'connected');
    client.end();
    await sleep(50);
    assert.equal(io.socketHungUp(fd), false, 'the peer only shut its sending side');
    client.destroy();
    await waitFor('the unix peer to be seen gone', () => io.socketHungUp(fd));

    const tcp = createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve) => tcp.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => tcp.close());
    const port = (tcp.address() as { port: number }).port;
    const accepted = new Promise<Socket>((resolve) => tcp.once('connection', resolve));
    const peer = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => peer.once('connect', resolve).once('error', reject));
    const side = await accepted;
    cleanups.push(() => side.destroy());
    const tcpFd = (side as unknown as { _handle: { fd: number } })._handle.fd;
    peer.end();
    await sleep(50);
    assert.equal(io.socketHungUp(tcpFd), false, 'a TCP half-close (FIN) is not a hang-up');
    peer.resetAndDestroy();
    await waitFor('the TCP reset to be seen', () => io.socketHungUp(tcpFd));
  });

  it('stops at once while it waits for a peer that does not read; closing twice is harmless; a closed sender refuses jobs', async function () {
    const { server, client, listener, fd } = await socketPair(dir);
    cleanups.push(() => {
      client.destroy();
      server.destroy();
      listener.close();
    });
    client.pause();
    const reports: Array<[number, number]> = [];
    const sender: Sender = io.createSender(fd, 0, (done, errno) => reports.push([done, errno]));
    const big = Buffer.alloc(8 * MiB, 2);
    io.sendBytes(sender, big);
    io.setPaused(sender, false);
    await sleep(200); // the socket fills; the thread waits in poll()
    const t0 = process.hrtime.bigint();
    io.closeSender(sender);
    io.closeSender(sender);
    assert.ok(process.hrtime.bigint() - t0 < 5_000_000_000n, 'closing does not wait for the peer');
    assert.throws(() => io.sendBytes(sender, big), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_CLOSED');
    assert.throws(() => io.setPaused(sender, false), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_CLOSED');
    await sleep(50);
    assert.deepEqual(reports, [], 'nothing is reported after close');
    assert.throws(() => io.createSender('x' as unknown as number, 0, () => undefined), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ARGUMENT');
  });

  /** A receiver on the server side of a fresh socket pair, and a promise of its next report. */
  async function receiverPair(): Promise<{ server: Socket; client: Socket; receiver: Receiver; next: () => Promise<[number, number, number]> }> {
    const { server, client, listener, fd } = await socketPair(dir);
    const waiting: Array<(r: [number, number, number]) => void> = [];
    const reports: Array<[number, number, number]> = [];
    const receiver = io.createReceiver(fd, MiB, (fileErrno, socketErrno, nextBytes) => {
      const w = waiting.shift();
      if (w) w([fileErrno, socketErrno, nextBytes]);
      else reports.push([fileErrno, socketErrno, nextBytes]);
    });
    cleanups.push(() => {
      io.closeReceiver(receiver);
      client.destroy();
      server.destroy();
      listener.close();
    });
    const next = (): Promise<[number, number, number]> => {
      const r = reports.shift();
      return r ? Promise.resolve(r) : new Promise((resolve) => waiting.push(resolve));
    };
    return { server, client, receiver, next };
  }

  it('receives a payload into a file: the prefix, then the rest from the socket, at the position; then reads what already waits after it, up to the next buffer, and leaves the rest on the socket', async function () {
    const { server, client, receiver, next } = await receiverPair();
    const path = join(dir, 'disk.img');
    const before = new Prng(30).bytes(4 * MiB);
    writeFileSync(path, before);
    const payload = new Prng(31).bytes(MiB + 1000);
    const prefixLength = 5000;
    const position = 12345;
    const fd = openSync(path, 'r+');
    const following = Buffer.alloc(10);
    io.receiveToFile(receiver, payload.subarray(0, prefixLength), fd, position, payload.length, following, ...NO_WINDOW);
    // The thread writes through its own descriptor: the caller's may be closed at once.
    closeSync(fd);
    const trailer = Buffer.from('the next request');
    client.write(payload.subarray(prefixLength, prefixLength + 300 * KiB));
    await sleep(20); // the rest in pieces: the thread waits for them
    client.write(payload.subarray(prefixLength + 300 * KiB, payload.length - 1));
    await sleep(20);
    // The last byte and what follows in one small write: the trailer waits when the payload ends.
    client.write(Buffer.concat([payload.subarray(payload.length - 1), trailer]));
    assert.deepEqual(await next(), [0, 0, following.length], 'the first 10 bytes after the payload were read');
    assert.deepEqual(following, trailer.subarray(0, following.length));
    const after = readFileSync(path);
    const expected = Buffer.from(before);
    payload.copy(expected, position);
    assert.ok(after.equals(expected), 'the payload landed at its position and nothing else changed');
    server.resume();
    assert.deepEqual(await receive(server, trailer.length - following.length), trailer.subarray(following.length), 'the rest is left for the event loop');

    // Nothing waits after a payload: nothing read.
    const other = await receiverPair();
    const fd2 = openSync(path, 'r+');
    io.receiveToFile(other.receiver, Buffer.alloc(0), fd2, 0, 64 * KiB, following, ...NO_WINDOW);
    closeSync(fd2);
    other.client.write(payload.subarray(0, 64 * KiB));
    assert.deepEqual(await other.next(), [0, 0, 0]);
    assert.ok(readFileSync(path).subarray(0, 64 * KiB).equals(payload.subarray(0, 64 * KiB)));
  });

  it('a file that cannot be written: reported with its errno, and the rest of the payload is still taken off the socket', async function () {
    const { server, client, receiver, next } = await receiverPair();
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(2 * MiB, 1));
    const fd = openSync(path, 'r'); // read-only: every write fails with EBADF
    cleanups.push(() => closeSync(fd));
    const payload = Buffer.alloc(512 * KiB, 9);
    io.receiveToFile(receiver, payload.subarray(0, 100), fd, 0, payload.length, Buffer.alloc(0), ...NO_WINDOW);
    const trailer = Buffer.from('after the payload');
    client.write(Buffer.concat([payload.subarray(100), trailer]));
    const [fileErrno, socketErrno, nextBytes] = await next();
    assert.equal(fileErrno, 9, 'EBADF');
    assert.equal(socketErrno, 0);
    assert.equal(nextBytes, 0, 'an empty next buffer: nothing read after the payload');
    assert.ok(readFileSync(path).equals(Buffer.alloc(2 * MiB, 1)), 'nothing written');
    server.resume();
    assert.deepEqual(await receive(server, trailer.length), trailer, 'the stream is still framed');
  });

  it('a peer that leaves in the middle of a payload is reported as a socket error', async function () {
    const { client, receiver, next } = await receiverPair();
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(MiB));
    const fd = openSync(path, 'r+');
    cleanups.push(() => closeSync(fd));
    io.receiveToFile(receiver, Buffer.alloc(0), fd, 0, 256 * KiB, Buffer.alloc(28), ...NO_WINDOW);
    client.end(Buffer.alloc(100 * KiB, 3));
    const [fileErrno, socketErrno, nextBytes] = await next();
    assert.equal(fileErrno, 0);
    assert.equal(socketErrno, 104, 'ECONNRESET');
    assert.equal(nextBytes, 0);
  });

  it('a standing window: following plain WRITEs inside it are taken by the thread and reported one by one; the first that is not (outside, too short, FUA, another command) ends the run and comes back as the next bytes', async function () {
    const { server, client, listener, fd: sockFd } = await socketPair(dir);
    const reports: unknown[][] = [];
    const receiver = io.createReceiver(sockFd, MiB, (...args) => reports.push(args));
    cleanups.push(() => {
      io.closeReceiver(receiver);
      client.destroy();
      server.destroy();
      listener.close();
    });
    const path = join(dir, 'standing.img');
    writeFileSync(path, Buffer.alloc(8 * MiB));
    const fd = openSync(path, 'r+');
    cleanups.push(() => closeSync(fd));
    const next = Buffer.alloc(28);
    const p = (n: number): Buffer => new Prng(40 + n).bytes(256 * KiB);
    // The file holds the device at 1 MiB further on (position = offset + 1 MiB); the window is [0, 4 MiB).
    io.receiveToFile(receiver, p(0).subarray(0, 1000), fd, MiB, 256 * KiB, next, 0, 7, 0, 4 * MiB, 256 * KiB, MiB);
    const WRITE = 1;
    const ending = requestHeader(WRITE, 0, 12, 4 * MiB - 128 * KiB, 256 * KiB); // crosses the window's end
    client.write(
      Buffer.concat([
        p(0).subarray(1000),
        requestHeader(WRITE, 0, 8, 3 * MiB, 256 * KiB),
        p(1),
        requestHeader(WRITE, 0, 9, 512 * KiB, 256 * KiB),
        p(2),
        ending,
      ]),
    );
    await waitFor('three reports', async () => reports.length === 3);
    assert.deepEqual(reports, [
      [0, 0, 0, 0, 7, 0, 256 * KiB, false],
      [0, 0, 0, 0, 8, 3 * MiB, 256 * KiB, false],
      [0, 0, 28, 0, 9, 512 * KiB, 256 * KiB, true],
    ]);
    assert.ok(next.equals(ending), 'the header that ended the run is handed back');
    const file = readFileSync(path);
    assert.ok(file.subarray(MiB, MiB + 256 * KiB).equals(p(0)));
    assert.ok(file.subarray(4 * MiB, 4 * MiB + 256 * KiB).equals(p(1)), 'at its offset plus the window\'s distance');
    assert.ok(file.subarray(MiB + 512 * KiB, MiB + 768 * KiB).equals(p(2)));

    // Each kind of request the thread must not take ends the run: FUA, too short, not a WRITE.
    for (const [i, h] of [requestHeader(WRITE, 1, 20, 0, 256 * KiB), requestHeader(WRITE, 0, 21, 0, 128 * KiB), requestHeader(0, 0, 22, 0, 256 * KiB), requestHeader(WRITE, 0, 23, 0, 2 * MiB)].entries()) {
      reports.length = 0;
      io.receiveToFile(receiver, Buffer.alloc(0), fd, MiB, 256 * KiB, next, 0, 30 + i, 0, 4 * MiB, 256 * KiB, MiB);
      client.write(Buffer.concat([p(3), h]));
      await waitFor('its report', async () => reports.length === 1);
      assert.deepEqual(reports[0], [0, 0, 28, 0, 30 + i, 0, 256 * KiB, true]);
      assert.ok(next.equals(h));
    }

    // Revoked: the run ends with the WRITE in progress, whatever follows.
    reports.length = 0;
    io.receiveToFile(receiver, Buffer.alloc(0), fd, MiB, 256 * KiB, next, 0, 40, 0, 4 * MiB, 256 * KiB, MiB);
    client.write(p(4).subarray(0, 1000));
    await sleep(20);
    io.stopStanding(receiver);
    const after = requestHeader(WRITE, 0, 41, MiB, 256 * KiB);
    client.write(Buffer.concat([p(4).subarray(1000), after]));
    await waitFor('its report', async () => reports.length === 1);
    assert.deepEqual(reports[0], [0, 0, 28, 0, 40, 0, 256 * KiB, true]);
    assert.ok(next.equals(after), 'the WRITE inside the window after the revocation is handed back');
  });

  it('stops at once while it waits for a payload; closing twice is harmless; one job at a time; a closed receiver refuses jobs', async function () {
    const { receiver } = await receiverPair();
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(MiB));
    const fd = openSync(path, 'r+');
    cleanups.push(() => closeSync(fd));
    let reported = 0;
    const r2 = io.createReceiver((await socketPair(dir)).fd, 0, () => reported++);
    io.closeReceiver(r2);
    io.receiveToFile(receiver, Buffer.alloc(0), fd, 0, 64 * KiB, Buffer.alloc(28), ...NO_WINDOW);
    assert.throws(() => io.receiveToFile(receiver, Buffer.alloc(0), fd, 0, 64 * KiB, Buffer.alloc(28), ...NO_WINDOW), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_BUSY');
    await sleep(100); // the thread waits in poll() for bytes that never come
    const t0 = process.hrtime.bigint();
    io.closeReceiver(receiver);
    io.closeReceiver(receiver);
    assert.ok(process.hrtime.bigint() - t0 < 5_000_000_000n, 'closing does not wait for the peer');
    assert.throws(() => io.receiveToFile(receiver, Buffer.alloc(0), fd, 0, 4096, Buffer.alloc(28), ...NO_WINDOW), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_CLOSED');
    assert.throws(() => io.receiveToFile(r2, Buffer.alloc(0), fd, 0, 4096, Buffer.alloc(28), ...NO_WINDOW), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_CLOSED');
    assert.equal(reported, 0);
    assert.throws(() => io.createReceiver('x' as unknown as number, 0, () => undefined), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ARGUMENT');
    // A sender is not a receiver, nor the other way round.
    const pair = await socketPair(dir);
    const sender = io.createSender(pair.fd, 0, () => undefined);
    cleanups.push(() => {
      io.closeSender(sender);
      pair.client.destroy();
      pair.server.destroy();
      pair.listener.close();
    });
    assert.throws(() => io.receiveToFile(sender as unknown as Receiver, Buffer.alloc(0), fd, 0, 4096, Buffer.alloc(28), ...NO_WINDOW), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ARGUMENT' && /expected a receiver/.test(err.message));
    assert.throws(() => io.sendBytes(r2 as unknown as Sender, Buffer.alloc(1)), (err: NodeJS.ErrnoException) => err.code === 'NATIVE_ARGUMENT' && /expected a sender/.test(err.message));
  });
});

