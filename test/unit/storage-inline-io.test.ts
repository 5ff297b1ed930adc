/**
 * Inline I/O behind FileDevice: small reads and plain writes are done synchronously while
 * they are fast, with the same bytes and errors as the other paths; slow calls turn it off so
 * that the event loop stops waiting for the disk, and requests go to the batched worker; the
 * back-off doubles while the disk stays slow and resets once it is fast again. Real files and
 * the real worker; only time is the test's (a clock that moves by a set step each time it is
 * read, so a call "takes" as long as the test says).
 */
import assert from 'node:assert/strict';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock, TimerHandle } from '../../appliance/clock.js';
import { BatchedIo } from '../../appliance/storage/batched-io.js';
import { FileDevice, fileSystemInRam } from '../../appliance/storage/file-device.js';
import { InlineIo } from '../../appliance/storage/inline-io.js';
import { nativeIo } from '../../appliance/native/native-io.js';
import { isSnapbackError } from '../../appliance/errors.js';
import { Prng } from '../helpers/prng.js';

const KiB = 1024;

/** Time moves by `step` ms every time it is read: an inline call then takes about one step. */
class SteppingClock implements Clock {
  t = 1000;
  step = 0;
  now(): number {
    this.t += this.step;
    return this.t;
  }
  setTimeout(): TimerHandle {
    throw new Error('InlineIo sets no timers');
  }
  clearTimeout(): void {}
}

