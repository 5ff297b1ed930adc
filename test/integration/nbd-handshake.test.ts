/**
 * The NBD handshake against nbdinfo (libnbd) and, for what no real client sends, a raw
 * client: size, block sizes and flags; listing; INFO/GO/EXPORT_NAME/ABORT/unknown options;
 * handshake deadline.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import { NbdServer } from '../../appliance/nbd/index.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { NBD, RawNbdClient, makeImage, makeTempDir, nbdUri, nbdinfoJson, runTool, startServer, type ServerFixture } from '../helpers/nbd-clients.js';
import { waitFor } from '../helpers/wait.js';

const SIZE = 16 * 1024 * 1024;

describe('NBD server: handshake', function () {
  let fx: ServerFixture;

  before(async function () {
    fx = await startServer({ size: SIZE, description: 'Snapback test disk', maxBlockSize: 4 * 1024 * 1024 });
  });
  after(async function () {
    await fx?.stop();
  });

  it('nbdinfo shows the size, block sizes and flags of a writable export', async function () {
    const info = await nbdinfoJson(fx.uri);
    assert.match(info.protocol, /newstyle-fixed/);
    assert.equal(info.exports.length, 1);
    const e = info.exports[0]!;
    assert.equal(e['export-name'], 'snapback');
    assert.equal(e['export-size'], SIZE);
    assert.equal(e.description, 'Snapback test disk');
    assert.equal(e.is_read_only, false);
    assert.equal(e.can_flush, true);
    assert.equal(e.can_fua, true);
    assert.equal(e.can_trim, true);
    assert.equal(e.can_zero, true);
    assert.equal(e.can_multi_conn, true);
    assert.equal(e.can_df, true, 'structured replies were negotiated, so DF is offered');
    assert.equal(e.block_size_minimum, 1);
    assert.equal(e.block_size_preferred, 4096);
    assert.equal(e.block_size_maximum, 4 * 1024 * 1024);
  });

  it('nbdinfo --list lists the export by name', async function () {
    const info = await nbdinfoJson(fx.uri, ['--list']);
    assert.deepEqual(
      info.exports.map((e) => e['export-name']),
      ['snapback'],
    );
    assert.equal(info.exports[0]!.description, 'Snapback test disk');
  });

  it('selects the export by its name and by the empty (default) name; refuses others', async function () {
    const named = await nbdinfoJson(nbdUri(fx.socketPath, 'snapback'));
    assert.equal(named.exports[0]!['export-size'], SIZE);
    const r = await runTool('nbdinfo', [nbdUri(fx.socketPath, 'nope')], { allowFailure: true });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown|not available|nope/i);
  });

  it('answers NBD_OPT_INFO with INFO_EXPORT, NAME, DESCRIPTION and BLOCK_SIZE, then GO works', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      const flags = await c.handshake();
      assert.equal(flags, 3, 'FIXED_NEWSTYLE | NO_ZEROES');
      c.sendOption(NBD.OPT_INFO, RawNbdClient.infoData('snapback', [NBD.INFO_NAME, NBD.INFO_DESCRIPTION, NBD.INFO_BLOCK_SIZE]));
      const infos = new Map<number, Buffer>();
      for (;;) {
        const r = await c.readOptionReply();
        assert.equal(r.option, NBD.OPT_INFO);
        if (r.type === NBD.REP_ACK) break;
        assert.equal(r.type, NBD.REP_INFO);
        infos.set(r.data.readUInt16BE(0), r.data);
      }
      assert.equal(infos.get(NBD.INFO_EXPORT)!.readBigUInt64BE(2), BigInt(SIZE));
      assert.equal(infos.get(NBD.INFO_NAME)!.toString('utf8', 2), 'snapback');
      assert.equal(infos.get(NBD.INFO_DESCRIPTION)!.toString('utf8', 2), 'Snapback test disk');
      const bs = infos.get(NBD.INFO_BLOCK_SIZE)!;
      assert.deepEqual([bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)], [1, 4096, 4 * 1024 * 1024]);
      // Still haggling: GO now enters transmission; a read proves it.
      c.sendOption(NBD.OPT_GO, RawNbdClient.infoData(''));
      let r = await c.readOptionReply();
      while (r.type === NBD.REP_INFO) r = await c.readOptionReply();
      assert.equal(r.type, NBD.REP_ACK);
      c.sendRequest(NBD.CMD_READ, 7n, 0, 512);
      const reply = await c.readReply(512);
      assert.equal(reply.error, 0);
      assert.equal(reply.data.length, 512);
    } finally {
      c.destroy();
    }
  });

  it('refuses unknown and unsupported options with ERR_UNSUP, bad option data with ERR_INVALID, and keeps haggling', async function () {
    const c = await RawNbdClient.connect(fx.socketPath);
    try {
      await c.handshake();
      for (const opt of [NBD.OPT_STARTTLS, NBD.OPT_SET_META_CONTEXT, 4242]) {
        c.sendOption(opt);
        const r = await c.readOptionReply();
        assert.equal(r.option, opt);
        assert.equal(r.type, NBD.REP_ERR_UNSUP, `option ${opt}`);
      }
      c.sendOption(NBD.OPT_LIST, Buffer.from('junk'));
      assert.equal((await c.readOptionReply()).type, NBD.REP_ERR_INVALID);
      c.sendOption(NBD.OPT_STRUCTURED_REPLY, Buffer.from('x'));
      assert.equal((await c.readOptionReply()).type, NBD.REP_ERR_INVALID);
      c.sendOption(NBD.OPT_GO, Buffer.from([0, 0, 1, 0, 0])); // name length overruns
      assert.equal((await c.readOptionReply()).type, NBD.REP_ERR_INVALID);
      c.sendOption(NBD.OPT_GO, RawNbdClient.infoData('other'));
      assert.equal((await c.readOptionReply()).type, NBD.REP_ERR_UNKNOWN);
      c.sendOption(NBD.OPT_INFO, Buffer.alloc(20_000)); // over our option size limit: skipped
      assert.equal((await c.readOptionReply()).type, NBD.REP_ERR_TOO_BIG);
      c.sendOption(NBD.OPT_LIST);
      const server = await c.readOptionReply();
      assert.equal(server.type, NBD.REP_SERVER);
      assert.equal(server.data.toString('utf8', 4, 4 + server.data.readUInt32BE(0)), 'snapback');
      assert.equal((await c.readOptionReply()).type, NBD.REP_ACK);
      // NBD_OPT_ABORT: acknowledged, then the server closes.
      c.sendOption(NBD.OPT_ABORT);
      assert.equal((await c.readOptionReply()).type, NBD.REP_ACK);
      assert.equal(await c.waitClosed(), true);
    } finally {
      c.destroy();
    }
  });

  it('NBD_OPT_EXPORT_NAME: size and flags, with 124 zero bytes unless NO_ZEROES was agreed', async function () {
    for (const clientFlags of [1, 3]) {
      const c = await RawNbdClient.connect(fx.socketPath);
      try {
        await c.handshake(clientFlags);
        c.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from('snapback'));
        const reply = await c.readExact(10);
        assert.equal(reply.readBigUInt64BE(0), BigInt(SIZE));
        const flags = reply.readUInt16BE(8);
        assert.equal(flags & 1, 1, 'HAS_FLAGS');
        assert.equal(flags & (1 << 7), 0, 'no DF without structured replies');
        if (clientFlags === 1) assert.deepEqual(await c.readExact(124), Buffer.alloc(124));
        // Transmission: the next bytes are the simple reply to our read, nothing else.
        c.sendRequest(NBD.CMD_READ, 1n, 4096, 8);
        const r = await c.readReply(8);
        assert.equal(r.kind, 'simple');
        assert.equal(r.handle, 1n);
        assert.equal(r.error, 0);
      } finally {
        c.destroy();
      }
    }
  });

  it('NBD_OPT_EXPORT_NAME with an unknown name, unknown client flags, or a bad option magic: the server hangs up', async function () {
    const a = await RawNbdClient.connect(fx.socketPath);
    await a.handshake();
    a.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from('other'));
    assert.equal(await a.waitClosed(), true);

    const b = await RawNbdClient.connect(fx.socketPath);
    await b.handshake(0x80);
    assert.equal(await b.waitClosed(), true);

    const c = await RawNbdClient.connect(fx.socketPath);
    await c.handshake();
    c.write(Buffer.alloc(16, 0x41));
    assert.equal(await c.waitClosed(), true);
  });
});

describe('NBD server: read-only export and handshake deadline', function () {
  let fx: ServerFixture;

  before(async function () {
    fx = await startServer({ size: SIZE, readOnly: true, tuning: { handshakeTimeoutMs: 300 } });
  });
  after(async function () {
    await fx?.stop();
  });

  it('nbdinfo shows a read-only export without trim or zero', async function () {
    const e = (await nbdinfoJson(fx.uri)).exports[0]!;
    assert.equal(e.is_read_only, true);
    assert.equal(e.can_trim, false);
    assert.equal(e.can_zero, false);
    assert.equal(e.can_flush, true);
  });

  it('drops a client that connects and never finishes the handshake', async function () {
    const silent = await RawNbdClient.connect(fx.socketPath);
    const halfway = await RawNbdClient.connect(fx.socketPath);
    await halfway.handshake();
    halfway.write(Buffer.from('IHAVEOPT')); // half an option header, then nothing
    assert.equal(await silent.waitClosed(30_000), true, 'silent client dropped');
    assert.equal(await halfway.waitClosed(30_000), true, 'half-open client dropped');
    await waitFor('the server to forget both clients', () => fx.server.clientCount === 0);
  });
});

describe('NBD server: listeners and events', function () {
  it('replaces a stale unix socket, refuses to replace a regular file, serves TCP on loopback, reports clients', async function () {
    const dir = await makeTempDir();
    const imagePath = join(dir.path, 'disk.img');
    await makeImage(imagePath, SIZE);
    const device = new FileDevice(imagePath);
    await device.open();
    const server = new NbdServer({ device });
    try {
      // A socket file left behind by a process that died: bound, never unlinked.
      const stale = join(dir.path, 'stale.sock');
      await runTool('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)})`]);
      await server.listenUnix(stale);
      const regular = join(dir.path, 'not-a-socket');
      await writeFile(regular, 'precious');
      await assert.rejects(server.listenUnix(regular), (err: unknown) => isSnapbackError(err, 'BAD_ARGUMENT'));
      assert.equal(await readFile(regular, 'utf8'), 'precious');

      const { host, port } = await server.listenTcp('127.0.0.1', 0);
      assert.equal(host, '127.0.0.1');
      assert.ok(port > 0);

      const events: string[] = [];
      server.on('connect', ({ id }: { id: number }) => events.push(`connect ${id}`));
      server.on('disconnect', ({ id }: { id: number }) => events.push(`disconnect ${id}`));
      const overTcp = await nbdinfoJson(`nbd://127.0.0.1:${port}/`);
      assert.equal(overTcp.exports[0]!['export-size'], SIZE);
      const overUnix = await nbdinfoJson(nbdUri(stale));
      assert.equal(overUnix.exports[0]!['export-size'], SIZE);
      await waitFor('two connects and two disconnects', () => events.length === 4);
      assert.deepEqual(events, ['connect 1', 'disconnect 1', 'connect 2', 'disconnect 2']);
      assert.equal(server.clientCount, 0);
    } finally {
      await server.close();
      await server.close();
      await assert.rejects(server.listenTcp('127.0.0.1', 0), (err: unknown) => isSnapbackError(err, 'CLOSED'));
      await device.close();
      await dir.remove();
    }
  });
});
