/**
 * A real nginx (Debian's nginx-light) for the model-URL tests, started as the test's own
 * process on a free loopback port, with its own configuration, logs and temp paths under a
 * temporary directory (no system configuration, no root paths; single-process mode, so it never
 * switches user and reads the test's private files).
 *
 * Locations, all serving files from `root`:
 *   /files/NAME      plain, with Range support
 *   /slow/NAME       the same, at `rateLimit` bytes per second (limit_rate)
 *   /norange/NAME    Range requests answered with the whole file (max_ranges 0)
 *   /redirect/NAME   302 to /files/NAME;  /redirect2/NAME   301 to /redirect/NAME (two hops)
 *   /proxy/PATH      with `upstream`: a reverse proxy to UPSTREAM/PATH at `rateLimit` bytes per
 *                    second per connection (a slow link in front of an HTTP server, e.g. the console)
 * With `tls`, the server speaks only https, with a certificate for 127.0.0.1 signed by a CA made
 * here by openssl (`caFile`).
 *
 * `stop()` kills it mid-transfer (SIGKILL: connections drop, as when the network goes away);
 * `start()` starts it again on the same port, optionally with another root.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { runTool } from './nbd-clients.js';
import { sleep, waitFor } from './wait.js';

const NGINX = '/usr/sbin/nginx';

export interface NginxOptions {
  /** Where the served files are. */
  root: string;
  /** Bytes per second of the /slow/ location (default 256 KiB/s). */
  rateLimit?: number;
  tls?: boolean;
  /** The base URL (http://HOST:PORT) that /proxy/ forwards to. */
  upstream?: string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** A CA and a server certificate for 127.0.0.1 signed by it, in `dir`. */
