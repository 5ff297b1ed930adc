/**
 * Helpers for the NBD server's integration tests: run the real clients (nbdinfo, nbdcopy,
 * nbdsh, qemu-io, qemu-img), start a server in process or in a child process, and speak the
 * raw protocol for what no client will send (bad magic, unknown commands, fuzzing).
 * Everything lives in temp directories under os.tmpdir(); only unix sockets are used.
 */
import { spawn, fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NbdServer, type NbdServerOptions, type NbdServerTuning } from '../../appliance/nbd/index.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import type { BlockDevice } from '../../appliance/storage/block-device.js';
import type { InlineIo } from '../../appliance/storage/inline-io.js';

// ---------------------------------------------------------------------------------------------
// Running tools

export interface ToolResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface ToolOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Resolve with the result even when the tool exits non-zero. */
  allowFailure?: boolean;
}

const INSTALL_HINT = 'install the test tools with test/setup/install-test-tools.sh (Debian: libnbd-bin, python3-libnbd, qemu-utils, nbdkit, fio)';

/** Runs a tool asynchronously (the server under test may live in this process). */
export function runTool(cmd: string, args: string[], opts: ToolOptions = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT' ? new Error(`${cmd} is not installed: ${INSTALL_HINT}`) : e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code: code ?? -1 };
      if (result.code !== 0 && !opts.allowFailure) {
        reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}:\n${result.stderr}${result.stdout}`));
      } else resolve(result);
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

export function nbdUri(socketPath: string, exportName = ''): string {
  return `nbd+unix:///${exportName}?socket=${socketPath}`;
}

export async function nbdinfoJson(uri: string, extra: string[] = []): Promise<NbdinfoJson> {
  const { stdout } = await runTool('nbdinfo', ['--json', ...extra, uri]);
  return JSON.parse(stdout) as NbdinfoJson;
}

export interface NbdinfoExport {
  'export-name': string;
  description?: string;
  'export-size': number;
  is_read_only: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  can_multi_conn: boolean;
  can_df: boolean;
  block_size_minimum: number;
  block_size_preferred: number;
  block_size_maximum: number;
}

export interface NbdinfoJson {
  protocol: string;
  TLS: boolean;
  exports: NbdinfoExport[];
}

export function nbdcopy(src: string, dst: string, extra: string[] = []): Promise<ToolResult> {
  return runTool('nbdcopy', [...extra, src, dst]);
}

/** qemu-io on an NBD URI (raw format); one -c per command. */
export function qemuIo(uri: string, commands: string[], extra: string[] = []): Promise<ToolResult> {
  return runTool('qemu-io', ['-f', 'raw', ...extra, ...commands.flatMap((c) => ['-c', c]), uri]);
}

export function qemuImg(args: string[]): Promise<ToolResult> {
  return runTool('qemu-img', args);
}

let pythonDir: string | null = null;

/** nbdsh runs `python3 -m nbd`: put first on PATH a python3 that has the nbd module. */
async function nbdshEnv(): Promise<NodeJS.ProcessEnv> {
  if (pythonDir === null) {
    const which = await runTool('sh', ['-c', 'command -v python3'], { allowFailure: true });
    const candidates = ['/usr/bin/python3', which.stdout.trim()].filter((p) => p !== '');
    for (const py of candidates) {
      const r = await runTool(py, ['-c', 'import nbd'], { allowFailure: true }).catch(() => null);
      if (r?.code === 0) {
        pythonDir = dirname(py);
        break;
      }
    }
    if (pythonDir === null) throw new Error(`no python3 can import nbd: ${INSTALL_HINT}`);
  }
  return { ...process.env, PATH: `${pythonDir}:${process.env.PATH ?? ''}` };
}

/**
 * Starts nbdsh connected to `uri` running `script` (handle `h`), for a test that talks to the
 * client while it runs (its stdin, stdout and stderr are pipes).
 */
