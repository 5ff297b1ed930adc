/**
 * Large WRITE payloads taken off the socket by the connection's payload receiver thread and
 * spliced into the device's file (docs/native-io.md), seen from a raw NBD client: the bytes land
 * where they belong among small writes and reads in flight; a disk error is answered as an NBD
 * error and the stream stays framed; a client that leaves in the middle of a payload leaves the
 * server serving the next one. The ForwardingDevice records every direct-write window with the
 * outcome it was finished with.
 */
import assert from 'node:assert/strict';
import { openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { NBD, RawNbdClient, startServer, type ServerFixture } from '../helpers/nbd-clients.js';
import { ForwardingDevice } from '../helpers/forwarding-device.js';
import { Prng } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromSystemError } from '../../appliance/errors.js';
import { directWriteWindow } from '../../appliance/storage/block-device.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 32 * MiB;
/** Each write of the first test owns one slot: no two in flight overlap. */
const SLOT = 2 * MiB;

/** Reads `length` bytes at `offset` with one simple-reply READ. */
async function readBack(c: RawNbdClient, handle: bigint, offset: number, length: number): Promise<Buffer> {
  c.sendRequest(NBD.CMD_READ, handle, offset, length);
  const head = await c.readExact(16);
  assert.equal(head.readUInt32BE(0), NBD.SIMPLE_REPLY_MAGIC);
  assert.equal(head.readUInt32BE(4), 0, `READ at ${offset} succeeded`);
  assert.equal(head.readBigUInt64BE(8), handle);
  return Buffer.from(await c.readExact(length));
}

/** The simple reply of each handle in `handles` (any order): its error. */
async function replies(c: RawNbdClient, count: number): Promise<Map<bigint, number>> {
  const out = new Map<bigint, number>();
  while (out.size < count) {
    const head = await c.readExact(16);
    assert.equal(head.readUInt32BE(0), NBD.SIMPLE_REPLY_MAGIC);
    out.set(head.readBigUInt64BE(8), head.readUInt32BE(4));
  }
  return out;
}

