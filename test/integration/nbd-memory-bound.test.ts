/**
 * The NBD server's memory stays bounded whatever its clients do. The server runs in its own
 * process with the appliance's default limits; hostile clients written here with raw sockets
 * hold 64 connections open with 32 MiB requests they never finish (a WRITE whose payload
 * trickles in, READs whose replies are never read). The server's RSS stays under 300 MB, a real
 * client (nbdcopy) is still served correctly meanwhile, and the memory goes back near its
 * baseline once the hostile clients are gone.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { NBD, RawNbdClient, makeImage, makeTempDir, nbdUri, nbdcopy, spawnServerProcess, type ServerProcess, type TempDir } from '../helpers/nbd-clients.js';
import { waitFor } from '../helpers/wait.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;
const REQUEST = 32 * MiB;
// With the real client, the server's 64 connections are all taken.
const CLIENTS = 63;
const RSS_LIMIT = 300 * 1000 * 1000;
const mib = (n: number): string => `${(n / MiB).toFixed(0)} MiB`;

describe('NBD server: memory bounded under hostile clients', function () {
  this.timeout(300_000);
  let dir: TempDir;
  let image: Buffer;
  let imagePath: string;
  let socketPath: string;
  let server: ServerProcess;

  beforeEach(async function () {
    dir = await makeTempDir('snapback-nbd-mem-');
    imagePath = join(dir.path, 'disk.img');
    image = await makeImage(imagePath, SIZE);
    socketPath = join(dir.path, 'nbd.sock');
    server = await spawnServerProcess(imagePath, socketPath);
  });

  afterEach(async function () {
    await server?.stop();
    await dir?.remove();
  });

  /** Peak RSS sampled while `during` runs, plus the RSS at the end. */
  async function sampleRss(during: () => Promise<void>): Promise<number> {
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, (await server.stats()).memory.rss);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    try {
      await during();
    } finally {
      sampling = false;
      await sampler;
    }
    return Math.max(peak, (await server.stats()).memory.rss);
  }

  /** A real client copies the whole disk out and checks it, while the hostile ones hold on. */
  async function realClientStillServed(): Promise<void> {
    const out = join(dir.path, 'copy.img');
    const r = await nbdcopy(nbdUri(socketPath), out, ['--connections=1']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await readFile(out)).equals(image), 'nbdcopy read the disk correctly');
  }

  const chunk = Buffer.alloc(MiB, 0x5a);
  /** Sends `total` payload bytes (one shared buffer, no copies) as fast as the socket drains. */
  async function pump(c: RawNbdClient, total: number): Promise<void> {
    for (let sent = 0; sent < total && !c.isClosed; ) {
      const n = Math.min(chunk.length, total - sent);
      sent += n;
      if (c.socket.write(chunk.subarray(0, n))) continue;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          c.socket.off('drain', done).off('close', done);
          resolve();
        };
        c.socket.on('drain', done).on('close', done);
      });
    }
  }

  async function settleBack(baseline: number): Promise<number> {
    let rss = Number.POSITIVE_INFINITY;
    // The server gives memory back once the clients are gone (sampled after a GC).
    await waitFor(
      `the server's RSS to return near its baseline of ${mib(baseline)}`,
      async () => {
        rss = (await server.stats()).memory.rss;
        return rss < baseline + 64 * MiB;
      },
      30_000,
      200,
    ).catch(() => undefined); // the assertion after it says what was reached
    return rss;
  }

  /** The peak stayed under the limit, and once the hostile clients are gone the RSS comes back near its baseline. */
  async function assertBoundedAndBack(baseline: number, peak: number, clients: RawNbdClient[]): Promise<void> {
    if (process.env.NBD_MEM_REPORT) process.stderr.write(`baseline ${mib(baseline)} peak ${mib(peak)}\n`);
    assert.ok(peak < RSS_LIMIT, `peak RSS ${mib(peak)} (baseline ${mib(baseline)})`);
    for (const c of clients) c.destroy();
    await waitFor('the server to drop the hostile clients', async () => (await server.stats()).clients === 0);
    const after = await settleBack(baseline);
    if (process.env.NBD_MEM_REPORT) process.stderr.write(`after ${mib(after)}\n`);
    assert.ok(after < baseline + 64 * MiB, `RSS ${mib(after)} after the clients left (baseline ${mib(baseline)}, peak ${mib(peak)})`);
  }

  it('63 clients sending 32 MiB WRITE payloads slowly keep the RSS under 300 MB, and it comes back', async function () {
    const baseline = (await server.stats()).memory.rss;
    const clients: RawNbdClient[] = [];
    let trickle: NodeJS.Timeout | null = null;
    const peak = await sampleRss(async () => {
      for (let i = 0; i < CLIENTS; i++) {
        const c = await RawNbdClient.connect(socketPath);
        await c.open();
        c.socket.pause(); // never reads its replies
        // The header of a 32 MiB WRITE and all of its payload but the last 64 KiB, as fast as
        // the server takes it; then the rest trickles in, 512 bytes a second (never completing here).
        // FUA: such a payload is gathered in memory by the event loop and written only once
        // complete, the path whose memory is bounded here. A plain one would be spliced into
        // the file as it arrives by the payload receiver (nbd-spliced-writes.test.ts), which
        // holds none of it.
        c.write(RawNbdClient.request(NBD.CMD_WRITE, 1n, 0, REQUEST, NBD.CMD_FLAG_FUA));
        void pump(c, REQUEST - 64 * 1024);
        clients.push(c);
      }
      trickle = setInterval(() => {
        for (const c of clients) c.write(chunk.subarray(0, 512));
      }, 1000);
      await new Promise((r) => setTimeout(r, 3000));
      await realClientStillServed();
    });
    if (trickle) clearInterval(trickle);
    await assertBoundedAndBack(baseline, peak, clients);
    assert.deepEqual(await readFile(imagePath), image, 'no unfinished WRITE reached the disk');
  });

  it('63 clients whose 32 MiB READ replies are never read keep the RSS under 300 MB, and it comes back', async function () {
    const baseline = (await server.stats()).memory.rss;
    const clients: RawNbdClient[] = [];
    const peak = await sampleRss(async () => {
      for (let i = 0; i < CLIENTS; i++) {
        const c = await RawNbdClient.connect(socketPath);
        await c.open({ structured: i % 2 === 0 });
        c.socket.pause(); // never reads its replies
        for (let k = 0; k < 4; k++) c.write(RawNbdClient.request(NBD.CMD_READ, BigInt(k), (k % 2) * REQUEST, REQUEST));
        clients.push(c);
      }
      await new Promise((r) => setTimeout(r, 2000));
      await realClientStillServed();
    });
    await assertBoundedAndBack(baseline, peak, clients);
  });
});
