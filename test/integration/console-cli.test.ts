/**
 * The console's command line: `snapback console serve` runs the console against a broker (one
 * without logins here: --mqtt mqtt://HOST:PORT alone works), `snapback console token create`
 * prints an API token as its last line that the running console accepts, and
 * `snapback console enroll-code create` prints a one-time code; with --http-tls-cert/--http-tls-key
 * it serves HTTPS that a client checks against the CA that signed the certificate.
 */

/** A CA and a certificate for 127.0.0.1 signed by it, made by openssl in `dir`. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const f = (n: string): string => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const run = async (args: string[]): Promise<void> => {
    const r = await runTool('openssl', args);
    assert.equal(r.code, 0, r.stderr);
  };
  await run(['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Snapback test console CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await writeFile(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await run(['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=snapback console']);
  await run(['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('server.ext')]);
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

/** GET over HTTPS with node's TLS client, trusting `ca` only (undefined: the system's CAs). */
function getHttps(url: string, headers: Record<string, string>, ca?: Buffer): Promise<{ status: number; authorized: boolean; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { headers, ...(ca ? { ca } : {}) }, (res) => {
      const authorized = (res.socket as TLSSocket).authorized;
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, authorized, body }));
    });
    req.on('error', reject);
  });
}
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, snapback } from '../helpers/cli.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { runTool } from '../helpers/nbd-clients.js';
import { ProtocolAppliance } from '../helpers/protocol-appliance.js';
import { waitFor } from '../helpers/wait.js';

describe('snapback console (the command line)', function () {
  this.timeout(120_000);
  let dir: string;
  let broker: Mosquitto;
  let child: ChildProcess | null = null;
  let appliance: ProtocolAppliance | null = null;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapback-console-cli-'));
    broker = await Mosquitto.start();
  });
  after(async () => {
    await appliance?.close();
    child?.kill('SIGTERM');
    await broker.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('console serve runs the console; token create prints a token (last line) that GET /api/appliances accepts', async () => {
    const data = join(dir, 'data');
    const tok = snapback(['console', 'token', 'create', '--data-dir', data, '--name', 'acceptance']);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim().split('\n').at(-1)!;
    assert.match(token, /^sbk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);

    child = spawn(process.execPath, [CLI, 'console', 'serve', '--data-dir', data, '--http-listen', '127.0.0.1:0', '--mqtt', broker.url], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'test' } });
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    const url = await waitFor('the console to listen', () => /console API on (http:\/\/\S+)/.exec(stdout)?.[1]);

    appliance = await ProtocolAppliance.connect({ url: broker.url, name: 'lab-01' });
    const list = await waitFor('lab-01 in the fleet', async () => {
      const res = await fetch(`${url}api/appliances`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.status, 200);
      const body = (await res.json()) as { name: string; online: boolean; mode: string; session: number; model: string }[];
      return body.length === 1 && body[0]!.online ? body : null;
    });
    assert.deepEqual(
      list.map((a) => [a.name, a.online, a.mode, a.session, a.model]),
      [['lab-01', true, 'frozen', 1, 'win11-lab']],
    );
    const noToken = await fetch(`${url}api/appliances`);
    assert.equal(noToken.status, 401);

    const code = snapback(['console', 'enroll-code', 'create', '--data-dir', data, '--name', 'lab-02']);
    assert.equal(code.code, 0, code.stderr);
    assert.match(code.stdout.trim().split('\n').at(-1)!, /^[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/);
    // This console keeps no broker files: redeeming says so instead of handing out an account the broker does not know.
    const redeem = await fetch(`${url}api/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: code.stdout.trim().split('\n').at(-1), name: 'lab-02' }) });
    assert.equal(redeem.status, 501);
    assert.match(((await redeem.json()) as { message: string }).message, /--broker-password-file/);
  });

  it('console serve --http-tls-cert/--http-tls-key serves HTTPS that a client verifies with the CA; without the CA it is refused', async () => {
    const data = join(dir, 'tls-data');
    const certs = await makeCertificates(await mkdtemp(join(dir, 'certs-')));
    const tok = snapback(['console', 'token', 'create', '--data-dir', data]);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim().split('\n').at(-1)!;
    // A broker of its own: the first test's appliance left retained state on the shared one, which this
    // console would list as soon as it subscribed, so an empty fleet would depend on timing.
    const ownBroker = await Mosquitto.start();
    const tls = spawn(process.execPath, [CLI, 'console', 'serve', '--data-dir', data, '--http-listen', '127.0.0.1:0', '--mqtt', ownBroker.url, '--http-tls-cert', certs.cert, '--http-tls-key', certs.key], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_ENV: 'test' },
    });
    try {
      let stdout = '';
      tls.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      const url = await waitFor('the console to listen', () => /console API on (https:\/\/\S+)/.exec(stdout)?.[1]);
      const ca = await readFile(certs.ca);
      const ok = await getHttps(`${url}api/appliances`, { authorization: `Bearer ${token}` }, ca);
      assert.deepEqual([ok.status, ok.authorized, JSON.parse(ok.body)], [200, true, []]);
      await assert.rejects(getHttps(`${url}api/appliances`, { authorization: `Bearer ${token}` }), /self[- ]signed|unable to (get|verify)/i);
      // Plain HTTP on the HTTPS port gets no API.
      await assert.rejects(fetch(`${url.replace('https:', 'http:')}api/appliances`, { headers: { authorization: `Bearer ${token}` } }));
    } finally {
      tls.kill('SIGTERM');
      await ownBroker.stop();
    }
  });

  it('a bad flag is a clear one-line error', () => {
    const r = snapback(['console', 'serve', '--data-dir', join(dir, 'x'), '--mqtt', 'http://nope']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /mqtt:\/\/, mqtts:\/\//);
    const half = snapback(['console', 'serve', '--data-dir', join(dir, 'x'), '--mqtt', broker.url, '--broker-password-file', join(dir, 'p')]);
    assert.equal(half.code, 2);
    assert.match(half.stderr, /--broker-password-file and --broker-acl-file go together/);
  });
});
