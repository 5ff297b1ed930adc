/**
 * Who can reach the NBD server locally, and who can take its socket: the socket is 0600 (or
 * 0660 for a configured group) whatever the umask, so user `nobody` cannot write to the disk;
 * a server (or a second daemon) whose socket path is a live server's socket refuses to start
 * and the first keeps serving, while a stale socket left by a crash is replaced; a TCP listener
 * off loopback is refused unless it is TLS-only or plain text is allowed explicitly.
 */
import assert from 'node:assert/strict';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import { NbdServer } from '../../appliance/nbd/server.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { Prng } from '../helpers/prng.js';
import { snapback, startServe, exited } from '../helpers/cli.js';
import { makeImage, makeTempDir, nbdUri, nbdinfoJson, runTool, type TempDir } from '../helpers/nbd-clients.js';

const MiB = 1024 * 1024;
const NOGROUP = 65534;

describe('NBD server: local sockets', function () {
  this.timeout(180_000);
  let dir: TempDir;
  let device: FileDevice;
  const servers: NbdServer[] = [];

  beforeEach(async function () {
    dir = await makeTempDir('snapback-nbd-sock-');
    // Others may traverse the directory: only the socket's own mode keeps them out.
    await chmod(dir.path, 0o711);
    const image = join(dir.path, 'disk.img');
    await makeImage(image, 4 * MiB);
    device = new FileDevice(image, {});
    await device.open();
  });

  afterEach(async function () {
    for (const s of servers.splice(0)) await s.close();
    await device.close();
    await dir.remove();
  });

  function newServer(): NbdServer {
    const s = new NbdServer({ device });
    servers.push(s);
    return s;
  }

  /** nbdinfo run as user nobody (group nogroup). */
  function nbdinfoAsNobody(socketPath: string): ReturnType<typeof runTool> {
    return runTool('runuser', ['-u', 'nobody', '--', 'nbdinfo', '--size', nbdUri(socketPath)], { allowFailure: true });
  }

  it('under umask 000 the socket is 0600 and user nobody cannot connect; with a group, its members can', async function () {
    const privatePath = join(dir.path, 'nbd.sock');
    const groupPath = join(dir.path, 'group.sock');
    const previous = process.umask(0o000);
    try {
      await newServer().listenUnix(privatePath);
      await newServer().listenUnix(groupPath, { gid: NOGROUP });
    } finally {
      process.umask(previous);
    }
    const st = await stat(privatePath);
    assert.equal(st.mode & 0o777, 0o600, `mode ${(st.mode & 0o777).toString(8)}`);
    const denied = await nbdinfoAsNobody(privatePath);
    assert.notEqual(denied.code, 0, 'nobody must not reach the disk');
    assert.match(denied.stderr, /Permission denied/);

    const gst = await stat(groupPath);
    assert.equal(gst.mode & 0o777, 0o660);
    assert.equal(gst.gid, NOGROUP);
    const allowed = await nbdinfoAsNobody(groupPath);
    assert.equal(allowed.code, 0, `a member of the socket's group connects: ${allowed.stderr}`);
    assert.equal(allowed.stdout.trim(), String(4 * MiB));
  });

  it('a server whose socket path is a live server socket refuses, and the first keeps serving; a stale socket is replaced', async function () {
    const path = join(dir.path, 'nbd.sock');
    await newServer().listenUnix(path);
    await assert.rejects(newServer().listenUnix(path), (e: unknown) => isSnapbackError(e, 'BUSY') && /another NBD server is listening on/.test(e.message));
    assert.equal((await nbdinfoJson(nbdUri(path))).exports[0]!['export-size'], 4 * MiB, 'the first server still serves');

    const stale = join(dir.path, 'stale.sock');
    // A socket file nobody listens on, as a crashed server leaves it.
    await runTool('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(stale)})`]);
    await newServer().listenUnix(stale);
    assert.equal((await nbdinfoJson(nbdUri(stale))).exports[0]!['export-size'], 4 * MiB);
  });

  it('a TCP listener off loopback is refused without TLS, and allowed on loopback', async function () {
    const s = newServer();
    for (const host of ['0.0.0.0', '::', '192.0.2.10']) {
      await assert.rejects(s.listenTcp(host, 0), (e: unknown) => isSnapbackError(e, 'BAD_ARGUMENT') && /without authentication.*--nbd-insecure/.test(e.message), host);
    }
    const at = await s.listenTcp('127.0.0.1', 0);
    assert.equal((await nbdinfoJson(`nbd://127.0.0.1:${at.port}/`)).exports[0]!['export-size'], 4 * MiB);
  });
});

describe('snapback serve: NBD sockets and listeners', function () {
  this.timeout(180_000);
  let root: string;
  let stateA: string;
  let stateB: string;

  before(function () {
    root = mkdtempSync(join(tmpdir(), 'snapback-nbd-daemon-'));
    const model = join(root, 'model.img');
    writeFileSync(model, new Prng(7).bytes(8 * MiB));
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
    for (const name of ['a', 'b']) {
      const r = snapback(['init', '--state-dir', join(root, name), '--model', model, '--disk', join(root, `${name}.img`)]);
      assert.equal(r.code, 0, r.stderr);
    }
    stateA = join(root, 'a');
    stateB = join(root, 'b');
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it("a second daemon whose --nbd-socket is a running daemon's socket refuses with a clear error and changes nothing; the first keeps serving", async function () {
    const first = await startServe(stateA);
    try {
      const sockA = join(stateA, 'nbd.sock');
      const mode = (await stat(sockA)).mode & 0o777;
      assert.equal(mode, 0o600);
      // The gadget's own socket: root only as well, and serving.
      const gadgetSock = join(stateA, 'gadget-nbd.sock');
      assert.equal((await stat(gadgetSock)).mode & 0o777, 0o600);
      assert.equal((await nbdinfoJson(`nbd+unix:///snapback?socket=${gadgetSock}`)).exports[0]!['export-size'], 8 * MiB);
      const logBefore = await stat(join(stateB, 'write-log.bin'));
      const second = snapback(['serve', '--state-dir', stateB, '--nbd-socket', sockA, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off']);
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, /another NBD server is listening on .*nbd\.sock/);
      assert.equal((await stat(join(stateB, 'write-log.bin'))).mtimeMs, logBefore.mtimeMs, 'the refused daemon wrote nothing');
      assert.equal((await nbdinfoJson(`nbd+unix:///snapback?socket=${sockA}`)).exports[0]!['export-size'], 8 * MiB, 'the first daemon still serves');
    } finally {
      first.kill('SIGTERM');
      await exited(first);
    }
  });

  it('--nbd-listen on a non-loopback address is refused without TLS or --nbd-insecure, before anything changes', async function () {
    const logBefore = await stat(join(stateB, 'write-log.bin'));
    const r = snapback(['serve', '--state-dir', stateB, '--nbd-listen', '0.0.0.0:0', '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /refusing to serve the disk on 0\.0\.0\.0 without authentication/);
    assert.equal((await stat(join(stateB, 'write-log.bin'))).mtimeMs, logBefore.mtimeMs);
    const psk = join(root, 'missing.psk');
    const t = snapback(['serve', '--state-dir', stateB, '--nbd-listen', '0.0.0.0:0', '--nbd-tls-psk', psk, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off']);
    assert.equal(t.code, 2, t.stderr);
    assert.match(t.stderr, /cannot read the NBD TLS PSK file .*missing\.psk/);
    await writeFile(join(root, 'bad.psk'), 'not a key\n');
    const b = snapback(['serve', '--state-dir', stateB, '--nbd-listen', '127.0.0.1:0', '--nbd-tls-psk', join(root, 'bad.psk'), '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off']);
    assert.equal(b.code, 2, b.stderr);
    assert.match(b.stderr, /bad\.psk line 1: expected identity:hexkey/);
  });
});
