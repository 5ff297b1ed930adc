/**
 * What real clients never send, over a raw socket: unknown commands, bad magic, zero-length
 * requests, unskippable payloads, NBD_CMD_DISC with requests in flight, device failures, a
 * client that does not read its replies (backpressure), and server shutdown with requests in
 * flight.
 */
import assert from 'node:assert/strict';
import { SnapbackError } from '../../appliance/errors.js';
import { NBD, RawNbdClient, startServer, type ServerFixture } from '../helpers/nbd-clients.js';
import { sleep, waitFor } from '../helpers/wait.js';
import { ForwardingDevice } from '../helpers/forwarding-device.js';
import { InlineIo } from '../../appliance/storage/inline-io.js';
import { readFile } from 'node:fs/promises';

const SIZE = 8 * 1024 * 1024;

/** A gate device hooks can wait on. */
function gate(): { wait: () => Promise<void>; open: () => void; isOpen: () => boolean } {
  let opened = false;
  let release!: () => void;
  const p = new Promise<void>((r) => (release = r));
  return { wait: () => p, open: () => ((opened = true), release()), isOpen: () => opened };
}

/**
 * A server of its own whose device can always do small requests at once (inline I/O that never
 * finds the disk slow), behind a ForwardingDevice whose nowHook decides each one.
 */
async function startNowServer(): Promise<{ own: ServerFixture; fwd: ForwardingDevice }> {
  let fwd!: ForwardingDevice;
  const own = await startServer({ size: SIZE, inlineIo: new InlineIo({ slowUs: 1e9 }), wrapDevice: (d) => (fwd = new ForwardingDevice(d)) });
  return { own, fwd };
}