async function makeCertificates(dir: string): Promise<void> {
  const p = (f: string): string => join(dir, f);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await runTool('openssl', ['req', '-x509', ...ec, '-keyout', p('ca-key.pem'), '-out', p('ca-cert.pem'), '-subj', '/CN=snapback test CA', '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await writeFile(p('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await runTool('openssl', ['req', ...ec, '-keyout', p('server-key.pem'), '-out', p('server.csr'), '-subj', '/CN=snapback test server']);
  await runTool('openssl', ['x509', '-req', '-in', p('server.csr'), '-CA', p('ca-cert.pem'), '-CAkey', p('ca-key.pem'), '-CAcreateserial', '-out', p('server-cert.pem'), '-days', '2', '-extfile', p('server.ext')]);
}

export class Nginx {
  port = 0;
  private proc: ChildProcess | null = null;
  private root: string;
  private rateLimit: number;
  private readonly tls: boolean;
  private readonly upstream: string | null;
  private stderr = '';

  private constructor(
    private readonly prefix: string,
    options: NginxOptions,
  ) {
    this.root = options.root;
    this.rateLimit = options.rateLimit ?? 256 * 1024;
    this.tls = options.tls ?? false;
    this.upstream = options.upstream ?? null;
  }

  /** Starts nginx with its prefix (config, logs, temp files) in `prefix`. */
  static async start(prefix: string, options: NginxOptions): Promise<Nginx> {
    const n = new Nginx(prefix, options);
    await mkdir(join(prefix, 'tmp'), { recursive: true });
    if (n.tls) await makeCertificates(prefix);
    await n.start();
    return n;
  }

  /** The CA that signed the TLS certificate (PEM). */
  get caFile(): string {
    return join(this.prefix, 'ca-cert.pem');
  }

  url(location: 'files' | 'slow' | 'norange' | 'redirect' | 'redirect2' | 'proxy', name: string): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}/${location}/${name}`;
  }

  /** The requests served so far (status, Range header or null, path), from nginx's access log. */
  async requests(): Promise<Array<{ status: number; range: string | null; uri: string }>> {
    const text = await readFile(join(this.prefix, 'access.log'), 'utf8').catch(() => '');
    return text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((l) => {
        const m = /^(\d+) "([^"]*)" (.*)$/.exec(l);
        if (!m) throw new Error(`unexpected nginx access log line: ${l}`);
        return { status: Number(m[1]), range: m[2] === '-' || m[2] === '' ? null : m[2]!, uri: m[3]! };
      });
  }

  get running(): boolean {
    return this.proc !== null;
  }

  private config(): string {
    const p = (f: string): string => join(this.prefix, f);
    const listen = this.tls ? `listen 127.0.0.1:${this.port} ssl; ssl_certificate ${p('server-cert.pem')}; ssl_certificate_key ${p('server-key.pem')};` : `listen 127.0.0.1:${this.port};`;
    return `daemon off;
master_process off;
pid ${p('nginx.pid')};
error_log ${p('error.log')} info;
events { worker_connections 256; }
http {
  log_format ranges '$status "$http_range" $request_uri';
  access_log ${p('access.log')} ranges;
  client_body_temp_path ${p('tmp/body')};
  proxy_temp_path ${p('tmp/proxy')};
  fastcgi_temp_path ${p('tmp/fastcgi')};
  uwsgi_temp_path ${p('tmp/uwsgi')};
  scgi_temp_path ${p('tmp/scgi')};
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 100000;
  server {
    ${listen}
    server_name localhost;
    location /files/ { alias ${this.root}/; }
    location /slow/ { alias ${this.root}/; limit_rate ${this.rateLimit}; }
    location /norange/ { alias ${this.root}/; max_ranges 0; }
    location /redirect/ { rewrite ^/redirect/(.*)$ /files/$1 redirect; }
    location /redirect2/ { rewrite ^/redirect2/(.*)$ /redirect/$1 permanent; }
${this.upstream !== null ? `    location /proxy/ { proxy_pass ${this.upstream.replace(/\/$/, '')}/; limit_rate ${this.rateLimit}; }\n` : ''}  }
}
`;
  }

  /** Starts nginx (again), on the same port; `root` changes what it serves, `rateLimit` the /slow/ rate. */
  async start(root?: string, rateLimit?: number): Promise<void> {
    if (this.proc) throw new Error('nginx is already running');
    if (root) this.root = root;
    if (rateLimit) this.rateLimit = rateLimit;
    for (let tries = 0; ; tries++) {
      if (this.port === 0) this.port = await freePort();
      await writeFile(join(this.prefix, 'nginx.conf'), this.config());
      const proc = spawn(NGINX, ['-p', this.prefix, '-e', join(this.prefix, 'error.log'), '-c', join(this.prefix, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
      this.stderr = '';
      proc.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
      let exited: number | null = null;
      const spawned = new Promise<void>((resolve, reject) => {
        proc.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT' ? new Error(`${NGINX} is not installed: install the test tools with test/setup/install-test-tools.sh (Debian: nginx-light)`) : e));
        proc.once('spawn', () => resolve());
      });
      proc.once('exit', (code) => (exited = code ?? -1));
      await spawned;
      this.proc = proc;
      const up = await waitFor(
        `nginx to listen on 127.0.0.1:${this.port}`,
        async () => {
          if (exited !== null) return 'exited';
          return (await canConnect(this.port)) ? 'up' : null;
        },
        20_000,
        20,
      );
      if (up === 'up') return;
      this.proc = null;
      const log = await readFile(join(this.prefix, 'error.log'), 'utf8').catch(() => '');
      if (tries < 5 && /Address already in use/.test(this.stderr + log)) {
        this.port = 0;
        continue;
      }
      throw new Error(`nginx exited (${exited}) at start:\n${this.stderr}\n${log.slice(-2000)}`);
    }
  }

  /** Kills nginx at once (connections drop mid-transfer); start() brings it back. */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = null;
    const gone = new Promise<void>((resolve) => (proc.exitCode !== null || proc.signalCode !== null ? resolve() : proc.once('exit', () => resolve())));
    proc.kill('SIGKILL');
    await gone;
    // the port is free once the kernel has closed the listening socket
    await waitFor('nginx port to close', async () => !(await canConnect(this.port)), 10_000);
    await sleep(10);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