describe('NBD server: large WRITE payloads spliced into the file by the payload receiver', function () {
  this.timeout(120_000);
  let fx: ServerFixture;
  let fwd: ForwardingDevice;

  beforeEach(async function () {
    fx = await startServer({
      size: SIZE,
      maxBlockSize: 32 * MiB,
      tuning: { closeTimeoutMs: 500 },
      wrapDevice: (d) => (fwd = new ForwardingDevice(d)),
    });
    fwd.directHook = () => true;
  });
  afterEach(async function () {
    await fx?.stop();
  });

  it('writes every payload where it belongs, with small writes in flight, whatever part of it came with its header', async function () {
    const prng = new Prng(40);
    const reference = await readFile(fx.imagePath);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      let handle = 1n;
      let sent = 0;
      const large: Array<{ offset: number; length: number }> = [];
      for (let slot = 0; slot < SIZE / SLOT; slot++) {
        // 128 KiB to 2 MiB at any 512-byte offset inside the slot; a small write and a read after it.
        const length = 128 * KiB + prng.int((SLOT - 128 * KiB - 64 * KiB) / 512) * 512;
        const offset = slot * SLOT + prng.int((SLOT - length - 4 * KiB) / 512) * 512;
        const payload = prng.bytes(length);
        payload.copy(reference, offset);
        large.push({ offset, length });
        const header = RawNbdClient.request(NBD.CMD_WRITE, handle++, offset, length);
        // Sometimes the header with part of the payload in one write, sometimes alone.
        const k = slot % 2 === 0 ? 1 + prng.int(64 * KiB) : 0;
        c.write(Buffer.concat([header, payload.subarray(0, k)]));
        c.write(payload.subarray(k));
        sent++;
        const small = prng.bytes(4 * KiB);
        const smallAt = offset + length;
        small.copy(reference, smallAt);
        c.sendRequest(NBD.CMD_WRITE, handle++, smallAt, small.length, { payload: small });
        sent++;
      }
      const errors = await replies(c, sent);
      for (const [h, e] of errors) assert.equal(e, 0, `request ${h} succeeded`);
      for (let off = 0; off < SIZE; off += 4 * MiB) {
        const got = await readBack(c, handle++, off, 4 * MiB);
        assert.ok(got.equals(reference.subarray(off, off + 4 * MiB)), `the disk at ${off} reads back as written`);
      }
      const direct = fwd.calls.filter((call) => call.direct !== undefined);
      assert.ok(direct.length >= large.length / 2, `most large payloads went through the receiver (${direct.length} of ${large.length})`);
      assert.ok(direct.every((call) => call.direct!.outcome === null && call.length >= 128 * KiB));
      assert.ok((await readFile(fx.imagePath)).equals(reference), 'and so does the file');
    } finally {
      c.destroy();
    }
  });

  it('requests right behind a payload, read by the receiver thread with its report: another large WRITE, a small WRITE, a READ, a header split across two sends', async function () {
    const prng = new Prng(41);
    const reference = await readFile(fx.imagePath);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      const w = (handle: bigint, offset: number, payload: Buffer): Buffer => {
        payload.copy(reference, offset);
        return Buffer.concat([RawNbdClient.request(NBD.CMD_WRITE, handle, offset, payload.length), payload]);
      };
      const p1 = prng.bytes(MiB);
      const p2 = prng.bytes(512 * KiB);
      const small = prng.bytes(4 * KiB);
      const p3 = prng.bytes(256 * KiB);
      const p4 = prng.bytes(384 * KiB);
      // Large, large, small, a READ of the first large write's range, large: all in one send.
      const burst = Buffer.concat([w(1n, 0, p1), w(2n, 2 * MiB, p2), w(3n, 3 * MiB, small), RawNbdClient.request(NBD.CMD_READ, 4n, 64 * KiB, 4 * KiB), w(5n, 4 * MiB, p3)]);
      // The last payload's end and the first 10 bytes of the next header, then the rest of it later:
      // the thread reads a partial header, the event loop the rest.
      const last = w(6n, 6 * MiB, p4);
      c.write(burst.subarray(0, burst.length - 1000));
      await sleep(20);
      c.write(Buffer.concat([burst.subarray(burst.length - 1000), last.subarray(0, 10)]));
      await sleep(20);
      c.write(last.subarray(10));
      const errors = new Map<bigint, number>();
      while (errors.size < 6) {
        const head = await c.readExact(16);
        assert.equal(head.readUInt32BE(0), NBD.SIMPLE_REPLY_MAGIC);
        const h = head.readBigUInt64BE(8);
        errors.set(h, head.readUInt32BE(4));
        if (h === 4n) assert.ok((await c.readExact(4 * KiB)).equals(p1.subarray(64 * KiB, 68 * KiB)), 'the READ behind a payload sees the payload before it');
      }
      assert.deepEqual([...errors].sort((a, b) => Number(a[0] - b[0])), [[1n, 0], [2n, 0], [3n, 0], [4n, 0], [5n, 0], [6n, 0]]);
      assert.deepEqual(
        fwd.calls.filter((call) => call.direct !== undefined).map((call) => [call.offset, call.length, call.direct!.outcome]),
        [[0, MiB, null], [2 * MiB, 512 * KiB, null], [4 * MiB, 256 * KiB, null], [6 * MiB, 384 * KiB, null]],
        'every large payload went through the receiver',
      );
      assert.ok((await readBack(c, 7n, 0, 8 * MiB)).equals(reference.subarray(0, 8 * MiB)), 'the disk reads back as written');
      assert.ok((await readFile(fx.imagePath)).equals(reference), 'and so does the file');
    } finally {
      c.destroy();
    }
  });

  it('a client streaming large writes: the receiver takes the ones inside its window by itself, each answered with its own handle; one outside it, a FUA write or another command ends the run', async function () {
    const prng = new Prng(43);
    const reference = await readFile(fx.imagePath);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      const parts: Buffer[] = [];
      let handle = 1n;
      const write = (offset: number, length: number, flags = 0): void => {
        const payload = prng.bytes(length);
        payload.copy(reference, offset);
        parts.push(RawNbdClient.request(NBD.CMD_WRITE, handle++, offset, length, flags), payload);
      };
      // Forwards through the disk in 256 KiB to 1 MiB writes, now and then going back (outside the
      // window), with a FUA write and a FLUSH among them.
      let at = 0;
      for (let i = 0; i < 40; i++) {
        const length = (256 + prng.int(769)) * KiB;
        if (at + length > SIZE) at = 0;
        write(at, length, i === 17 ? NBD.CMD_FLAG_FUA : 0);
        if (i === 25) parts.push(RawNbdClient.request(NBD.CMD_FLUSH, handle++, 0, 0));
        at += i % 9 === 8 ? -3 * MiB : length;
        if (at < 0) at = 0;
      }
      const stream = Buffer.concat(parts);
      for (let i = 0; i < stream.length; i += 192 * KiB) c.write(stream.subarray(i, i + 192 * KiB));
      const errors = await replies(c, Number(handle - 1n));
      for (let h = 1n; h < handle; h++) assert.equal(errors.get(h), 0, `request ${h} answered, without error`);
      for (let off = 0; off < SIZE; off += 4 * MiB) {
        assert.ok((await readBack(c, handle++, off, 4 * MiB)).equals(reference.subarray(off, off + 4 * MiB)), `the disk at ${off} reads back as written`);
      }
      assert.ok(fwd.standingWrites > 0, `the receiver took writes by itself (${fwd.standingWrites})`);
      assert.ok(fwd.windowsOpened >= 4, `runs ended where they had to (${fwd.windowsOpened} windows)`);
      assert.ok((await readFile(fx.imagePath)).equals(reference), 'and so does the file');
    } finally {
      c.destroy();
    }
  });

  it('a window asked back (host I/O stopping) ends the run with the write in progress; the next write inside it is handed back and served the usual way', async function () {
    const prng = new Prng(44);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      const p = [prng.bytes(MiB), prng.bytes(MiB), prng.bytes(MiB)];
      c.write(Buffer.concat([RawNbdClient.request(NBD.CMD_WRITE, 1n, 0, MiB), p[0]!, RawNbdClient.request(NBD.CMD_WRITE, 2n, MiB, MiB), p[1]!.subarray(0, 1000)]));
      assert.deepEqual([...(await replies(c, 1))], [[1n, 0]]);
      await waitFor('the thread to take the second write by itself', async () => fwd.standingWrites === 0 && fwd.windowsOpened === 1);
      assert.equal(fwd.revokeWindows(), 1, 'one window open: the run');
      c.write(Buffer.concat([p[1]!.subarray(1000), RawNbdClient.request(NBD.CMD_WRITE, 3n, 2 * MiB, MiB), p[2]!]));
      assert.deepEqual([...(await replies(c, 2))].sort(), [[2n, 0], [3n, 0]]);
      assert.equal(fwd.standingWrites, 1, 'the second write was the run\'s');
      assert.equal(fwd.windowsOpened, 2, 'the third, inside the old window, was handed back and got a window of its own');
      assert.ok((await readBack(c, 4n, 0, 3 * MiB)).equals(Buffer.concat(p)));
    } finally {
      c.destroy();
    }
  });

  it('answers a payload the disk could not take with an NBD error, and the requests after it are served', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    // A disk that fails every write: the window's descriptor is open read-only (EBADF).
    const readOnly = openSync(fx.imagePath, 'r');
    try {
      fwd.directHook = (offset, length) =>
        directWriteWindow({
          fd: readOnly,
          position: offset,
          offset,
          length,
          end: offset + length,
          wrote: (_at, _n, outcome) => (outcome === null ? null : fromSystemError(outcome, 'writing the test disk')),
          closed: () => undefined,
        });
      await c.open();
      const before = await readFile(fx.imagePath);
      const payload = Buffer.alloc(512 * KiB, 0x77);
      c.sendRequest(NBD.CMD_WRITE, 1n, MiB, payload.length, { payload });
      const [first] = await replies(c, 1);
      assert.equal(first![0], 1n);
      assert.equal(first![1], NBD.EIO, 'the failed write is answered with EIO');
      assert.ok((await readFile(fx.imagePath)).equals(before), 'nothing was written');
      // The stream is still framed: the next write and read are served.
      fwd.directHook = () => true;
      const next = Buffer.alloc(256 * KiB, 0x42);
      c.sendRequest(NBD.CMD_WRITE, 2n, 2 * MiB, next.length, { payload: next });
      const [second] = await replies(c, 1);
      assert.deepEqual(second, [2n, 0]);
      assert.ok((await readBack(c, 3n, 2 * MiB, next.length)).equals(next));
      assert.deepEqual(
        fwd.calls.filter((call) => call.direct !== undefined).map((call) => (call.direct!.outcome === null ? 'ok' : 'failed')),
        ['failed', 'ok'],
      );
    } finally {
      c.destroy();
      closeSync(readOnly);
    }
  });

  it('a disk that fails every write of a run: each WRITE the thread took by itself is answered with the error, the stream stays framed, and the requests after the run are served', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    const readOnly = openSync(fx.imagePath, 'r'); // every write through it fails (EBADF)
    try {
      fwd.directHook = (offset) =>
        fwd.windowsOpened === 0
          ? directWriteWindow({
              fd: readOnly,
              position: offset,
              offset,
              length: 256 * KiB,
              end: offset + 4 * MiB,
              wrote: (_at, _n, outcome) => (outcome === null ? null : fromSystemError(outcome, 'writing the test disk')),
              closed: () => undefined,
            })
          : true;
      await c.open();
      const before = await readFile(fx.imagePath);
      const payload = Buffer.alloc(256 * KiB, 0x5a);
      const after = Buffer.alloc(4 * KiB, 0x6b);
      c.write(
        Buffer.concat([
          RawNbdClient.request(NBD.CMD_WRITE, 1n, 0, payload.length),
          payload,
          RawNbdClient.request(NBD.CMD_WRITE, 2n, MiB, payload.length),
          payload,
          RawNbdClient.request(NBD.CMD_WRITE, 3n, 2 * MiB, payload.length),
          payload,
          RawNbdClient.request(NBD.CMD_WRITE, 4n, 8 * MiB, after.length),
          after,
        ]),
      );
      const errors = await replies(c, 4);
      assert.deepEqual([...errors].sort((a, b) => Number(a[0] - b[0])), [[1n, NBD.EIO], [2n, NBD.EIO], [3n, NBD.EIO], [4n, 0]]);
      assert.equal(fwd.standingWrites, 2, 'the second and third were the run\'s');
      const expected = Buffer.from(before);
      after.copy(expected, 8 * MiB);
      assert.ok((await readFile(fx.imagePath)).equals(expected), 'nothing of the run was written; the small write after it was');
    } finally {
      c.destroy();
      closeSync(readOnly);
    }
  });

  it('a client that leaves in the middle of a payload: the write is never answered, its window is closed, and the next client is served', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    await c.open();
    c.write(RawNbdClient.request(NBD.CMD_WRITE, 1n, 4 * MiB, 4 * MiB));
    c.write(Buffer.alloc(MiB + 123, 0x11));
    await waitFor('the receiver to take the payload', async () => fwd.calls.some((call) => call.direct !== undefined));
    c.destroy();
    await waitFor('the window to be closed as aborted', async () => fwd.calls.some((call) => call.direct?.outcome === 'aborted'));
    await waitFor('the server to drop the client', async () => fx.server.clientCount === 0);

    const d = await RawNbdClient.connect(fx.socketPath);
    try {
      await d.open();
      const payload = Buffer.alloc(MiB, 0x33);
      d.sendRequest(NBD.CMD_WRITE, 1n, 4 * MiB, payload.length, { payload });
      const [r] = await replies(d, 1);
      assert.deepEqual(r, [1n, 0]);
      assert.ok((await readBack(d, 2n, 4 * MiB, MiB)).equals(payload));
    } finally {
      d.destroy();
    }
  });

  it('a job the receiver cannot take (a bad descriptor) ends the connection: never acknowledged, the window closed, the next client served', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    await c.open();
    const before = await readFile(fx.imagePath);
    fwd.directHook = (offset, length) => directWriteWindow({ fd: -1, position: offset, offset, length, end: offset + length, wrote: () => null, closed: () => undefined });
    c.write(Buffer.concat([RawNbdClient.request(NBD.CMD_WRITE, 1n, 0, 256 * KiB), Buffer.alloc(256 * KiB, 0x66)]));
    await waitFor('the window to be closed as aborted', async () => fwd.calls.some((call) => call.direct?.outcome === 'aborted'));
    await waitFor('the server to drop the client', async () => fx.server.clientCount === 0);
    c.destroy();
    assert.ok((await readFile(fx.imagePath)).equals(before), 'nothing was written');
    fwd.directHook = () => true;
    const d = await RawNbdClient.connect(fx.socketPath);
    try {
      await d.open();
      const payload = Buffer.alloc(512 * KiB, 0x44);
      d.sendRequest(NBD.CMD_WRITE, 1n, 0, payload.length, { payload });
      const [r] = await replies(d, 1);
      assert.deepEqual(r, [1n, 0]);
      assert.ok((await readBack(d, 2n, 0, payload.length)).equals(payload));
    } finally {
      d.destroy();
    }
  });

  it('a client that stalls in the middle of a payload is dropped after payloadStallMs: a session end is not held by it', async function () {
    await fx.stop();
    fx = await startServer({ size: SIZE, maxBlockSize: 32 * MiB, tuning: { closeTimeoutMs: 500, payloadStallMs: 300 }, wrapDevice: (d) => (fwd = new ForwardingDevice(d)) });
    fwd.directHook = () => true;
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      c.write(RawNbdClient.request(NBD.CMD_WRITE, 1n, 0, 2 * MiB));
      c.write(Buffer.alloc(MiB, 0x21)); // half of it, then nothing
      await waitFor('the receiver to take the payload', async () => fwd.calls.some((call) => call.direct !== undefined));
      await waitFor('the stalled client to be dropped', async () => fx.server.clientCount === 0, 10_000);
      assert.equal(fwd.calls.find((call) => call.direct !== undefined)!.direct!.outcome, 'aborted');
    } finally {
      c.destroy();
    }
  });
});
