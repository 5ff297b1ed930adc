/**
 * The NBD server's reply writer (appliance/nbd/reply-writer.ts) on a real unix socket: 4 KiB
 * read replies are packed into slabs, and a slab is filled again only once the kernel has
 * taken all of it. The client side parses every reply and checks every byte, so a slab reused
 * while the socket still held part of it would show as a corrupted reply.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { ReplyWriter } from '../../appliance/nbd/reply-writer.js';
import { SIMPLE_REPLY_MAGIC, SIMPLE_REPLY_SIZE } from '../../appliance/nbd/protocol.js';
import { makeTempDir, type TempDir } from '../helpers/nbd-clients.js';
import { waitFor } from '../helpers/wait.js';

const DATA = 4096;
const REPLY = SIMPLE_REPLY_SIZE + DATA;

/** The payload of the read reply with handle `h`: every 32-bit word differs per handle. */
function payload(h: number): Buffer {
  const b = Buffer.allocUnsafe(DATA);
  for (let i = 0; i < DATA; i += 4) b.writeUInt32BE((h * 1024 + i / 4) >>> 0, i);
  return b;
}

interface Pair {
  server: net.Socket;
  client: net.Socket;
  /** Every byte the client received so far. */
  received: () => Buffer;
  close(): Promise<void>;
}

async function socketPair(dir: TempDir): Promise<Pair> {
  const path = join(dir.path, 'writer.sock');
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(path, r));
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.createConnection(path);
  const server = await accepted;
  const chunks: Buffer[] = [];
  client.on('data', (d: Buffer) => chunks.push(d));
  return {
    server,
    client,
    received: () => Buffer.concat(chunks),
    close: async () => {
      client.destroy();
      server.destroy();
      await new Promise<void>((r) => listener.close(() => r()));
    },
  };
}

/** Checks that `bytes` is exactly the simple read replies for handles 0..count-1, in order. */
function checkReplies(bytes: Buffer, count: number): void {
  assert.equal(bytes.length, count * REPLY);
  for (let h = 0; h < count; h++) {
    const at = h * REPLY;
    assert.equal(bytes.readUInt32BE(at), SIMPLE_REPLY_MAGIC, `reply ${h}: magic`);
    assert.equal(bytes.readUInt32BE(at + 4), 0, `reply ${h}: error`);
    assert.equal(bytes.readUInt32BE(at + 12), h, `reply ${h}: handle`);
    assert.ok(bytes.subarray(at + SIMPLE_REPLY_SIZE, at + REPLY).equals(payload(h)), `reply ${h}: data`);
  }
}

describe('NBD server: reply writer', function () {
  let dir: TempDir;
  let pair: Pair | null = null;

  before(async () => {
    dir = await makeTempDir('snapback-reply-writer-');
  });
  afterEach(async () => {
    await pair?.close();
    pair = null;
  });
  after(async () => {
    await dir.remove();
  });

  it('fills a written-out slab again instead of allocating one per 63 replies of 4 KiB, and every reply arrives intact', async function () {
    pair = await socketPair(dir);
    let batches = 0;
    const writer = new ReplyWriter(pair.server, () => batches++);
    const rounds = 40;
    const perRound = 32;
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < perRound; i++) {
        const h = round * perRound + i;
        writer.readData(0, h, h * DATA, payload(h), false);
      }
      writer.flushNow();
      // As at queue depth 32: the next burst of replies comes after the client has this one.
      await waitFor('the batch written', () => batches > round);
    }
    const total = rounds * perRound;
    const p = pair;
    await waitFor('every reply received', () => p.received().length >= total * REPLY);
    checkReplies(p.received(), total);
    // 1280 replies of 4112 bytes fill 20 slabs of 256 KiB; written ones are filled again.
    assert.ok(writer.slabsAllocated <= 2, `${writer.slabsAllocated} slabs allocated for ${total} replies`);
  });

  it('never refills a slab the socket still holds: replies queued behind a client that stopped reading arrive intact', async function () {
    pair = await socketPair(dir);
    pair.client.pause();
    const writer = new ReplyWriter(pair.server);
    const total = 2000; // 8 MiB: far more than the kernel's socket buffers hold
    for (let h = 0; h < total; h++) {
      writer.readData(0, h, h * DATA, payload(h), false);
      if (h % 32 === 31) writer.flushNow();
    }
    writer.flushNow();
    const server = pair.server;
    await waitFor('the socket holding replies it cannot send', () => server.writableLength > 0);
    // The slabs the socket holds were not reused: new ones were made while it held them.
    assert.ok(writer.slabsAllocated >= 4, `${writer.slabsAllocated} slabs allocated`);
    pair.client.resume();
    const p = pair;
    await waitFor('every reply received', () => p.received().length >= total * REPLY);
    checkReplies(p.received(), total);
  });
});
