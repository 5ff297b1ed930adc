/**
 * Idle NBD connections cannot lock anyone out. 64 clients that finish the handshake and then
 * send nothing fill every ordinary slot: the gadget's own client still gets in through its
 * listener (reserved slots), the idle ones are dropped after the timeout with their address in
 * the log, and then ordinary clients get in again. The gadget's client is never dropped for
 * being idle. Clients stuck in the handshake are dropped and logged too.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { NBD, RawNbdClient, nbdUri, nbdinfoJson, startServer, type ServerFixture } from '../helpers/nbd-clients.js';

const MiB = 1024 * 1024;

interface LogLine {
  level: number;
  msg: string;
  peer?: string;
  [key: string]: unknown;
}

describe('NBD server: no lock-out by idle connections', function () {
  this.timeout(120_000);
  let fx: ServerFixture;
  let lines: LogLine[];
  let gadgetSocket: string;

  beforeEach(async function () {
    lines = [];
    const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
    fx = await startServer({
      size: 4 * MiB,
      logger,
      tuning: { handshakeTimeoutMs: 1500, firstRequestTimeoutMs: 1500, idleTimeoutMs: 2500 },
    });
    gadgetSocket = join(fx.dir.path, 'gadget-nbd.sock');
    await fx.server.listenUnix(gadgetSocket, { role: 'gadget' });
  });

  afterEach(async function () {
    await fx?.stop();
  });

  async function readOk(c: RawNbdClient, handle: bigint): Promise<void> {
    c.sendRequest(NBD.CMD_READ, handle, 0, 4096);
    const r = await c.readReply(4096);
    assert.equal(r.error, 0);
    assert.equal(r.handle, handle);
  }

  it("64 idle clients leave the gadget's slot free and are dropped and logged, then others get in", async function () {
    const idle: RawNbdClient[] = [];
    for (let i = 0; i < 64; i++) {
      const c = await RawNbdClient.connect(fx.socketPath);
      await c.open();
      idle.push(c);
    }
    // Every ordinary slot is taken: the 65th is refused at once.
    const refused = await RawNbdClient.connect(fx.socketPath);
    assert.equal(await refused.waitClosed(5000), true, 'the 65th ordinary client is refused');
    assert.ok(lines.some((l) => l.msg.includes('NBD connection refused') && l.peer?.startsWith('unix:')), 'the refusal is logged');

    // The gadget's client gets in meanwhile, through its own listener.
    const info = await nbdinfoJson(nbdUri(gadgetSocket));
    assert.equal(info.exports[0]!['export-size'], 4 * MiB);

    // The idle clients are dropped after the timeout, each one logged with its address.
    for (const c of idle) assert.equal(await c.waitClosed(20_000), true, 'an idle client is dropped');
    const dropped = lines.filter((l) => l.msg.includes('sent no request after its handshake'));
    assert.equal(dropped.length, 64);
    assert.ok(dropped.every((l) => l.peer === `unix:${fx.socketPath}` && typeof l.idleSeconds === 'number'));

    // And ordinary clients get in again.
    const again = await nbdinfoJson(fx.uri);
    assert.equal(again.exports[0]!['export-size'], 4 * MiB);
  });

  it("the gadget's client is never dropped for being idle; an ordinary one idle after requests is", async function () {
    const gadget = await RawNbdClient.connect(gadgetSocket);
    const ordinary = await RawNbdClient.connect(fx.socketPath);
    try {
      await gadget.open();
      await ordinary.open();
      await readOk(gadget, 1n);
      await readOk(ordinary, 1n);
      assert.equal(await ordinary.waitClosed(20_000), true, 'the idle ordinary client is dropped');
      assert.ok(lines.some((l) => l.msg === 'dropped an idle NBD client' && l.peer === `unix:${fx.socketPath}`));
      // Well past both timeouts, the gadget's connection still serves.
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(gadget.isClosed, false);
      await readOk(gadget, 2n);
    } finally {
      gadget.destroy();
      ordinary.destroy();
    }
  });

  it('a client that keeps sending requests is never dropped, however long it stays connected', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.open();
      // Requests keep coming, more slowly than the timeout would allow if it counted from the
      // handshake: the connection stays.
      for (let i = 0; i < 6; i++) {
        await readOk(c, BigInt(i));
        await new Promise((r) => setTimeout(r, 700));
      }
      assert.equal(c.isClosed, false);
    } finally {
      c.destroy();
    }
  });

  it('a client stuck in the handshake is dropped and logged with its address', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    await c.readExact(18); // the greeting; then it never answers
    assert.equal(await c.waitClosed(20_000), true);
    assert.ok(lines.some((l) => l.msg === 'handshake timed out' && l.peer === `unix:${fx.socketPath}`));
  });
});
