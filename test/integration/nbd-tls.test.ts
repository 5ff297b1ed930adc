/**
 * NBD over TLS (NBD_OPT_STARTTLS) with real clients: libnbd's nbdinfo and nbdcopy (nbds://
 * URIs) and qemu-img (tls-creds-psk, tls-creds-x509), with a pre-shared key and with
 * certificates made here by openssl. A TLS listener serves nothing in plain text, and a wrong
 * key, an unknown CA or a missing client certificate gets nothing either. The daemon's
 * `--nbd-listen` with `--nbd-tls-psk` serves the same way.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile, copyFile } from 'node:fs/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NbdServer } from '../../appliance/nbd/server.js';
import { loadNbdTls } from '../../appliance/nbd/tls-config.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { Prng } from '../helpers/prng.js';
import { CLI, snapback, exited } from '../helpers/cli.js';
import { spawn } from 'node:child_process';
import { NBD, RawNbdClient, makeImage, makeTempDir, runTool, type TempDir } from '../helpers/nbd-clients.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

async function openssl(args: string[]): Promise<void> {
  await runTool('openssl', args);
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
async function makeCertificates(dir: string, name: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const p = (f: string): string => join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(['req', '-x509', ...ec, '-keyout', p('ca-key.pem'), '-out', p('ca-cert.pem'), '-subj', `/CN=${name} CA`, '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  for (const [who, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    await writeFile(p(`${who}.ext`), ext);
    await openssl(['req', ...ec, '-keyout', p(`${who}-key.pem`), '-out', p(`${who}.csr`), '-subj', `/CN=${name} ${who}`]);
    await openssl(['x509', '-req', '-in', p(`${who}.csr`), '-CA', p('ca-cert.pem'), '-CAkey', p('ca-key.pem'), '-CAcreateserial', '-out', p(`${who}-cert.pem`), '-days', '2', '-extfile', p(`${who}.ext`)]);
  }
}

describe('NBD server: TLS (NBD_OPT_STARTTLS) with real clients', function () {
  this.timeout(180_000);
  let dir: TempDir;
  let image: Buffer;
  let imagePath: string;
  let device: FileDevice;
  const servers: NbdServer[] = [];

  before(async function () {
    dir = await makeTempDir('snapback-nbd-tls-');
    imagePath = join(dir.path, 'disk.img');
    image = await makeImage(imagePath, SIZE);
    device = new FileDevice(imagePath, {});
    await device.open();
    await writeFile(join(dir.path, 'keys.psk'), `alice:${randomBytes(32).toString('hex')}\n`);
    await writeFile(join(dir.path, 'wrong.psk'), `alice:${randomBytes(32).toString('hex')}\n`);
    await makeCertificates(join(dir.path, 'pki'), 'Snapback test');
    await makeCertificates(join(dir.path, 'other'), 'Someone else');
  });

  after(async function () {
    for (const s of servers.splice(0)) await s.close();
    await device?.close();
    await dir?.remove();
  });

  async function tlsServer(files: Parameters<typeof loadNbdTls>[0]): Promise<number> {
    const s = new NbdServer({ device });
    servers.push(s);
    return (await s.listenTcp('127.0.0.1', 0, { tls: loadNbdTls(files)! })).port;
  }

  const nbdinfoSize = (uri: string): ReturnType<typeof runTool> => runTool('nbdinfo', ['--size', uri], { allowFailure: true });

  it('PSK: nbdinfo and nbdcopy connect with the key and move the data intact; wrong keys and plain text get nothing', async function () {
    const port = await tlsServer({ pskFile: join(dir.path, 'keys.psk') });
    const uri = (file: string): string => `nbds://alice@127.0.0.1:${port}/?tls-psk-file=${join(dir.path, file)}`;
    const ok = await nbdinfoSize(uri('keys.psk'));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), String(SIZE));

    // Write new data over TLS, then read it all back over TLS.
    const fresh = new Prng(99).bytes(SIZE);
    await writeFile(join(dir.path, 'fresh.img'), fresh);
    await runTool('nbdcopy', [join(dir.path, 'fresh.img'), uri('keys.psk')]);
    await runTool('nbdcopy', [uri('keys.psk'), join(dir.path, 'back.img')]);
    assert.ok((await readFile(join(dir.path, 'back.img'))).equals(fresh), 'the data came back intact');
    await device.write(0, image); // as it was, for the other tests

    const wrong = await nbdinfoSize(uri('wrong.psk'));
    assert.notEqual(wrong.code, 0, 'a wrong key is refused');
    const plain = await nbdinfoSize(`nbd://127.0.0.1:${port}/`);
    assert.notEqual(plain.code, 0, 'plain text is refused');
  });

  it('PSK: qemu-img reads the disk through tls-creds-psk', async function () {
    const port = await tlsServer({ pskFile: join(dir.path, 'keys.psk') });
    const credDir = join(dir.path, 'qemu-psk');
    await mkdir(credDir, { recursive: true });
    await copyFile(join(dir.path, 'keys.psk'), join(credDir, 'keys.psk'));
    const out = join(dir.path, 'qemu-copy.raw');
    await runTool('qemu-img', ['convert', '-O', 'raw', '--object', `tls-creds-psk,id=tls0,endpoint=client,dir=${credDir},username=alice`, '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},export=snapback,tls-creds=tls0`, out]);
    assert.ok((await readFile(out)).equals(image));
  });

  it('before STARTTLS a TLS listener answers every option with NBD_REP_ERR_TLS_REQD and tells nothing about the export', async function () {
    const port = await tlsServer({ pskFile: join(dir.path, 'keys.psk') });
    const c = await RawNbdClient.connectTcp('127.0.0.1', port);
    try {
      await c.handshake();
      for (const option of [NBD.OPT_LIST, NBD.OPT_STRUCTURED_REPLY, NBD.OPT_INFO, NBD.OPT_GO]) {
        c.sendOption(option, option === NBD.OPT_INFO || option === NBD.OPT_GO ? RawNbdClient.infoData('') : Buffer.alloc(0));
        const r = await c.readOptionReply();
        assert.equal(r.type, NBD.REP_ERR_TLS_REQD, `option ${option}`);
      }
      c.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from('snapback'));
      assert.equal(await c.waitClosed(), true, 'EXPORT_NAME before TLS ends the connection');
    } finally {
      c.destroy();
    }
  });

  it('certificates: nbdinfo and qemu-img trust the server through its CA; another CA is refused', async function () {
    const pki = join(dir.path, 'pki');
    const port = await tlsServer({ certFile: join(pki, 'server-cert.pem'), keyFile: join(pki, 'server-key.pem') });
    // libnbd and qemu read ca-cert.pem from a directory.
    const trust = join(dir.path, 'trust-ours');
    await mkdir(trust, { recursive: true });
    await copyFile(join(pki, 'ca-cert.pem'), join(trust, 'ca-cert.pem'));
    const ok = await nbdinfoSize(`nbds://127.0.0.1:${port}/?tls-certificates=${trust}`);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.trim(), String(SIZE));
    const q = await runTool('qemu-img', ['info', '--output=json', '--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${trust}`, '--image-opts', `driver=nbd,host=127.0.0.1,port=${port},tls-creds=tls0`]);
    assert.equal((JSON.parse(q.stdout) as { 'virtual-size': number })['virtual-size'], SIZE);

    const theirs = join(dir.path, 'trust-theirs');
    await mkdir(theirs, { recursive: true });
    await copyFile(join(dir.path, 'other', 'ca-cert.pem'), join(theirs, 'ca-cert.pem'));
    const bad = await nbdinfoSize(`nbds://127.0.0.1:${port}/?tls-certificates=${theirs}`);
    assert.notEqual(bad.code, 0, 'a server certificate from an unknown CA is not trusted');
  });

  it('certificates with a client CA: a client certificate signed by it gets in, a client without one does not', async function () {
    const pki = join(dir.path, 'pki');
    const port = await tlsServer({ certFile: join(pki, 'server-cert.pem'), keyFile: join(pki, 'server-key.pem'), caFile: join(pki, 'ca-cert.pem') });
    const withCert = join(dir.path, 'client-with-cert');
    await mkdir(withCert, { recursive: true });
    for (const f of ['ca-cert.pem', 'client-cert.pem', 'client-key.pem']) await copyFile(join(pki, f), join(withCert, f));
    const ok = await nbdinfoSize(`nbds://127.0.0.1:${port}/?tls-certificates=${withCert}`);
    assert.equal(ok.code, 0, ok.stderr);
    const without = join(dir.path, 'client-without-cert');
    await mkdir(without, { recursive: true });
    await copyFile(join(pki, 'ca-cert.pem'), join(without, 'ca-cert.pem'));
    const refused = await nbdinfoSize(`nbds://127.0.0.1:${port}/?tls-certificates=${without}`);
    assert.notEqual(refused.code, 0, 'no client certificate, no disk');
  });
});

describe('snapback serve --nbd-listen with --nbd-tls-psk', function () {
  this.timeout(180_000);
  let root: string;

  before(function () {
    root = mkdtempSync(join(tmpdir(), 'snapback-nbd-tls-daemon-'));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('serves NBD over TLS only', async function () {
    const model = join(root, 'model.img');
    writeFileSync(model, new Prng(3).bytes(4 * MiB));
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
    const state = join(root, 'state');
    assert.equal(snapback(['init', '--state-dir', state, '--model', model, '--disk', join(root, 'disk.img')]).code, 0);
    const psk = join(root, 'keys.psk');
    writeFileSync(psk, `admin:${randomBytes(32).toString('hex')}\n`);
    const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', state, '--nbd-listen', '127.0.0.1:0', '--nbd-tls-psk', psk, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off'], {
      env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      let port = 0;
      for (let i = 0; i < 600 && port === 0; i++) {
        const m = /nbd:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) port = Number(m[1]);
        else await new Promise((r) => setTimeout(r, 50));
        if (child.exitCode !== null) throw new Error(`serve exited: ${out}`);
      }
      assert.ok(port > 0, `serve printed its TCP address: ${out}`);
      const ok = await runTool('nbdinfo', ['--size', `nbds://admin@127.0.0.1:${port}/snapback?tls-psk-file=${psk}`]);
      assert.equal(ok.stdout.trim(), String(4 * MiB));
      const plain = await runTool('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/snapback`], { allowFailure: true });
      assert.notEqual(plain.code, 0);
    } finally {
      child.kill('SIGTERM');
      await exited(child);
    }
  });
});
