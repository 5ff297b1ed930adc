/**
 * A real MQTT broker for the fleet tests: Debian's mosquitto (installed by
 * test/setup/install-test-tools.sh), started as the test's own process on a free loopback port
 * with its own configuration, password file, ACL file, persistence and certificates under a
 * temporary directory.
 *
 *   const broker = await Mosquitto.start();                       // anonymous, mqtt:// only
 *   const broker = await Mosquitto.start({ users: { console: 'pw', lab1: 'pw1' },
 *                                          acl: fleetAcl('console'), tls: true });
 *   broker.url / broker.tlsUrl / broker.caPem
 *   await broker.restart();   // same ports; persistence keeps retained and queued QoS 1 messages
 *   await broker.stop();
 *
 * Logins: with `users` (or an external `passwordFile`) anonymous clients are refused; without,
 * anyone may connect and no ACL applies unless `acl` is given. `passwordFile` and `aclFile` let
 * a test point the broker at files something else maintains (the console writes them in
 * mosquitto's formats); `reload()` makes the broker read them again (SIGHUP).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, existsSync, readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sleep, waitFor } from './wait.js';

const run = promisify(execFile);

/** Debian puts the broker in /usr/sbin, which a non-root PATH may lack. */
function mosquittoBinary(): string {
  for (const p of ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto']) if (existsSync(p)) return p;
  throw new Error('mosquitto is not installed: run test/setup/install-test-tools.sh (Debian packages mosquitto, mosquitto-clients)');
}

/**
 * The fleet's ACL in mosquitto's format (docs/fleet.md): the console's account reads and writes
 * every snapback/ topic; every other account (an appliance: its user name is its name) may
 * publish only its own availability, info, state and response, and read only its own commands.
 */
export function fleetAcl(consoleUser: string): string[] {
  return [
    `user ${consoleUser}`,
    'topic readwrite snapback/#',
    '',
    'pattern write snapback/%u/availability',
    'pattern write snapback/%u/info',
    'pattern write snapback/%u/state',
    'pattern write snapback/%u/response',
    'pattern read snapback/%u/command',
  ];
}

export interface MosquittoOptions {
  /** Broker accounts (name → password), written with mosquitto_passwd; anonymous is then off. */
  users?: Record<string, string>;
  /** An existing password file (mosquitto_passwd format) instead of `users`. */
  passwordFile?: string;
  /** ACL lines (mosquitto's acl_file format), e.g. fleetAcl('console'). */
  acl?: string[];
  /** An existing ACL file instead of `acl`. */
  aclFile?: string;
  /** Also listen with TLS (mqtts://) on a second port, with a certificate from a self-signed CA. */
  tls?: boolean;
  /** The mqtt:// port; default a free one. */
  port?: number;
  /** Where everything goes; default a new temporary directory, removed by stop({remove: true}). */
  dir?: string;
  /**
   * QoS 1 messages the broker queues per client before it drops them (mosquitto's default: 1000).
   * A console of N appliances needs about 3 × N when they all connect at once (info, state,
   * availability), or mosquitto drops some and the console never hears of those appliances.
   */
  maxQueuedMessages?: number;
}

const HOST = '127.0.0.1';

export class Mosquitto {
  private proc: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  private constructor(
    readonly dir: string,
    readonly port: number,
    /** The mqtts:// port; null without TLS. */
    readonly tlsPort: number | null,
    /** The CA that signed the broker's certificate (PEM); null without TLS. */
    readonly caPem: string | null,
    private readonly ownsDir: boolean,
  ) {}

  get url(): string {
    return `mqtt://${HOST}:${this.port}`;
  }

  get tlsUrl(): string {
    if (this.tlsPort === null) throw new Error('this broker was started without tls: true');
    return `mqtts://${HOST}:${this.tlsPort}`;
  }

  get confPath(): string {
    return join(this.dir, 'mosquitto.conf');
  }

  get logPath(): string {
    return join(this.dir, 'mosquitto.log');
  }

  /** The broker's own log so far (for a failing test's message). */
  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : '';
  }

  get running(): boolean {
    return this.proc !== null;
  }

  static async start(opts: MosquittoOptions = {}): Promise<Mosquitto> {
    const ownsDir = opts.dir === undefined;
    const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'snapback-mosquitto-')));
    await mkdir(join(dir, 'data'), { recursive: true });
    const port = opts.port ?? (await freePort());
    const tlsPort = opts.tls ? await freePort([port]) : null;
    const caPem = opts.tls ? await makeCertificates(dir) : null;

    let passwordFile = opts.passwordFile ?? null;
    if (opts.users) {
      passwordFile = join(dir, 'passwd');
      await writeFile(passwordFile, '', { mode: 0o600 });
      for (const [user, password] of Object.entries(opts.users)) await run('mosquitto_passwd', ['-b', passwordFile, user, password]);
      await chmod(passwordFile, 0o600);
    }
    let aclFile = opts.aclFile ?? null;
    if (opts.acl) {
      aclFile = join(dir, 'acl');
      await writeFile(aclFile, opts.acl.join('\n') + '\n', { mode: 0o600 });
    }

    const conf = [
      // Stay the user the test runs as (as root mosquitto would otherwise become user mosquitto,
      // who cannot read the test's files).
      `user ${userInfo().username}`,
      'per_listener_settings false',
      `listener ${port} ${HOST}`,
      ...(tlsPort !== null ? [`listener ${tlsPort} ${HOST}`, `cafile ${join(dir, 'ca.pem')}`, `certfile ${join(dir, 'server.pem')}`, `keyfile ${join(dir, 'server.key')}`] : []),
      `allow_anonymous ${passwordFile === null}`,
      ...(passwordFile !== null ? [`password_file ${passwordFile}`] : []),
      ...(aclFile !== null ? [`acl_file ${aclFile}`] : []),
      // Retained messages, persistent sessions and their queued QoS 1 messages survive a restart.
      'persistence true',
      `persistence_location ${join(dir, 'data')}/`,
      'autosave_interval 1',
      'autosave_on_changes false',
      ...(opts.maxQueuedMessages !== undefined ? [`max_queued_messages ${opts.maxQueuedMessages}`] : []),
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      'connection_messages true',
      'log_timestamp_format %H:%M:%S',
    ];
    await writeFile(join(dir, 'mosquitto.conf'), conf.join('\n') + '\n');
    const broker = new Mosquitto(dir, port, tlsPort, caPem, ownsDir);
    await broker.launch();
    return broker;
  }

  private async launch(): Promise<void> {
    const logFd = openSync(this.logPath, 'a');
    const proc = spawn(mosquittoBinary(), ['-c', this.confPath], { stdio: ['ignore', logFd, logFd] });
    closeSync(logFd);
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    let exitedEarly = false;
    void this.exited.then(() => {
      exitedEarly = true;
      if (this.proc === proc) this.proc = null;
    });
    const ports = [this.port, ...(this.tlsPort !== null ? [this.tlsPort] : [])];
    await waitFor(
      `mosquitto to listen on ${ports.join(', ')}`,
      async () => {
        if (exitedEarly) throw new Error(`mosquitto exited at start:\n${this.log()}`);
        for (const p of ports) await canConnect(p);
        return true;
      },
      20_000,
      50,
    ).catch((err: unknown) => {
      if (!exitedEarly) proc.kill('SIGKILL');
      throw err;
    });
  }

  /** Stops the broker (SIGTERM: it saves its persistence first); with remove, deletes its directory. */
  async stop(opts: { remove?: boolean } = {}): Promise<void> {
    const proc = this.proc;
    if (proc) {
      proc.kill('SIGTERM');
      await Promise.race([this.exited, sleep(10_000)]);
      if (this.proc === proc) {
        proc.kill('SIGKILL');
        await this.exited;
      }
      this.proc = null;
    }
    if (opts.remove ?? this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  /** Stops the broker and starts it again on the same ports, with its saved state. */
  async restart(): Promise<void> {
    await this.stop({ remove: false });
    await this.launch();
  }

  /** Starts a stopped broker again (after stop({remove: false})). */
  async resume(): Promise<void> {
    if (this.proc) return;
    await this.launch();
  }

  /** Reads the password and ACL files again (SIGHUP). */
  reload(): void {
    if (!this.proc) throw new Error('mosquitto is not running');
    this.proc.kill('SIGHUP');
  }
}

/** A TCP port free on loopback right now (mosquitto cannot listen on port 0 and say which it got). */
export async function freePort(avoid: number[] = []): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, HOST, () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    });
    if (port !== 0 && !avoid.includes(port)) return port;
  }
}

function canConnect(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(port, HOST);
    s.once('connect', () => {
      s.destroy();
      resolve();
    });
    s.once('error', reject);
  });
}

/** A self-signed CA and a broker certificate for 127.0.0.1 and localhost signed by it; returns the CA's PEM. */
async function makeCertificates(dir: string): Promise<string> {
  const f = (n: string) => join(dir, n);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Snapback test broker CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1']);
  await writeFile(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await run('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('server.ext')]);
  await chmod(f('server.key'), 0o600);
  return readFileSync(f('ca.pem'), 'utf8');
}
