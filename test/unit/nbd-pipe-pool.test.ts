/**
 * The pipe pool of spliced reads: empty pipes are reused, a pipe that may hold data is closed,
 * at most `max` are open, and when the kernel refuses a pipe (pipe-user-pages-soft, which root
 * never meets, so the refusal is injected in front of the real addon) the pool keeps the pipes
 * it has and asks for no more.
 */
import assert from 'node:assert/strict';
import { fstatSync } from 'node:fs';
import { nativeIo, type NativeIo } from '../../appliance/native/native-io.js';
import { PipePool, PIPE_BYTES, type Pipe } from '../../appliance/nbd/pipe-pool.js';
import { logger } from '../../appliance/logger.js';

/** The real addon, whose openPipe fails with EPERM once `allowed` pipes were opened. */
function limitedIo(io: NativeIo, allowed: number): NativeIo & { opened: number } {
  const limited = {
    opened: 0,
    pageSize: io.pageSize,
    openPipe(size: number): [number, number] {
      if (limited.opened >= allowed) throw Object.assign(new Error('F_SETPIPE_SZ: Operation not permitted'), { code: 'NATIVE_ERRNO', errno: 1 });
      limited.opened++;
      return io.openPipe(size);
    },
    closeFd: (fd: number) => io.closeFd(fd),
    spliceFile: io.spliceFile.bind(io),
    createSender: io.createSender.bind(io),
    sendBytes: io.sendBytes.bind(io),
    sendPipe: io.sendPipe.bind(io),
    setPaused: io.setPaused.bind(io),
    closeSender: io.closeSender.bind(io),
    createReceiver: io.createReceiver.bind(io),
    receiveToFile: io.receiveToFile.bind(io),
    stopStanding: io.stopStanding.bind(io),
    closeReceiver: io.closeReceiver.bind(io),
    pwriteAll: io.pwriteAll.bind(io),
    preadAll: io.preadAll.bind(io),
    copyFileRange: io.copyFileRange.bind(io),
    socketHungUp: io.socketHungUp.bind(io),
  };
  return limited;
}

const isOpen = (fd: number): boolean => {
  try {
    fstatSync(fd);
    return true;
  } catch {
    return false;
  }
};

describe('NBD pipe pool (spliced reads)', function () {
  let io: NativeIo;
  before(function () {
    const loaded = nativeIo();
    assert.ok(loaded !== null, 'the native addon is built (npm ci) and loads');
    io = loaded;
  });

  it('reuses empty pipes, closes discarded ones, and opens at most max', function () {
    const limited = limitedIo(io, 100);
    const pool = new PipePool(limited, 3, logger);
    const a = pool.acquire()!;
    const b = pool.acquire()!;
    const c = pool.acquire()!;
    assert.ok(a && b && c);
    assert.equal(pool.acquire(), null, 'max 3 open');
    pool.release(b);
    assert.equal(pool.acquire(), b, 'an empty pipe is reused');
    pool.discard(c);
    assert.equal(isOpen(c.readFd) || isOpen(c.writeFd), false, 'a discarded pipe is closed');
    const d = pool.acquire()!;
    assert.notEqual(d, c);
    assert.equal(limited.opened, 4);
    pool.close();
    for (const p of [a, b, d]) pool.release(p); // pipes in use come back after close: closed
    for (const p of [a, b, d]) assert.equal(isOpen(p.readFd), false);
    assert.equal(pool.acquire(), null, 'a closed pool gives no pipe');
  });

  it('when the kernel refuses a pipe, keeps the ones it has and asks for no more', function () {
    const limited = limitedIo(io, 2);
    const pool = new PipePool(limited, 64, logger);
    const got: Pipe[] = [pool.acquire()!, pool.acquire()!];
    assert.ok(got.every((p) => p !== null));
    assert.equal(pool.acquire(), null, 'refused: no pipe');
    assert.equal(pool.acquire(), null);
    pool.release(got[0]!);
    assert.equal(pool.acquire(), got[0], 'the pipes it has are still used');
    assert.equal(pool.acquire(), null);
    assert.equal(limited.opened, 2, 'no more pipes were asked for after the refusal');
    assert.ok(pool.fits(0, PIPE_BYTES) && !pool.fits(512, PIPE_BYTES) && pool.fits(512, PIPE_BYTES - io.pageSize), 'a pipe holds one page per slot');
    pool.close();
    for (const p of got) pool.release(p);
  });
});