export async function spawnNbdsh(uri: string, script: string): Promise<ChildProcess> {
  const env = await nbdshEnv();
  return spawn('nbdsh', ['-u', uri, '-c', script], { env, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Runs a Python script in nbdsh (handle `h` created, not connected). Returns its stdout. */
export async function nbdsh(script: string, timeoutMs = 120_000): Promise<string> {
  const env = await nbdshEnv();
  const dir = await mkdtemp(join(tmpdir(), 'snapback-nbdsh-'));
  try {
    const file = join(dir, 'script.py');
    await writeFile(file, script);
    const { stdout } = await runTool('nbdsh', ['-c', `exec(open(${JSON.stringify(file)}).read())`], { env, timeoutMs });
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Servers under test

export interface TempDir {
  path: string;
  remove(): Promise<void>;
}

export async function makeTempDir(prefix = 'snapback-nbd-'): Promise<TempDir> {
  const path = await mkdtemp(join(tmpdir(), prefix));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** A file of `size` random bytes (or zeroes). */
export async function makeImage(path: string, size: number, fill: 'random' | 'zero' = 'random'): Promise<Buffer> {
  const data = fill === 'random' ? randomBytes(size) : Buffer.alloc(size);
  await writeFile(path, data);
  return data;
}

export interface ServerFixture {
  dir: TempDir;
  imagePath: string;
  socketPath: string;
  uri: string;
  server: NbdServer;
  device: BlockDevice;
  stop(): Promise<void>;
}

export interface FixtureOptions extends Partial<Omit<NbdServerOptions, 'device'>> {
  size?: number;
  fill?: 'random' | 'zero';
  tuning?: Partial<NbdServerTuning>;
  /** Wraps the FileDevice (e.g. to slow it down or to inject failures). */
  wrapDevice?: (device: BlockDevice) => BlockDevice;
  /** The FileDevice's inline I/O (default: the process's shared one; null: none). */
  inlineIo?: InlineIo | null;
}

/** An NbdServer in this process serving a fresh image through FileDevice. */
export async function startServer(opts: FixtureOptions = {}): Promise<ServerFixture> {
  const dir = await makeTempDir();
  const imagePath = join(dir.path, 'disk.img');
  await makeImage(imagePath, opts.size ?? 16 * 1024 * 1024, opts.fill ?? 'random');
  const file = new FileDevice(imagePath, { readOnly: opts.readOnly ?? false, ...(opts.inlineIo !== undefined ? { inlineIo: opts.inlineIo } : {}) });
  await file.open();
  const device = opts.wrapDevice ? opts.wrapDevice(file) : file;
  const { size: _size, fill: _fill, tuning, wrapDevice: _wrap, inlineIo: _inline, ...serverOpts } = opts;
  const server = new NbdServer({ ...serverOpts, device }, tuning);
  const socketPath = join(dir.path, 'nbd.sock');
  await server.listenUnix(socketPath);
  return {
    dir,
    imagePath,
    socketPath,
    uri: nbdUri(socketPath),
    server,
    device,
    async stop() {
      await server.close();
      await file.close();
      await dir.remove();
    },
  };
}

export interface MemoryStats {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

export interface ServerProcess {
  child: ChildProcess;
  pid: number;
  /** process.memoryUsage() of the server, after a GC. */
  stats(): Promise<{ memory: MemoryStats; clients: number }>;
  alive(): boolean;
  stop(): Promise<number | null>;
}

/** dist/bench/nbd-serve-entry.js, next to this compiled helper's tree. */
export function serveEntryPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const entry = join(here, '..', '..', 'bench', 'nbd-serve-entry.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: build with npx tsc -p tsconfig.build.json`);
  return entry;
}

/** Our server in a child Node process (with IPC for memory statistics). */
export async function spawnServerProcess(imagePath: string, socketPath: string, extraArgs: string[] = []): Promise<ServerProcess> {
  const child = fork(serveEntryPath(), ['--image', imagePath, '--socket', socketPath, ...extraArgs], {
    execArgv: ['--expose-gc'],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes('"ready":true')) {
        child.stdout!.off('data', onData);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server process exited ${code} before listening: ${stderr}`)));
  });
  child.stdout!.resume();
  let exited = false;
  const exitPromise = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      exited = true;
      resolve(code);
    }),
  );
  return {
    child,
    pid: child.pid!,
    alive: () => !exited,
    stats: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('server process did not answer a stats request')), 10_000);
        const onMessage = (msg: unknown): void => {
          const m = msg as { type?: string; memory: MemoryStats; clients: number };
          if (m.type !== 'stats') return;
          clearTimeout(timer);
          child.off('message', onMessage);
          resolve({ memory: m.memory, clients: m.clients });
        };
        child.on('message', onMessage);
        child.send({ type: 'stats' });
      }),
    async stop() {
      if (!exited) child.kill('SIGTERM');
      return exitPromise;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The raw protocol

export const NBD = {
  IHAVEOPT: 0x49484156454f5054n,
  OPTION_REPLY_MAGIC: 0x3e889045565a9n,
  REQUEST_MAGIC: 0x25609513,
  SIMPLE_REPLY_MAGIC: 0x67446698,
  STRUCTURED_REPLY_MAGIC: 0x668e33ef,
  OPT_EXPORT_NAME: 1,
  OPT_ABORT: 2,
  OPT_LIST: 3,
  OPT_STARTTLS: 5,
  OPT_INFO: 6,
  OPT_GO: 7,
  OPT_STRUCTURED_REPLY: 8,
  OPT_SET_META_CONTEXT: 10,
  REP_ACK: 1,
  REP_SERVER: 2,
  REP_INFO: 3,
  REP_ERR_UNSUP: 0x80000001,
  REP_ERR_INVALID: 0x80000003,
  REP_ERR_TLS_REQD: 0x80000005,
  REP_ERR_UNKNOWN: 0x80000006,
  REP_ERR_TOO_BIG: 0x80000009,
  INFO_EXPORT: 0,
  INFO_NAME: 1,
  INFO_DESCRIPTION: 2,
  INFO_BLOCK_SIZE: 3,
  CMD_READ: 0,
  CMD_WRITE: 1,
  CMD_DISC: 2,
  CMD_FLUSH: 3,
  CMD_TRIM: 4,
  CMD_CACHE: 5,
  CMD_WRITE_ZEROES: 6,
  CMD_BLOCK_STATUS: 7,
  CMD_FLAG_FUA: 1,
  CMD_FLAG_NO_HOLE: 2,
  REPLY_TYPE_NONE: 0,
  REPLY_TYPE_OFFSET_DATA: 1,
  REPLY_TYPE_ERROR: 0x8001,
  REPLY_FLAG_DONE: 1,
  EPERM: 1,
  EIO: 5,
  EINVAL: 22,
  ENOSPC: 28,
} as const;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface Reply {
  /** 'simple' or 'structured' chunk. */
  kind: 'simple' | 'structured';
  handle: bigint;
  error: number;
  flags: number;
  type: number;
  /** Read data (simple replies when asked for, OFFSET_DATA chunks) or the chunk payload. */
  data: Buffer;
  offset?: bigint;
  message?: string;
}

export class ConnectionClosedError extends Error {
  constructor() {
    super('connection closed by the server');
  }
}

/** A client that sends exactly the bytes it is told to: for what real clients never send. */
export class RawNbdClient {
  private buffered: Buffer = Buffer.alloc(0);
  private closed = false;
  private waiter: (() => void) | null = null;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = this.buffered.length === 0 ? d : Buffer.concat([this.buffered, d]);
      this.wake();
    });
    socket.on('error', () => undefined);
    this.closedPromise = new Promise((resolve) =>
      socket.on('close', () => {
        this.closed = true;
        this.wake();
        resolve();
      }),
    );
  }

  static connect(path: string): Promise<RawNbdClient> {
    return RawNbdClient.connectTo({ path });
  }

  static connectTcp(host: string, port: number): Promise<RawNbdClient> {
    return RawNbdClient.connectTo({ host, port });
  }

  private static connectTo(where: net.NetConnectOpts): Promise<RawNbdClient> {
    return new Promise((resolve, reject) => {
      const socket = net.createConnection(where);
      socket.once('connect', () => resolve(new RawNbdClient(socket)));
      socket.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  write(data: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Exactly n bytes; rejects with ConnectionClosedError if the server closes first. */
  async readExact(n: number, timeoutMs = 20_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < n) {
      if (this.closed) throw new ConnectionClosedError();
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.buffered.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    const out = this.buffered.subarray(0, n);
    this.buffered = this.buffered.subarray(n);
    return out;
  }

  /** Resolves true once the server has closed the connection, false after the timeout. */
  async waitClosed(timeoutMs = 20_000): Promise<boolean> {
    if (this.closed) return true;
    return Promise.race([this.closedPromise.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs))]);
  }

  /** Reads the greeting and sends client flags (fixed newstyle + no zeroes by default). */
  async handshake(clientFlags = 3): Promise<number> {
    const g = await this.readExact(18);
    if (g.toString('latin1', 0, 8) !== 'NBDMAGIC' || g.toString('latin1', 8, 16) !== 'IHAVEOPT') throw new Error('bad greeting');
    const flags = g.readUInt16BE(16);
    const f = Buffer.alloc(4);
    f.writeUInt32BE(clientFlags);
    this.write(f);
    return flags;
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), lengthOverride?: number): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(NBD.IHAVEOPT, 0);
    h.writeUInt32BE(option, 8);
    h.writeUInt32BE(lengthOverride ?? data.length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const h = await this.readExact(20);
    if (h.readBigUInt64BE(0) !== NBD.OPTION_REPLY_MAGIC) throw new Error('bad option reply magic');
    const length = h.readUInt32BE(16);
    const data = length ? Buffer.from(await this.readExact(length)) : Buffer.alloc(0);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data };
  }

  /** NBD_OPT_INFO/GO data: name, then the information requests. */
  static infoData(name: string, requests: number[] = []): Buffer {
    const n = Buffer.from(name);
    const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length);
    b.writeUInt32BE(n.length, 0);
    n.copy(b, 4);
    b.writeUInt16BE(requests.length, 4 + n.length);
    requests.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
    return b;
  }

  /** Handshake + optional structured replies + GO; returns the export's size and flags. */
  async open(opts: { structured?: boolean; name?: string } = {}): Promise<{ size: bigint; flags: number }> {
    await this.handshake();
    if (opts.structured) {
      this.sendOption(NBD.OPT_STRUCTURED_REPLY);
      const r = await this.readOptionReply();
      if (r.type !== NBD.REP_ACK) throw new Error(`structured reply refused: ${r.type}`);
    }
    this.sendOption(NBD.OPT_GO, RawNbdClient.infoData(opts.name ?? '', [NBD.INFO_BLOCK_SIZE]));
    let size = -1n;
    let flags = 0;
    for (;;) {
      const r = await this.readOptionReply();
      if (r.type === NBD.REP_ACK) break;
      if (r.type !== NBD.REP_INFO) throw new Error(`GO failed with reply type 0x${r.type.toString(16)}`);
      if (r.data.readUInt16BE(0) === NBD.INFO_EXPORT) {
        size = r.data.readBigUInt64BE(2);
        flags = r.data.readUInt16BE(10);
      }
    }
    return { size, flags };
  }

  static request(type: number, handle: bigint, offset: bigint | number, length: number, flags = 0, magic: number = NBD.REQUEST_MAGIC): Buffer {
    const b = Buffer.alloc(28);
    b.writeUInt32BE(magic >>> 0, 0);
    b.writeUInt16BE(flags, 4);
    b.writeUInt16BE(type, 6);
    b.writeBigUInt64BE(handle, 8);
    b.writeBigUInt64BE(BigInt(offset), 16);
    b.writeUInt32BE(length, 24);
    return b;
  }

  sendRequest(type: number, handle: bigint, offset: bigint | number, length: number, opts: { flags?: number; payload?: Buffer } = {}): void {
    const h = RawNbdClient.request(type, handle, offset, length, opts.flags ?? 0);
    this.write(opts.payload ? Buffer.concat([h, opts.payload]) : h);
  }

  /**
   * One reply message: a simple reply (with `readLength` data bytes if given and no error) or
   * one structured chunk.
   */
  async readReply(readLength = 0): Promise<Reply> {
    const magic = (await this.readExact(4)).readUInt32BE(0);
    if (magic === NBD.SIMPLE_REPLY_MAGIC) {
      const r = await this.readExact(12);
      const error = r.readUInt32BE(0);
      const handle = r.readBigUInt64BE(4);
      const data = error === 0 && readLength > 0 ? Buffer.from(await this.readExact(readLength)) : Buffer.alloc(0);
      return { kind: 'simple', handle, error, flags: 0, type: 0, data };
    }
    if (magic === NBD.STRUCTURED_REPLY_MAGIC) {
      const r = await this.readExact(16);
      const flags = r.readUInt16BE(0);
      const type = r.readUInt16BE(2);
      const handle = r.readBigUInt64BE(4);
      const length = r.readUInt32BE(12);
      const payload = Buffer.from(await this.readExact(length));
      if (type === NBD.REPLY_TYPE_OFFSET_DATA) {
        return { kind: 'structured', handle, error: 0, flags, type, offset: payload.readBigUInt64BE(0), data: payload.subarray(8) };
      }
      if (type & 0x8000) {
        const error = payload.readUInt32BE(0);
        const msgLen = payload.readUInt16BE(4);
        return { kind: 'structured', handle, error, flags, type, data: payload, message: payload.toString('utf8', 6, 6 + msgLen) };
      }
      return { kind: 'structured', handle, error: 0, flags, type, data: payload };
    }
    throw new Error(`bad reply magic 0x${magic.toString(16)}`);
  }
}