describe('NBD server: protocol edges over a raw socket', function () {
  let fx: ServerFixture;
  let dev: ForwardingDevice;

  beforeEach(async function () {
    fx = await startServer({
      size: SIZE,
      maxBlockSize: 1024 * 1024,
      tuning: { maxInflightBytes: 4 * 1024 * 1024, maxInflightRequests: 64 },
      wrapDevice: (d) => (dev = new ForwardingDevice(d)),
    });
  });
  afterEach(async function () {
    await fx?.stop();
  });

  for (const structured of [false, true]) {
    it(`unknown commands get EINVAL and the connection goes on (${structured ? 'structured' : 'simple'})`, async function () {
      const c = await RawNbdClient.connect(fx.socketPath);
      try {
        await c.open({ structured });
        for (const [i, type] of [99, NBD.CMD_BLOCK_STATUS, 8, 0xffff].entries()) {
          c.sendRequest(type, BigInt(100 + i), 0, 4096);
          const r = await c.readReply();
          assert.equal(r.handle, BigInt(100 + i));
          assert.equal(r.error, NBD.EINVAL, `command ${type}`);
          if (structured) {
            assert.equal(r.type, NBD.REPLY_TYPE_ERROR);
            assert.equal(r.flags & NBD.REPLY_FLAG_DONE, NBD.REPLY_FLAG_DONE);
            assert.match(r.message!, /unknown command/);
          }
        }
        c.sendRequest(NBD.CMD_READ, 200n, 4096, 4096);
        const r = await c.readReply(4096);
        assert.equal(r.error, 0);
        const img = await readFile(fx.imagePath);
        assert.deepEqual(r.data, img.subarray(4096, 8192));
        if (structured) {
          assert.equal(r.type, NBD.REPLY_TYPE_OFFSET_DATA);
          assert.equal(r.offset, 4096n);
          assert.equal(r.flags & NBD.REPLY_FLAG_DONE, NBD.REPLY_FLAG_DONE);
        }
      } finally {
        c.destroy();
      }
    });
  }

  it('zero-length requests succeed without touching the device', async function () {
    for (const structured of [false, true]) {
      const c = await RawNbdClient.connect(fx.socketPath);
      try {
        await c.open({ structured });
        const before = dev.started;
        for (const [i, type] of [NBD.CMD_READ, NBD.CMD_WRITE, NBD.CMD_TRIM, NBD.CMD_WRITE_ZEROES, NBD.CMD_CACHE].entries()) {
          c.sendRequest(type, BigInt(i), 4096, 0);
          const r = await c.readReply(0);
          assert.equal(r.error, 0, `type ${type}`);
          if (structured && type === NBD.CMD_READ) assert.equal(r.type, NBD.REPLY_TYPE_NONE);
        }
        assert.equal(dev.started, before);
      } finally {
        c.destroy();
      }
    }
  });

  it('bad request magic: in-flight requests are answered, then the server hangs up', async function () {
    const g = gate();
    dev.hook = (op) => (op === 'read' ? g.wait() : undefined);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      c.sendRequest(NBD.CMD_READ, 1n, 0, 4096);
      c.write(RawNbdClient.request(NBD.CMD_READ, 2n, 0, 4096, 0, 0xdeadbeef));
      await waitFor('the read to reach the device', () => dev.pending === 1);
      g.open();
      const r = await c.readReply(4096);
      assert.equal(r.handle, 1n);
      assert.equal(r.error, 0);
      assert.equal(await c.waitClosed(), true);
    } finally {
      c.destroy();
    }
  });

  it('a WRITE too long to skip gets EINVAL and the connection is closed', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open({ structured: true });
      c.sendRequest(NBD.CMD_WRITE, 9n, 0, 0xffffffff);
      const r = await c.readReply();
      assert.equal(r.handle, 9n);
      assert.equal(r.error, NBD.EINVAL);
      assert.equal(await c.waitClosed(), true);
    } finally {
      c.destroy();
    }
  });

  it('NBD_CMD_DISC: every request sent before it is carried out and answered, then the server closes', async function () {
    dev.hook = () => new Promise((r) => setTimeout(r, 5));
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      const payload = Buffer.alloc(65536, 0xab);
      for (let i = 0; i < 16; i++) c.sendRequest(NBD.CMD_WRITE, BigInt(i), i * 65536, 65536, { payload });
      c.sendRequest(NBD.CMD_FLUSH, 16n, 0, 0);
      c.sendRequest(NBD.CMD_DISC, 17n, 0, 0);
      const handles = new Set<bigint>();
      for (let i = 0; i < 17; i++) {
        const r = await c.readReply();
        assert.equal(r.error, 0);
        handles.add(r.handle);
      }
      assert.equal(handles.size, 17);
      assert.equal(await c.waitClosed(), true);
      const img = await readFile(fx.imagePath);
      assert.ok(img.subarray(0, 16 * 65536).every((b) => b === 0xab));
    } finally {
      c.destroy();
    }
  });

  it('small writes the device does at once (writeNow) are answered from the received bytes; declined ones take write(); a failing one gets its errno', async function () {
    const { own, fwd } = await startNowServer();
    try {
      fwd.nowHook = (op, offset) => {
        if (op === 'read') return false;
        if (offset === 196608) throw new SnapbackError('NO_SPACE', 'disk full');
        return offset !== 65536;
      };
      for (const structured of [false, true]) {
        fwd.reset();
        const c = await RawNbdClient.connect(own.socketPath);
        try {
          await c.open({ structured });
          const fill = (v: number, n = 4096): Buffer => Buffer.alloc(n, v + (structured ? 1 : 0));
          const sent: Array<[bigint, number, Buffer, number]> = [
            [1n, 0, fill(1), 0], // now
            [2n, 65536, fill(2), 0], // declined: write()
            [3n, 196608, fill(3), 0], // fails
            [4n, 8192, fill(4, 8192), NBD.CMD_FLAG_FUA], // FUA: never now
            [5n, 131072, fill(5), 0], // now
          ];
          for (const [handle, offset, payload, flags] of sent) c.sendRequest(NBD.CMD_WRITE, handle, offset, payload.length, { payload, flags });
          // 64 more, back to back: many arrive in one received chunk (one straddling two takes write())
          for (let i = 0; i < 64; i++) c.sendRequest(NBD.CMD_WRITE, BigInt(100 + i), 262144 + i * 4096, 4096, { payload: fill(i) });
          const errors = new Map<bigint, number>();
          for (let i = 0; i < sent.length + 64; i++) {
            const r = await c.readReply();
            assert.ok(!errors.has(r.handle), `one reply per request (handle ${r.handle})`);
            errors.set(r.handle, r.error);
            if (structured && r.handle === 3n) assert.match(r.message!, /disk full/);
          }
          assert.equal(errors.get(3n), NBD.ENOSPC);
          for (const [handle, error] of errors) if (handle !== 3n) assert.equal(error, 0, `handle ${handle}`);
          const img = await readFile(own.imagePath);
          for (const [handle, offset, payload] of sent) if (handle !== 3n) assert.ok(img.subarray(offset, offset + payload.length).equals(payload), `write ${handle} on disk`);
          for (let i = 0; i < 64; i++) assert.ok(img.subarray(262144 + i * 4096, 262144 + (i + 1) * 4096).equals(fill(i)), `write ${100 + i} on disk`);
          const now = fwd.calls.filter((k) => k.now).map((k) => k.offset);
          assert.ok(now.includes(0) && now.includes(131072), `written now: ${now.slice(0, 4).join(', ')}…`);
          assert.ok(!now.includes(65536) && !now.includes(8192) && !now.includes(196608));
          assert.ok(fwd.calls.some((k) => !k.now && k.op === 'write' && k.offset === 65536), 'the declined write went through write()');
          assert.ok(fwd.calls.some((k) => !k.now && k.op === 'write' && k.offset === 8192 && k.options?.fua), 'the FUA write went through write()');
          assert.ok(now.length > 32, `most of the 64 back-to-back writes were done now (${now.length})`);
        } finally {
          c.destroy();
        }
      }
    } finally {
      await own.stop();
    }
  });

  it('small reads the device does at once (readNow) are answered in place; declined and large ones take readInto; a failing one gets its errno', async function () {
    const { own, fwd } = await startNowServer();
    try {
      fwd.nowHook = (op, offset) => {
        if (op === 'write') return false;
        if (offset === 196608) throw new SnapbackError('IO_ERROR', 'medium error', { offset: 196608 + 512 });
        return offset !== 65536;
      };
      const img = await readFile(own.imagePath);
      for (const structured of [false, true]) {
        fwd.reset();
        const c = await RawNbdClient.connect(own.socketPath);
        try {
          await c.open({ structured });
          // [handle, offset, length]: a simple reply does not say its length, so those are all 4 KiB
          const sent: Array<[bigint, number, number]> = [
            [1n, 0, 4096], // now
            [2n, 65536, 4096], // declined: readInto
            [3n, 196608, 4096], // fails
            [4n, 8192, 4096], // now
            ...(structured ? ([[5n, 262144, 32768]] as Array<[bigint, number, number]>) : []), // above 16 KiB: readInto
          ];
          for (const [handle, offset, length] of sent) c.sendRequest(NBD.CMD_READ, handle, offset, length);
          for (let i = 0; i < 64; i++) c.sendRequest(NBD.CMD_READ, BigInt(100 + i), 1048576 + i * 8192, 4096);
          const lengthOf = new Map<bigint, [number, number]>(sent.map(([h, o, l]) => [h, [o, l]]));
          for (let i = 0; i < 64; i++) lengthOf.set(BigInt(100 + i), [1048576 + i * 8192, 4096]);
          const seen = new Set<bigint>();
          for (let i = 0; i < lengthOf.size; i++) {
            const r = await c.readReply(4096);
            assert.ok(!seen.has(r.handle), `one reply per request (handle ${r.handle})`);
            seen.add(r.handle);
            const [offset, length] = lengthOf.get(r.handle)!;
            if (r.handle === 3n) {
              assert.equal(r.error, NBD.EIO);
              if (structured) assert.equal(r.type, 0x8002, 'ERROR_OFFSET');
              continue;
            }
            assert.equal(r.error, 0, `handle ${r.handle}`);
            assert.ok(r.data.equals(img.subarray(offset, offset + length)), `read ${r.handle} returned the image's bytes`);
            if (structured) assert.equal(r.offset, BigInt(offset));
          }
          const now = fwd.calls.filter((k) => k.now).map((k) => k.offset);
          assert.ok(now.includes(0) && now.includes(8192), `read now: ${now.slice(0, 4).join(', ')}…`);
          assert.ok(!now.includes(65536) && !now.includes(196608) && !now.includes(262144));
          assert.ok(fwd.calls.some((k) => !k.now && k.op === 'read' && k.offset === 65536), 'the declined read went through readInto');
          if (structured) assert.ok(fwd.calls.some((k) => !k.now && k.op === 'read' && k.offset === 262144), 'the 32 KiB read went through readInto');
          assert.equal(now.filter((o) => o >= 1048576).length, 64, 'the 64 back-to-back reads were all done now');
        } finally {
          c.destroy();
        }
      }
    } finally {
      await own.stop();
    }
  });

  it('maps device failures to NBD errors (ERROR_OFFSET when the layer located the failure)', async function () {
    dev.hook = (op, offset) => {
      if (offset === 65536) throw new SnapbackError('IO_ERROR', 'medium error', { offset: 65536 + 512 });
      if (offset === 131072) throw new SnapbackError('NO_SPACE', 'disk full');
      if (offset === 196608) throw new SnapbackError('READ_ONLY', 'frozen');
      if (offset === 262144) throw new Error('a bug');
      if (op === 'flush') throw new SnapbackError('NOT_SUPPORTED', 'no flush here');
    };
    for (const structured of [false, true]) {
      const c = await RawNbdClient.connect(fx.socketPath);
      try {
        await c.open({ structured });
        const expect: Array<[number, bigint, number]> = [
          [NBD.CMD_READ, 65536n, NBD.EIO],
          [NBD.CMD_WRITE, 131072n, NBD.ENOSPC],
          [NBD.CMD_TRIM, 196608n, NBD.EPERM],
          [NBD.CMD_READ, 262144n, NBD.EIO],
          [NBD.CMD_FLUSH, 0n, 95],
          [NBD.CMD_READ, 262144n, NBD.EIO], // 128 KiB: the pooled readInto path
        ];
        for (const [i, [type, offset, errno]] of expect.entries()) {
          const length = type === NBD.CMD_FLUSH ? 0 : i === 5 ? 131072 : 4096;
          c.sendRequest(type, BigInt(i), offset, length, type === NBD.CMD_WRITE ? { payload: Buffer.alloc(4096) } : {});
          const r = await c.readReply();
          assert.equal(r.error, errno, `type ${type} at ${offset}`);
          if (structured && i === 0) {
            assert.equal(r.type, 0x8002, 'ERROR_OFFSET');
            assert.equal(r.data.readBigUInt64BE(r.data.length - 8), 65536n + 512n);
          }
        }
        // Large reads that succeed through the pooled path, twice (the buffer is reused).
        const img = await readFile(fx.imagePath);
        for (const offset of [1048576, 2097152]) {
          c.sendRequest(NBD.CMD_READ, 50n, offset, 262144);
          const r = await c.readReply(262144);
          assert.equal(r.error, 0);
          assert.ok(r.data.equals(img.subarray(offset, offset + 262144)), `pooled read at ${offset}`);
        }
      } finally {
        c.destroy();
      }
    }
  });

  it('a device returning a short read yields EIO, never a desynchronised stream', async function () {
    // Only read() can come back short: hide readInto (the server looks for it per connection).
    const own = dev as unknown as { readInto?: unknown };
    own.readInto = undefined;
    dev.readFilter = (d) => d.subarray(0, d.length - 1);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      c.sendRequest(NBD.CMD_READ, 1n, 0, 4096);
      assert.equal((await c.readReply(4096)).error, NBD.EIO);
      dev.readFilter = (d) => d;
      c.sendRequest(NBD.CMD_READ, 2n, 0, 4096);
      const r = await c.readReply(4096);
      assert.equal(r.error, 0);
      assert.equal(r.data.length, 4096);
    } finally {
      c.destroy();
      delete own.readInto;
    }
  });

  it('stops reading a client that does not read its replies, then catches up', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      c.socket.pause(); // never read replies for now
      const N = 2000;
      const reqs = Buffer.concat(Array.from({ length: N }, (_, i) => RawNbdClient.request(NBD.CMD_READ, BigInt(i), (i % 128) * 65536, 65536)));
      c.write(reqs); // 2000 x 64 KiB = 125 MiB of replies
      let last = -1;
      await waitFor('the server to stop reading requests', () => {
        const stable = dev.started === last && dev.started > 0;
        last = dev.started;
        return stable;
      });
      // The budget is 4 MiB; the kernel's socket buffers hold a little more. Far from all 2000.
      assert.ok(dev.started < 400, `${dev.started} reads started with nobody reading replies`);
      c.socket.resume();
      const seen = new Set<bigint>();
      for (let i = 0; i < N; i++) {
        const r = await c.readReply(65536);
        assert.equal(r.error, 0);
        seen.add(r.handle);
      }
      assert.equal(seen.size, N);
    } finally {
      c.destroy();
    }
  });

  it('bounds the write payload held while the device is slow', async function () {
    const g = gate();
    dev.hook = (op) => (op === 'write' ? g.wait() : undefined);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      const payload = Buffer.alloc(256 * 1024, 0xcd);
      const N = 200; // 50 MiB
      for (let i = 0; i < N; i++) c.sendRequest(NBD.CMD_WRITE, BigInt(i), (i % 32) * payload.length, payload.length, { payload });
      let last = -1;
      await waitFor('the server to stop reading payload', () => {
        const stable = dev.pending === last && dev.pending > 0;
        last = dev.pending;
        return stable;
      });
      assert.ok(dev.pending <= 17, `${dev.pending} writes of 256 KiB held (budget 4 MiB)`);
      g.open();
      for (let i = 0; i < N; i++) assert.equal((await c.readReply()).error, 0);
    } finally {
      c.destroy();
    }
  });

  it('close() lets in-flight requests finish and their replies go out, then closes', async function () {
    const g = gate();
    dev.hook = (op) => (op === 'write' ? g.wait() : undefined);
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      for (let i = 0; i < 4; i++) c.sendRequest(NBD.CMD_WRITE, BigInt(i), i * 4096, 4096, { payload: Buffer.alloc(4096, 0xee) });
      await waitFor('four writes at the device', () => dev.pending === 4);
      let closed = false;
      const closing = fx.server.close().then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(closed, false, 'close() waits for the writes');
      g.open();
      for (let i = 0; i < 4; i++) assert.equal((await c.readReply()).error, 0);
      await closing;
      assert.equal(await c.waitClosed(), true);
      assert.equal(fx.server.clientCount, 0);
      await fx.server.close(); // idempotent
    } finally {
      c.destroy();
    }
  });

  it('clients that hang up while their requests wait for the shared memory budget are dropped at once, though nothing gives bytes back', async function () {
    const own = await startServer({
      size: SIZE,
      maxBlockSize: 1024 * 1024,
      tuning: { maxInflightBytes: 4 * 1024 * 1024, maxTotalInflightBytes: 4 * 1024 * 1024, connectionFloorBytes: 256 * 1024 },
      wrapDevice: (d) => (dev = new ForwardingDevice(d)),
    });
    const g = gate();
    dev.hook = (op) => (op === 'read' ? g.wait() : undefined);
    const holder = await RawNbdClient.connect(own.socketPath);
    const gone: RawNbdClient[] = [];
    try {
      await holder.open();
      // The holder's reads wait at the device, holding the whole shared budget.
      for (let i = 0; i < 4; i++) holder.sendRequest(NBD.CMD_READ, BigInt(i), i * 1024 * 1024, 1024 * 1024);
      await waitFor('the holder\'s reads at the device', () => dev.started === 4);
      for (let i = 0; i < 5; i++) {
        const c = await RawNbdClient.connect(own.socketPath);
        await c.open();
        c.socket.pause();
        c.sendRequest(NBD.CMD_READ, 1n, 0, 1024 * 1024); // waits for room that never comes
        gone.push(c);
      }
      await waitFor('six clients', () => own.server.clientCount === 6);
      await sleep(100);
      assert.equal(dev.started, 4, 'the waiting clients\' reads did not start');
      for (const c of gone) c.destroy();
      await waitFor('the server to drop the clients that hung up', () => own.server.clientCount === 1);
      assert.equal(dev.started, 4, 'none of their reads ran');
      g.open();
      for (let i = 0; i < 4; i++) assert.equal((await holder.readReply(1024 * 1024)).error, 0);
    } finally {
      g.open();
      holder.destroy();
      for (const c of gone) c.destroy();
      await own.stop();
    }
  });

  it('a client that vanishes mid-payload leaves no write behind', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    await c.open();
    const before = dev.started;
    c.sendRequest(NBD.CMD_WRITE, 1n, 0, 65536);
    c.write(Buffer.alloc(1000, 1));
    c.destroy();
    await waitFor('the server to drop the client', () => fx.server.clientCount === 0);
    assert.equal(dev.started, before);
  });
});
