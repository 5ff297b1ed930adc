/**
 * Large READs spliced from the file to the socket (docs/native-io.md), over a raw socket
 * in simple and structured mode: the bytes of every reply, with spliced reads, small reads and
 * writes in flight together; a read error while splicing (the half-filled pipe is never used
 * again); a declined splice; a client that vanishes or stops reading with spliced replies
 * queued. The real clients of nbd-data.test.ts read through the same path.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { writeSync } from 'node:fs';
import { SnapbackError } from '../../appliance/errors.js';
import { NBD, RawNbdClient, startServer, type ServerFixture } from '../helpers/nbd-clients.js';
import { ForwardingDevice } from '../helpers/forwarding-device.js';
import { Prng } from '../helpers/prng.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { InlineIo } from '../../appliance/storage/inline-io.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 16 * MiB;
/** Writes go below this offset, reads of the first round above it (no read races a write). */
const WRITE_AREA = 4 * MiB;

interface Sent {
  type: number;
  offset: number;
  length: number;
}

/** Reads the replies of `sent` (any order), returning each read's data (or error) by handle. */
async function collect(c: RawNbdClient, structured: boolean, sent: Map<bigint, Sent>): Promise<Map<bigint, { error: number; data: Buffer; message?: string }>> {
  const out = new Map<bigint, { error: number; data: Buffer; message?: string }>();
  while (out.size < sent.size) {
    if (structured) {
      const r = await c.readReply();
      out.set(r.handle, { error: r.error, data: r.data, ...(r.message !== undefined ? { message: r.message } : {}) });
      continue;
    }
    // Simple replies: the data length is the request's, found by the handle.
    const head = await c.readExact(16);
    assert.equal(head.readUInt32BE(0), NBD.SIMPLE_REPLY_MAGIC);
    const error = head.readUInt32BE(4);
    const handle = head.readBigUInt64BE(8);
    const req = sent.get(handle);
    assert.ok(req, `a reply for handle ${handle}`);
    const data = error === 0 && req.type === NBD.CMD_READ ? Buffer.from(await c.readExact(req.length)) : Buffer.alloc(0);
    out.set(handle, { error, data });
  }
  return out;
}