// Every case twice: through the native addon's pread/pwrite (the default where it is built) and
// through Node's readSync/writeSync (where it is not).
for (const native of [true, false]) describe(`inline I/O (${native ? "the native addon's pread/pwrite" : "Node's readSync/writeSync"})`, function () {
  const nativeOption = native ? {} : { native: null };
  before(function () {
    if (native) assert.ok(nativeIo() !== null, 'the addon is built by npm ci and loads');
  });
  this.timeout(60_000);
  let dir: string;
  const closers: Array<() => Promise<void>> = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-inline-'));
  });
  afterEach(async () => {
    for (const close of closers.splice(0)) await close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function device(options: { size?: number; clock?: Clock; fileBytes?: number } = {}): Promise<{ dev: FileDevice; inline: InlineIo; io: BatchedIo; path: string }> {
    const path = join(dir, 'disk.img');
    writeFileSync(path, Buffer.alloc(options.fileBytes ?? 1 << 20));
    // With the test's clock, the thread's real wait for a CPU is not the test's: it stays 0.
    const inline = new InlineIo({ ...nativeOption, ...(options.clock ? { clock: options.clock, runQueueWait: () => 0 } : {}) });
    // loneRequests: a single request that is not done inline is seen in the worker's stats.
    const io = new BatchedIo({ loneRequests: true });
    const dev = new FileDevice(path, { inlineIo: inline, batchedIo: io, ...(options.size ? { size: options.size } : {}) });
    await dev.open();
    closers.push(async () => {
      await dev.close();
      await io.close();
    });
    return { dev, inline, io, path };
  }

  it('does small reads and plain writes inline, with the bytes the file holds; large and FUA requests take their own paths', async () => {
    const { dev, inline, io, path } = await device();
    const data = new Prng(11).bytes(64 * 4 * KiB);
    // Writes settle before the call returns: nothing is left for another thread.
    await Promise.all(Array.from({ length: 64 }, (_, i) => dev.write(i * 8 * KiB, data.subarray(i * 4 * KiB, (i + 1) * 4 * KiB))));
    assert.equal(inline.stats.calls, 64);
    const file = readFileSync(path);
    for (let i = 0; i < 64; i++) assert.ok(file.subarray(i * 8 * KiB, i * 8 * KiB + 4 * KiB).equals(data.subarray(i * 4 * KiB, (i + 1) * 4 * KiB)), `block ${i} on disk`);
    const back = await Promise.all(Array.from({ length: 64 }, (_, i) => dev.read(i * 8 * KiB, 4 * KiB)));
    for (let i = 0; i < 64; i++) assert.ok(back[i]!.equals(data.subarray(i * 4 * KiB, (i + 1) * 4 * KiB)), `block ${i} read back`);
    assert.equal(inline.stats.calls, 128);
    assert.equal(io.stats.requests, 0, 'the worker was not needed');

    // A request above maxBytes, and a FUA write, are not inline (and still correct).
    const big = new Prng(12).bytes(inline.maxBytes * 2);
    await dev.write(512 * KiB, big);
    await dev.write(4 * KiB, Buffer.alloc(4 * KiB, 9), { fua: true });
    assert.ok((await dev.read(512 * KiB, big.length)).equals(big));
    assert.equal(inline.stats.calls, 128);
    assert.ok(readFileSync(path).subarray(4 * KiB, 8 * KiB).every((b) => b === 9));
  });

  it('reads zeroes past the end of a file shorter than the device', async () => {
    const { dev, inline } = await device({ fileBytes: 6 * KiB, size: 64 * KiB });
    writeFileSync(join(dir, 'disk.img'), Buffer.alloc(6 * KiB, 0xab));
    const buf = Buffer.alloc(8 * KiB, 0xff);
    await dev.readInto(buf, 0);
    assert.equal(inline.stats.calls, 1);
    assert.ok(buf.subarray(0, 6 * KiB).every((b) => b === 0xab));
    assert.ok(buf.subarray(6 * KiB).every((b) => b === 0), 'the sparse tail reads as zeroes');
  });

  it('turns itself off after two slow calls: the next requests go to the worker, not the event loop, until the back-off ends', async () => {
    const clock = new SteppingClock();
    const { dev, inline, io } = await device({ clock });
    const buf = Buffer.alloc(4 * KiB);
    await dev.readInto(buf, 0);
    assert.equal(inline.stats.calls, 1);

    clock.step = 1; // every call now takes about 1 ms: the disk is being read
    await dev.readInto(buf, 0);
    assert.deepEqual([inline.stats.slow, inline.stats.off], [1, 0], 'one slow call may be preemption: still on');
    await dev.readInto(buf, 4 * KiB);
    assert.deepEqual([inline.stats.slow, inline.stats.off], [2, 1], 'a second one turns it off');

    clock.step = 0;
    await dev.readInto(buf, 8 * KiB);
    await dev.write(8 * KiB, Buffer.alloc(4 * KiB, 3));
    assert.equal(inline.stats.calls, 3, 'nothing more done inline');
    assert.equal(io.stats.requests, 2, 'the worker did both');
    await dev.readInto(buf, 8 * KiB);
    assert.ok(buf.every((b) => b === 3));

    clock.t += 1000; // the first back-off is one second
    await dev.readInto(buf, 8 * KiB);
    assert.equal(inline.stats.calls, 4, 'inline again once the back-off is over');
    assert.ok(buf.every((b) => b === 3));
  });

  it('doubles the back-off while the disk stays slow, resets it after 256 fast calls, and forgives a lone slow call', () => {
    const clock = new SteppingClock();
    const inline = new InlineIo({ ...nativeOption, clock, runQueueWait: () => 0, backoffMs: 1000, maxBackoffMs: 4000 });
    const path = join(dir, 'f.img');
    writeFileSync(path, Buffer.alloc(64 * KiB));
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(4 * KiB);
      const call = (step: number): void => {
        clock.step = step;
        inline.read(fd, buf, 0);
        clock.step = 0;
      };
      /** How long inline I/O stays off from now (ms), asking every 250 ms. */
      const offFor = (): number => {
        let waited = 0;
        while (!inline.allows(4 * KiB)) {
          clock.t += 250;
          waited += 250;
        }
        return waited;
      };
      // A lone slow call among fast ones never turns it off.
      for (let round = 0; round < 3; round++) {
        call(1);
        for (let i = 0; i < 40; i++) call(0);
      }
      assert.equal(inline.stats.off, 0);
      assert.equal(offFor(), 0);

      call(1);
      call(1);
      assert.equal(offFor(), 1000);
      call(1); // one slow call after the back-off: a preemption as likely as the disk
      assert.equal(offFor(), 0);
      call(1); // still slow after the back-off: twice as long
      assert.equal(offFor(), 2000);
      call(1);
      call(1);
      assert.equal(offFor(), 4000);
      call(1);
      call(1);
      assert.equal(offFor(), 4000, 'capped at maxBackoffMs');
      for (let i = 0; i < 256; i++) call(0);
      call(1);
      call(1);
      assert.equal(offFor(), 1000, 'fast again for long enough: the back-off starts over');
      assert.equal(inline.stats.off, 5);
      // Requests larger than maxBytes, and empty ones, are never inline.
      assert.equal(inline.allows(inline.maxBytes + 1), false);
      assert.equal(inline.allows(0), false);
    } finally {
      closeSync(fd);
    }
  });

  it('forgives a slow call whose thread was waiting for a CPU: preemption does not turn inline I/O off, a slow disk still does', () => {
    const clock = new SteppingClock();
    /** The thread's total run-queue wait (ms), as the kernel would count it. */
    let waited = 0;
    const inline = new InlineIo({ ...nativeOption, clock, runQueueWait: () => waited });
    const path = join(dir, 'f.img');
    writeFileSync(path, Buffer.alloc(64 * KiB));
    const fd = openSync(path, 'r');
    try {
      const buf = Buffer.alloc(4 * KiB);
      /** One inline call taking `ms` (the clock is read twice), `preemptedMs` of it spent waiting for a CPU. */
      const call = (ms: number, preemptedMs: number): void => {
        waited += preemptedMs; // counted by the kernel while the call runs, so before it ends
        clock.step = ms;
        inline.read(fd, buf, 0);
        clock.step = 0;
      };
      // Slow calls in a row, each mostly preempted: inline I/O stays on.
      for (let i = 0; i < 10; i++) call(1, 0.9);
      assert.deepEqual([inline.stats.slow, inline.stats.preempted, inline.stats.off], [10, 9, 0], 'the first slow call is a strike; the nine after it are forgiven');
      assert.equal(inline.allows(4 * KiB), true);
      // Preemption a little under half the call's time is not enough: a disk wait, off.
      call(1, 0.4);
      assert.deepEqual([inline.stats.slow, inline.stats.preempted, inline.stats.off], [11, 9, 1]);
      assert.equal(inline.allows(4 * KiB), false);
      clock.t += 1000;
      assert.equal(inline.allows(4 * KiB), true, 'on again after the first back-off');
      // A slow disk, the thread never preempted: two slow calls turn it off, as without the check.
      for (let i = 0; i < 40; i++) call(0, 0);
      call(1, 0);
      call(1, 0);
      assert.deepEqual([inline.stats.preempted, inline.stats.off], [9, 2]);
      assert.equal(inline.allows(4 * KiB), false);
    } finally {
      closeSync(fd);
    }
  });

  it('gives every FileDevice its own governor by default: a slow disk behind one leaves another inline', async () => {
    const paths = [join(dir, 'a.img'), join(dir, 'b.img')];
    for (const p of paths) writeFileSync(p, Buffer.alloc(64 * KiB));
    const devs = paths.map((p) => new FileDevice(p, { batchedIo: null }));
    for (const d of devs) {
      await d.open();
      closers.push(() => d.close());
    }
    const [a, b] = devs.map((d) => d.inlineIo);
    assert.ok(a && b, 'inline I/O is on by default');
    assert.notEqual(a, b, 'one governor per device, not one per process');
    await devs[1]!.readInto(Buffer.alloc(4 * KiB), 0);
    assert.deepEqual([a.stats.calls, b.stats.calls], [0, 1], 'each counts (and times) its own calls only');
  });

  it('does small FUA writes inline only to a file in RAM (tmpfs), where they are durable when written', async () => {
    // /dev/shm is a tmpfs on Debian (the NBD benchmark uses it too); the test needs one.
    assert.equal(await fileSystemInRam('/dev/shm'), true, '/dev/shm is a tmpfs');
    const ramDir = mkdtempSync(join('/dev/shm', 'snapback-inline-'));
    closers.push(async () => rmSync(ramDir, { recursive: true, force: true }));
    const fuaInline = async (path: string): Promise<number> => {
      writeFileSync(path, Buffer.alloc(64 * KiB));
      const inline = new InlineIo(nativeOption);
      const dev = new FileDevice(path, { inlineIo: inline, batchedIo: null });
      await dev.open();
      try {
        for (let i = 0; i < 4; i++) await dev.write(i * 512, Buffer.alloc(512, i + 1), { fua: true });
        const file = readFileSync(path);
        for (let i = 0; i < 4; i++) assert.ok(file.subarray(i * 512, (i + 1) * 512).every((b) => b === i + 1), `sector ${i} of ${path}`);
      } finally {
        await dev.close();
      }
      return inline.stats.calls;
    };
    // The first FUA write opens the O_DSYNC descriptor (through the pool); the next three are inline.
    assert.equal(await fuaInline(join(ramDir, 'log.img')), 3);
    // On a file system on a disk, none is inline (this machine's temporary directory may be either).
    const onDisk = !(await fileSystemInRam(dir));
    assert.equal(await fuaInline(join(dir, 'log.img')), onDisk ? 0 : 3);
    // A device node lives on /dev (a tmpfs), the disk behind it does not: never inline.
    assert.equal(await fileSystemInRam('/dev/null'), true);
    const nodeInline = new InlineIo(nativeOption);
    const nodeDev = new FileDevice('/dev/null', { inlineIo: nodeInline, batchedIo: null, size: 64 * KiB });
    await nodeDev.open();
    closers.push(() => nodeDev.close());
    await nodeDev.write(0, Buffer.alloc(512), { fua: true });
    await nodeDev.write(512, Buffer.alloc(512), { fua: true });
    assert.equal(nodeInline.stats.calls, 0, 'no FUA write to a device node is inline');
  });

  it('rejects a failed inline request with a storage error naming the file, offset and errno', async () => {
    const path = join(dir, 'a-directory');
    mkdirSync(path);
    const inline = new InlineIo(nativeOption);
    const dev = new FileDevice(path, { readOnly: true, size: 64 * KiB, inlineIo: inline, batchedIo: null });
    await dev.open();
    closers.push(() => dev.close());
    await assert.rejects(dev.readInto(Buffer.alloc(4 * KiB), 8192), (err: unknown) => {
      assert.ok(isSnapbackError(err, 'IO_ERROR'), String(err));
      assert.match(err.message, /reading .*a-directory at 8192/);
      assert.equal(err.details?.errno, 'EISDIR');
      return true;
    });
    assert.equal(inline.stats.calls, 1, 'the failed call was inline (and timed)');

    // A write through a descriptor opened read-only: EBADF, thrown as writeSync throws it.
    const file = join(dir, 'ro.img');
    writeFileSync(file, Buffer.alloc(16 * KiB));
    const fd = openSync(file, 'r');
    try {
      assert.throws(() => inline.write(fd, Buffer.alloc(4 * KiB), 0), { code: 'EBADF' });
    } finally {
      closeSync(fd);
    }
  });
});