describe('NBD server: large reads spliced from the file through the native sender', function () {
  let fx: ServerFixture;
  let fwd: ForwardingDevice;
  let image: Buffer;

  beforeEach(async function () {
    fx = await startServer({
      size: SIZE,
      maxBlockSize: 2 * MiB,
      inlineIo: new InlineIo({ slowUs: 1e9 }),
      tuning: { closeTimeoutMs: 500 },
      wrapDevice: (d) => (fwd = new ForwardingDevice(d)),
    });
    fwd.pipeHook = () => true;
    image = await readFile(fx.imagePath);
  });
  afterEach(async function () {
    await fx?.stop();
  });

  for (const structured of [false, true]) {
    it(`answers spliced reads, small reads and writes in flight together with the right bytes (${structured ? 'structured' : 'simple'})`, async function () {
      const prng = new Prng(structured ? 21 : 20);
      const c = await RawNbdClient.connect(fx.socketPath);
      try {
        await c.open({ structured });
        const reference = Buffer.from(image);
        const sent = new Map<bigint, Sent>();
        const payloads = new Map<bigint, Buffer>();
        let handle = 1n;
        for (let i = 0; i < 160; i++) {
          const kind = prng.int(10);
          if (kind < 4) {
            const length = (1 + prng.int(16)) * 64 * KiB; // 64 KiB .. 1 MiB: spliced
            const offset = WRITE_AREA + prng.int((SIZE - WRITE_AREA - length) / 512) * 512;
            sent.set(handle, { type: NBD.CMD_READ, offset, length });
            c.sendRequest(NBD.CMD_READ, handle++, offset, length);
          } else if (kind < 6) {
            const length = 512 * (1 + prng.int(64)); // up to 32 KiB: copied
            const offset = WRITE_AREA + prng.int((SIZE - WRITE_AREA - length) / 512) * 512;
            sent.set(handle, { type: NBD.CMD_READ, offset, length });
            c.sendRequest(NBD.CMD_READ, handle++, offset, length);
          } else {
            const length = 4 * KiB * (1 + prng.int(64));
            const offset = prng.int((WRITE_AREA - length) / 4096) * 4096;
            const payload = prng.bytes(length);
            sent.set(handle, { type: NBD.CMD_WRITE, offset, length });
            payloads.set(handle, payload);
            c.sendRequest(NBD.CMD_WRITE, handle++, offset, length, { payload });
          }
        }
        // Overlapping writes land in the order sent only if replies are awaited: apply them in
        // handle order and give overlapping ones no say by comparing after all are answered.
        const replies = await collect(c, structured, sent);
        for (const [h, req] of sent) {
          const r = replies.get(h)!;
          assert.equal(r.error, 0, `request ${h} (${JSON.stringify(req)}) succeeded`);
          if (req.type === NBD.CMD_READ) assert.ok(r.data.equals(image.subarray(req.offset, req.offset + req.length)), `read ${h} at ${req.offset}+${req.length}`);
        }
        const spliced = fwd.calls.filter((call) => call.pipe === true);
        assert.ok(spliced.length >= 40, `large reads were spliced (${spliced.length})`);
        assert.ok(spliced.every((call) => call.length >= 64 * KiB));

        // Second round: the write area in 1 MiB spliced reads shows every write that did not
        // overlap a later one.
        const writes = [...sent].filter(([, r]) => r.type === NBD.CMD_WRITE);
        const owner = new Array<bigint | undefined>(WRITE_AREA / 4096);
        for (const [h, r] of writes) for (let b = r.offset / 4096; b < (r.offset + r.length) / 4096; b++) owner[b] = owner[b] === undefined ? h : -1n;
        for (const [h, r] of writes) payloads.get(h)!.copy(reference, r.offset);
        const second = new Map<bigint, Sent>();
        for (let off = 0; off < WRITE_AREA; off += MiB) {
          second.set(handle, { type: NBD.CMD_READ, offset: off, length: MiB });
          c.sendRequest(NBD.CMD_READ, handle++, off, MiB);
        }
        const back = await collect(c, structured, second);
        for (const [h, req] of second) {
          const data = back.get(h)!.data;
          for (let b = 0; b < MiB / 4096; b++) {
            const block = req.offset / 4096 + b;
            const who = owner[block];
            if (who === -1n) continue; // two writes in flight together: either may win
            const want = who === undefined ? image : reference;
            assert.ok(data.subarray(b * 4096, (b + 1) * 4096).equals(want.subarray(block * 4096, (block + 1) * 4096)), `block ${block}`);
          }
        }
      } finally {
        c.destroy();
      }
    });
  }

  it('a read error while splicing is an NBD error; the half-filled pipe is never used again; a declined splice is read the usual way', async function () {
    const bad = 5 * MiB;
    const declined = 7 * MiB;
    fwd.pipeHook = (pipeFd, offset) => {
      if (offset === declined) return false;
      if (offset !== bad) return true;
      writeSync(pipeFd, Buffer.alloc(64 * KiB, 0xee));
      throw new SnapbackError('IO_ERROR', 'injected read error', { offset: bad + 64 * KiB });
    };
    for (const structured of [false, true]) {
      fwd.reset();
      const c = await RawNbdClient.connect(fx.socketPath);
      try {
        await c.open({ structured });
        const sent = new Map<bigint, Sent>();
        sent.set(1n, { type: NBD.CMD_READ, offset: bad, length: MiB });
        c.sendRequest(NBD.CMD_READ, 1n, bad, MiB);
        const first = await collect(c, structured, sent);
        assert.equal(first.get(1n)!.error, NBD.EIO);
        if (structured) assert.match(first.get(1n)!.message!, /injected read error/);
        const more = new Map<bigint, Sent>();
        for (let i = 0; i < 40; i++) {
          const offset = i === 7 ? declined : 8 * MiB + i * 128 * KiB;
          more.set(BigInt(10 + i), { type: NBD.CMD_READ, offset, length: 256 * KiB });
          c.sendRequest(NBD.CMD_READ, BigInt(10 + i), offset, 256 * KiB);
        }
        const replies = await collect(c, structured, more);
        for (const [h, req] of more) {
          const r = replies.get(h)!;
          assert.equal(r.error, 0);
          assert.ok(r.data.equals(image.subarray(req.offset, req.offset + req.length)), `read ${h} has the file's bytes, none of the failed pipe's`);
        }
        assert.ok(fwd.calls.some((call) => call.offset === declined && call.pipe !== true), 'the declined read went through readInto');
        assert.equal(fwd.calls.filter((call) => call.pipe === true).length, 39);
      } finally {
        c.destroy();
      }
    }
  });

  it('replies still in the socket queue go out before the sender writes; then replies go through the sender, and back through the socket once it is done', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open({ structured: true });
      c.socket.pause();
      // 16 KiB replies, copied: more than the socket takes while the client does not read.
      const sent = new Map<bigint, Sent>();
      for (let i = 0; i < 256; i++) {
        sent.set(BigInt(i), { type: NBD.CMD_READ, offset: i * 16 * KiB, length: 16 * KiB });
        c.sendRequest(NBD.CMD_READ, BigInt(i), i * 16 * KiB, 16 * KiB);
      }
      await waitFor('the small reads were done', () => fwd.calls.filter((call) => call.op === 'read').length >= 256);
      for (let i = 0; i < 4; i++) {
        const h = BigInt(1000 + i);
        sent.set(h, { type: NBD.CMD_READ, offset: 8 * MiB + i * MiB, length: MiB });
        c.sendRequest(NBD.CMD_READ, h, 8 * MiB + i * MiB, MiB);
      }
      await waitFor('the large reads were spliced', () => fwd.calls.filter((call) => call.pipe === true).length >= 4);
      c.socket.resume();
      const replies = await collect(c, true, sent);
      for (const [h, req] of sent) assert.ok(replies.get(h)!.data.equals(image.subarray(req.offset, req.offset + req.length)), `read ${h}`);
      // After the sender is done, small replies go through the socket again.
      const more = new Map<bigint, Sent>([[5000n, { type: NBD.CMD_READ, offset: 4096, length: 4096 }]]);
      c.sendRequest(NBD.CMD_READ, 5000n, 4096, 4096);
      assert.ok((await collect(c, true, more)).get(5000n)!.data.equals(image.subarray(4096, 8192)));
    } finally {
      c.destroy();
    }
  });

  it('a client that vanishes with spliced replies queued: the server goes on, the next client reads the right bytes', async function () {
    for (let round = 0; round < 3; round++) {
      const c = await RawNbdClient.connect(fx.socketPath);
      await c.open({ structured: round === 1 });
      for (let i = 0; i < 48; i++) c.sendRequest(NBD.CMD_READ, BigInt(i), (i % 15) * MiB, MiB);
      await waitFor('reads spliced', () => fwd.calls.filter((call) => call.pipe === true).length >= 8 * (round + 1));
      c.destroy();
    }
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open({ structured: true });
      for (let i = 0; i < 16; i++) c.sendRequest(NBD.CMD_READ, BigInt(i), i * MiB, MiB);
      const sent = new Map<bigint, Sent>(Array.from({ length: 16 }, (_, i) => [BigInt(i), { type: NBD.CMD_READ, offset: i * MiB, length: MiB }]));
      const replies = await collect(c, true, sent);
      for (const [h, req] of sent) assert.ok(replies.get(h)!.data.equals(image.subarray(req.offset, req.offset + MiB)));
    } finally {
      c.destroy();
    }
    await waitFor('the vanished clients are gone', () => fx.server.clientCount === 0);
  });

  it('a client that stops reading with spliced replies queued does not keep the server from closing', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    await c.open({ structured: false });
    c.socket.pause();
    for (let i = 0; i < 32; i++) c.sendRequest(NBD.CMD_READ, BigInt(i), (i % 15) * MiB, MiB);
    await waitFor('reads spliced', () => fwd.calls.filter((call) => call.pipe === true).length >= 4);
    await sleep(100); // the socket is full; the sender waits for the client
    const closed = fx.server.close();
    const t0 = Date.now();
    await Promise.race([closed, sleep(20_000).then(() => assert.fail('the server did not close'))]);
    assert.ok(Date.now() - t0 < 20_000);
    c.socket.resume();
    assert.equal(await c.waitClosed(), true, 'the client was disconnected');
    c.destroy();
  });
});
