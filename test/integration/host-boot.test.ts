/**
 * A real computer as the host. A QEMU PC (TCG) boots over USB from the disk Snapback
 * serves, writes to it, is power-cycled, and must find the model again. See
 * docs/host-boot-rig.md for the rig, the scenarios, and what each one proves.
 *
 * Everything lives in one temporary directory; the daemon's NBD export and control API are
 * reached through unix sockets only. The guest's one and only disk is Snapback's export.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { strict as assert } from 'node:assert';
import { repoRoot } from '../rigs/debian-kernel.js';
import { buildHostImage, fileRangeSha256, type HostImage } from '../rigs/host-image.js';
import { HostVm, requireVmTools } from '../rigs/host-vm.js';
import { Nginx } from '../helpers/nginx.js';

const MiB = 1024 * 1024;
const KiB = 1024;
const REGION = 64 * KiB;

// ---------------------------------------------------------------------------------------------
// The appliance, driven through its CLI (dist/appliance/cli/main.js) and its control socket.

const CLI = path.join(repoRoot(), 'dist', 'appliance', 'cli', 'main.js');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

function runCli(args: readonly string[], opts: { allowFail?: boolean } = {}): Promise<CliResult> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...args], { maxBuffer: 64 << 20, env: cliEnv() }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      const r = { code, stdout, stderr, ms: Date.now() - t0 };
      if (code !== 0 && !opts.allowFail) {
        reject(new Error(`snapback ${args.join(' ')} exited ${code}\nstdout: ${stdout.trim()}\nstderr: ${stderr.trim()}`));
      } else resolve(r);
    });
  });
}

function cliEnv(): NodeJS.ProcessEnv {
  // NODE_ENV=test would make lowdb keep state in memory: the daemon must not.
  const env = { ...process.env };
  delete env.NODE_ENV;
  return env;
}

interface Status {
  mode: string;
  restoreMode: string;
  session: { number: number; startedAt: string };
  regions: { total: number; writtenThisSession: number; pending: number; clean: number };
  hydration: { running: boolean; pendingRegions: number; done: number; totalAtStart: number };
}

interface LibraryModel {
  id: string;
  name: string;
  active: boolean;
  complete: boolean;
  download: { state: 'running' | 'stalled' | 'done'; regionsTotal: number; regionsDone: number } | null;
}

interface SessionRecord {
  number: number;
  startedAt: string;
  endedAt: string | null;
  endReason: string | null;
  regionsWritten: number;
  bytesWritten: number;
  sessionEndMs: number | null;
  restoreMs: number | null;
}

class Appliance {
  readonly stateDir: string;
  readonly socket: string;
  readonly controlSocket: string;
  readonly disk: string;
  private daemon: ChildProcess | undefined;
  private daemonLog = '';
  private daemonExit: Promise<void> | undefined;

  constructor(
    readonly dir: string,
    readonly model: HostImage,
    readonly restore: 'instant' | 'eager',
  ) {
    this.stateDir = path.join(dir, 'state');
    this.socket = path.join(dir, 'nbd.sock');
    this.controlSocket = path.join(this.stateDir, 'control.sock');
    this.disk = path.join(dir, 'working-disk.img');
  }

  async init(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    // The working disk starts as a copy of the model (a new appliance's disk would be
    // provisioned from it the same way).
    await fs.copyFile(this.model.path, this.disk);
    await fs.chmod(this.disk, 0o644);
    await runCli(['init', '--state-dir', this.stateDir, '--model', this.model.path, '--disk', this.disk,
      '--region-size', '64K', '--restore', this.restore, '--disk-matches-model']);
  }

  /**
   * A new appliance provisioned straight from the remote system: `snapback init --model URL`
   * (the model's manifest beside it on the server), an empty working disk, nothing downloaded.
   */
  async initFromUrl(url: string): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true });
    await runCli(['init', '--state-dir', this.stateDir, '--model', url, '--disk', this.disk, '--region-size', '64K', '--restore', this.restore]);
  }

  /** The library as `GET /api/models` lists it (straight from the control socket). */
  async models(): Promise<LibraryModel[]> {
    return (JSON.parse(await httpGetUnix(this.controlSocket, '/api/models')) as { models: LibraryModel[] }).models;
  }

  /** Starts `snapback serve`; resolves once its NBD socket and its control socket accept connections. */
  async serve(): Promise<number> {
    const t0 = Date.now();
    const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', this.stateDir, '--nbd-socket', this.socket,
      '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off'], { stdio: ['ignore', 'pipe', 'pipe'], env: cliEnv() });
    this.daemon = child;
    this.daemonLog += `--- serve started at ${new Date(t0).toISOString()} ---\n`;
    const collect = (b: Buffer): void => {
      this.daemonLog += b.toString();
      if (this.daemonLog.length > 4 << 20) this.daemonLog = this.daemonLog.slice(-(2 << 20));
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    this.daemonExit = new Promise((resolve) => child.on('exit', () => resolve()));
    liveDaemons.add(child);
    child.on('exit', () => liveDaemons.delete(child));
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`snapback serve exited (${child.exitCode ?? child.signalCode}) before its NBD socket was up\n${this.logTail()}`);
      }
      // Both sockets must answer: after a kill -9 the old socket files are still there, and the
      // new daemon binds its NBD socket before its control socket.
      if (existsSync(this.socket) && existsSync(this.controlSocket)
        && (await canConnect(this.socket)) && (await canConnect(this.controlSocket))) break;
      if (Date.now() > deadline) throw new Error(`snapback serve: no NBD socket at ${this.socket} after 30 s\n${this.logTail()}`);
      await sleep(50);
    }
    return Date.now() - t0;
  }

  /** SIGKILL: the Pi loses power (or the daemon crashes) with no chance to clean up. */
  async kill9(): Promise<void> {
    const d = this.daemon;
    if (!d || d.exitCode !== null || d.signalCode !== null) throw new Error('kill9: the daemon is not running');
    d.kill('SIGKILL');
    await this.daemonExit;
    this.daemon = undefined;
  }

  /** SIGTERM and wait: an orderly stop. */
  async stop(): Promise<void> {
    const d = this.daemon;
    if (!d || d.exitCode !== null || d.signalCode !== null) return;
    d.kill('SIGTERM');
    const t = setTimeout(() => d.kill('SIGKILL'), 15_000);
    await this.daemonExit;
    clearTimeout(t);
    this.daemon = undefined;
  }

  logTail(lines = 60): string {
    return `--- daemon log (${this.stateDir}) ---\n` + this.daemonLog.split('\n').slice(-lines).join('\n');
  }

  /** Status through the CLI (`snapback status --json`). */
  async statusCli(): Promise<Status> {
    const r = await runCli(['status', '--state-dir', this.stateDir, '--json']);
    return JSON.parse(r.stdout) as Status;
  }

  /** Status straight from the control socket (what the CLI asks), fast enough to poll. */
  async status(): Promise<Status> {
    return JSON.parse(await httpGetUnix(this.controlSocket, '/api/status')) as Status;
  }

  /** `snapback hydration-rate`: bytes per second, or null for unlimited. */
  async hydrationRate(bytesPerSecond: number | null): Promise<void> {
    await runCli(['hydration-rate', bytesPerSecond === null ? 'unlimited' : String(bytesPerSecond), '--state-dir', this.stateDir]);
  }

  async sessionEnd(wait = true): Promise<CliResult> {
    return runCli(['session', 'end', '--state-dir', this.stateDir, ...(wait ? ['--wait'] : [])]);
  }

  /** The daemon's sessionEndMs for a session (from the history). */
  async daemonEndMs(sessionNumber: number): Promise<number> {
    const rec = (await this.sessions()).find((x) => x.number === sessionNumber);
    return rec?.sessionEndMs ?? NaN;
  }

  async mode(m: 'frozen' | 'thawed'): Promise<void> {
    await runCli(['mode', m, '--state-dir', this.stateDir]);
  }

  async verify(): Promise<{ code: number; report: unknown }> {
    const r = await runCli(['verify', '--state-dir', this.stateDir, '--json'], { allowFail: true });
    let report: unknown = r.stdout;
    try {
      report = JSON.parse(r.stdout);
    } catch {
      /* keep the text */
    }
    if (r.code !== 0 && r.code !== 1) throw new Error(`snapback verify failed to run (exit ${r.code}): ${r.stderr.trim()}`);
    return { code: r.code, report };
  }

  async sessions(): Promise<SessionRecord[]> {
    const body = await httpGetUnix(this.controlSocket, '/api/sessions');
    const parsed = JSON.parse(body) as SessionRecord[] | { sessions: SessionRecord[] };
    return Array.isArray(parsed) ? parsed : parsed.sessions;
  }
}

const liveDaemons = new Set<ChildProcess>();
process.on('exit', () => {
  for (const d of liveDaemons) d.kill('SIGKILL');
});

function httpGetUnix(socketPath: string, urlPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: urlPath, method: 'GET', headers: { accept: 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        if ((res.statusCode ?? 0) >= 400) reject(new Error(`GET ${urlPath} on ${socketPath}: HTTP ${res.statusCode}: ${body}`));
        else resolve(body);
      });
    });
    req.on('error', reject);
    req.end();
  });
}

function canConnect(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// A minimal NBD client (fixed newstyle, NBD_OPT_EXPORT_NAME, simple replies): the probe that
// times "the model is readable" reads a few ranges through a fresh connection.

class ByteReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiting: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private error: Error | undefined;

  constructor(sock: Socket) {
    sock.on('data', (b: Buffer) => {
      this.chunks.push(b);
      this.have += b.length;
      this.pump();
    });
    const fail = (e: Error): void => {
      this.error = e;
      this.pump();
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new Error('NBD connection closed')));
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.waiting = { n, resolve, reject };
      this.pump();
    });
  }

  private pump(): void {
    const w = this.waiting;
    if (!w) return;
    if (this.have >= w.n) {
      const all = Buffer.concat(this.chunks);
      this.chunks = [all.subarray(w.n)];
      this.have -= w.n;
      this.waiting = undefined;
      w.resolve(all.subarray(0, w.n));
    } else if (this.error) {
      this.waiting = undefined;
      w.reject(this.error);
    }
  }
}

async function nbdReadRanges(socketPath: string, ranges: readonly Range[]): Promise<Buffer[]> {
  const sock = connect(socketPath);
  const rd = new ByteReader(sock);
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const hello = await rd.read(18);
    if (hello.subarray(0, 16).toString('latin1') !== 'NBDMAGICIHAVEOPT') throw new Error('not a newstyle NBD server');
    const serverFlags = hello.readUInt16BE(16);
    const noZeroes = (serverFlags & 2) !== 0;
    const clientFlags = Buffer.alloc(4);
    clientFlags.writeUInt32BE((serverFlags & 1) | (noZeroes ? 2 : 0));
    const opt = Buffer.alloc(16);
    opt.write('IHAVEOPT', 0, 'latin1');
    opt.writeUInt32BE(1, 8); // NBD_OPT_EXPORT_NAME, default export
    opt.writeUInt32BE(0, 12);
    sock.write(Buffer.concat([clientFlags, opt]));
    const exportInfo = await rd.read(noZeroes ? 10 : 134);
    const size = Number(exportInfo.readBigUInt64BE(0));
    const out: Buffer[] = [];
    let handle = 1n;
    for (const r of ranges) {
      if (r.offset + r.length > size) throw new Error(`range ${r.offset}+${r.length} beyond the export (${size})`);
      const req = Buffer.alloc(28);
      req.writeUInt32BE(0x25609513, 0);
      req.writeUInt16BE(0, 4);
      req.writeUInt16BE(0, 6); // NBD_CMD_READ
      req.writeBigUInt64BE(handle, 8);
      req.writeBigUInt64BE(BigInt(r.offset), 16);
      req.writeUInt32BE(r.length, 24);
      sock.write(req);
      const reply = await rd.read(16);
      if (reply.readUInt32BE(0) !== 0x67446698) throw new Error('unexpected NBD reply magic');
      const err = reply.readUInt32BE(4);
      if (err !== 0) throw new Error(`NBD read error ${err}`);
      if (reply.readBigUInt64BE(8) !== handle) throw new Error('NBD reply for another request');
      out.push(await rd.read(r.length));
      handle++;
    }
    const disc = Buffer.alloc(28);
    disc.writeUInt32BE(0x25609513, 0);
    disc.writeUInt16BE(2, 6); // NBD_CMD_DISC
    sock.write(disc);
    return out;
  } finally {
    sock.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Comparing the export with the model, every byte

interface Comparison {
  equal: boolean;
  size: number;
  firstDifference: number | null;
  differingRegions: number;
}

/** Streams the whole export with nbdcopy and compares it with the model file. */
async function compareExportWithModel(socketPath: string, model: HostImage): Promise<Comparison> {
  const fh = await fs.open(model.path, 'r');
  const child = spawn('nbdcopy', [`nbd+unix:///?socket=${socketPath}`, '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  let offset = 0;
  let firstDifference: number | null = null;
  const differing = new Set<number>();
  const mbuf = Buffer.alloc(8 * MiB);
  try {
    for await (const chunk of child.stdout as AsyncIterable<Buffer>) {
      let done = 0;
      while (done < chunk.length) {
        const n = Math.min(mbuf.length, chunk.length - done);
        const { bytesRead } = await fh.read(mbuf, 0, n, offset);
        const a = chunk.subarray(done, done + n);
        const b = mbuf.subarray(0, bytesRead);
        if (bytesRead !== n || !a.equals(b)) {
          for (let r = Math.floor(offset / REGION) * REGION; r < offset + n; r += REGION) {
            const s = Math.max(r, offset) - offset;
            const e = Math.min(r + REGION, offset + n) - offset;
            if (!a.subarray(s, e).equals(b.subarray(s, Math.min(e, bytesRead)))) {
              differing.add(r / REGION);
              if (firstDifference === null) {
                for (let i = s; i < e; i++) {
                  if (a[i] !== b[i]) {
                    firstDifference = offset + i;
                    break;
                  }
                }
              }
            }
          }
        }
        done += n;
        offset += n;
      }
    }
    const code = await new Promise<number | null>((resolve) => {
      if (child.exitCode !== null) resolve(child.exitCode);
      else child.on('exit', (c) => resolve(c));
    });
    if (code !== 0) throw new Error(`nbdcopy exited ${code}: ${stderr.trim()}`);
  } finally {
    await fh.close();
  }
  const equal = offset === model.size && differing.size === 0;
  return { equal, size: offset, firstDifference, differingRegions: differing.size };
}

// ---------------------------------------------------------------------------------------------
// Guest scripts (busybox sh; /lib/snapback.sh provides mark, fail, wait_host, disk_sha, …)

interface Range {
  offset: number;
  length: number;
}

/** Raw writes a scenario makes, beside its file changes: the partition table included. */
function rawWriteRanges(model: HostImage): Range[] {
  const d = model.dataPartition;
  return [
    { offset: 0, length: 512 }, // MBR: boot code and partition table
    { offset: model.bootPartition.start, length: 4096 }, // the FAT's boot sector and more
    { offset: d.start + 3 * MiB + 1000, length: 5000 }, // unaligned, inside one region
    { offset: d.start + 5 * MiB - 3000, length: 2 * REGION + 6000 }, // unaligned, across regions
    { offset: d.start + 9 * MiB, length: 2 * MiB }, // whole regions
    { offset: model.size - 4096, length: 4096 }, // the last block of the disk
  ];
}

/**
 * Writes random bytes over `ranges` (byte granularity, through the block device's page cache),
 * flushes them, and checks that the guest reads back what it wrote (from the device, after
 * dropping its cache).
 */
function rawWritesScript(ranges: readonly Range[]): string {
  const lines = ['i=0'];
  for (const r of ranges) {
    lines.push(
      `head -c ${r.length} /dev/urandom > /tmp/raw.$i`,
      `dd if=/tmp/raw.$i of=/dev/sda bs=64k oflag=seek_bytes seek=${r.offset} conv=notrunc 2>/dev/null`,
      'i=$((i+1))',
    );
  }
  lines.push('sync', 'blockdev --flushbufs /dev/sda', 'dropcache', 'i=0');
  for (const r of ranges) {
    lines.push(
      `dd if=/dev/sda bs=64k iflag=skip_bytes,count_bytes skip=${r.offset} count=${r.length} 2>/dev/null | cmp -s - /tmp/raw.$i || fail "raw write at ${r.offset} not read back within the session"`,
      'i=$((i+1))',
    );
  }
  lines.push('mark raw-written');
  return lines.join('\n') + '\n';
}

/** Creates, modifies, renames and deletes files and directories on the FAT, then syncs. */
const FILE_CHANGES = `
mount -t vfat /dev/sda1 /mnt || fail "mount rw"
echo "created during the session" > /mnt/created.txt
mkdir -p /mnt/newdir/sub
dd if=/dev/urandom of=/mnt/newdir/sub/random.bin bs=64k count=20 2>/dev/null
echo "a line appended during the session" >> /mnt/data/alpha.txt
dd if=/dev/urandom of=/mnt/data/big.bin bs=4k count=16 seek=300 conv=notrunc 2>/dev/null
: > /mnt/data/blob.bin
echo "no longer empty" > /mnt/data/empty.txt
rm /mnt/data/victim.txt
rm -r /mnt/data/nested
mv /mnt/README.TXT /mnt/renamed.txt
sync
umount /mnt
mount -t vfat -o ro /dev/sda1 /mnt || fail "remount ro"
[ -f /mnt/created.txt ] && [ ! -e /mnt/data/victim.txt ] || fail "file changes not visible within the session"
umount /mnt
mark files-changed
`;

/** The check every "next boot" makes: the whole disk, then every file, as the guest reads them. */
const CHECK_MODEL = `
mark check-start
echo "@@ disk-sha256 $(disk_sha)"
mount -t vfat -o ro /dev/sda1 /mnt || fail "mount the model's FAT"
report_files /mnt
umount /mnt
mark checked
`;

interface GuestView {
  diskSha256: string;
  files: Map<string, string>;
  dirs: string[];
}

function guestView(vm: HostVm): GuestView {
  const sha = vm.find('disk-sha256')?.args[0];
  if (!sha) throw new Error(`${vm.opts.name}: the guest reported no disk-sha256`);
  const files = new Map<string, string>();
  for (const e of vm.all('file')) {
    const [digest, ...rest] = e.args;
    files.set(rest.join(' '), digest ?? '');
  }
  const dirs = vm.all('dir').map((e) => e.args.join(' ')).filter((d) => d !== '.' && d !== '');
  return { diskSha256: sha, files, dirs: dirs.sort() };
}

function assertGuestSawModel(vm: HostVm, model: HostImage): void {
  const v = guestView(vm);
  assertGuestSawModelFiles(vm, model);
  assert.equal(v.diskSha256, model.sha256, `${vm.opts.name}: the guest read a disk that is not the model`);
}

/** Every file and directory the guest listed (report_files) is the model's, byte for byte. */
function assertGuestSawModelFiles(vm: HostVm, model: HostImage): void {
  const files = new Map<string, string>();
  for (const e of vm.all('file')) {
    const [digest, ...rest] = e.args;
    files.set(rest.join(' '), digest ?? '');
  }
  const dirs = vm.all('dir').map((e) => e.args.join(' ')).filter((d) => d !== '.' && d !== '').sort();
  const expected = new Map(model.files.map((f) => [f.path, f.sha256]));
  assert.deepEqual([...files.entries()].sort(), [...expected.entries()].sort(), `${vm.opts.name}: files on the FAT differ from the model's`);
  assert.deepEqual(dirs, model.dirs, `${vm.opts.name}: directories differ from the model's`);
}

// ---------------------------------------------------------------------------------------------
// Timings (printed, never asserted)

interface Timings {
  scenario: string;
  /** QEMU started → the guest's kernel saw the USB disk, per boot. */
  bootMs: number[];
  /** `snapback session end` (CLI round trip), per power cycle. */
  sessionEndMs: number[];
  /** The daemon's own measure of the session end (history's sessionEndMs). */
  daemonEndMs: number[];
  /** Session end requested → a fresh NBD client reads the model where the guest wrote. */
  modelReadableMs: number[];
  /** Session end requested → no region pending any more. */
  hydrationMs: number[];
  notes: string[];
}

const allTimings: Timings[] = [];

function timings(scenario: string): Timings {
  const t: Timings = { scenario, bootMs: [], sessionEndMs: [], daemonEndMs: [], modelReadableMs: [], hydrationMs: [], notes: [] };
  allTimings.push(t);
  return t;
}

function bootTime(vm: HostVm): number {
  const disk = vm.find('disk');
  return disk ? disk.at - vm.startedAt : NaN;
}

function printTimings(): void {
  const fmt = (xs: number[]): string => (xs.length ? xs.map((x) => (Number.isFinite(x) ? (x / 1000).toFixed(2) : '?')).join(' / ') : '-');
  const rows = allTimings.map((t) => [t.scenario, fmt(t.bootMs), fmt(t.sessionEndMs), fmt(t.daemonEndMs), fmt(t.modelReadableMs), fmt(t.hydrationMs)]);
  const head = ['scenario', 'boot (s)', 'session end: CLI (s)', 'daemon (s)', 'model readable (s)', 'hydration (s)'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => '    ' + r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  console.log('\n  host-boot timings (TCG; per boot / per power cycle):');
  console.log(line(head));
  for (const r of rows) console.log(line(r));
  for (const t of allTimings) for (const n of t.notes) console.log(`    ${t.scenario}: ${n}`);
}

// ---------------------------------------------------------------------------------------------
// One power cycle: the host is off; the session ends; measure until the model is readable and
// until no region is pending.

interface StatusSample {
  sentAt: number;
  at: number;
  status: Status;
}

/** Polls status until stopped; every sample keeps when it was asked for and answered. */
function pollStatus(app: Appliance, intervalMs = 100): { samples: StatusSample[]; stop: () => Promise<void> } {
  const samples: StatusSample[] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const sentAt = Date.now();
      try {
        const status = await app.status();
        samples.push({ sentAt, at: Date.now(), status });
      } catch {
        /* the daemon may be busy ending the session; try again */
      }
      await sleep(intervalMs);
    }
  })();
  return {
    samples,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function waitHydrated(app: Appliance, timeoutMs = 120_000): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await app.status();
    if (s.regions.pending === 0 && !s.hydration.running) return s;
    if (Date.now() > deadline) throw new Error(`hydration not finished after ${timeoutMs} ms: ${JSON.stringify(s)}\n${app.logTail()}`);
    await sleep(100);
  }
}

/** Reads `ranges` through fresh NBD connections until they hold the model's bytes. */
async function waitModelReadable(app: Appliance, model: HostImage, ranges: readonly Range[], timeoutMs = 120_000): Promise<number> {
  const expected = await Promise.all(ranges.map((r) => fileRange(model.path, r)));
  const deadline = Date.now() + timeoutMs;
  let last = 'no attempt';
  for (;;) {
    try {
      const got = await nbdReadRanges(app.socket, ranges);
      if (got.every((g, i) => g.equals(expected[i]!))) return Date.now();
      last = 'read, but not the model yet';
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) throw new Error(`the model was not readable after ${timeoutMs} ms (${last})\n${app.logTail()}`);
    await sleep(20);
  }
}

async function fileRange(file: string, r: Range): Promise<Buffer> {
  const fh = await fs.open(file, 'r');
  try {
    const b = Buffer.alloc(r.length);
    await fh.read(b, 0, r.length, r.offset);
    return b;
  } finally {
    await fh.close();
  }
}

/**
 * Ends the session (the host has just lost power) and measures the restore: a probe reads
 * `probe` (where the guest wrote) through fresh NBD connections until it gets the model's bytes.
 */
async function powerCycle(app: Appliance, t: Timings, probe: readonly Range[]): Promise<void> {
  const ending = (await app.status()).session.number;
  const startedAt = Date.now();
  const readable = waitModelReadable(app, app.model, probe);
  const sessionEnd = await app.sessionEnd(true);
  const modelReadableAt = await readable;
  const hydrated = await waitHydrated(app);
  const hydratedAt = Date.now();
  assert.equal(hydrated.regions.pending, 0);
  t.sessionEndMs.push(sessionEnd.ms);
  t.daemonEndMs.push(await app.daemonEndMs(ending));
  t.modelReadableMs.push(modelReadableAt - startedAt);
  t.hydrationMs.push(hydratedAt - startedAt);
}

/** Boots the guest with a scenario and waits for its power-off (which must be clean). */
async function bootAndRun(app: Appliance, dir: string, name: string, scenario: string, t: Timings): Promise<HostVm> {
  const vm = HostVm.start({ dir, name, nbdSocket: app.socket, scenario });
  try {
    await vm.waitPoweroff(180_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${app.logTail()}`);
  }
  t.bootMs.push(bootTime(vm));
  return vm;
}

async function assertExportIsModel(app: Appliance, what: string): Promise<void> {
  const cmp = await compareExportWithModel(app.socket, app.model);
  assert.ok(
    cmp.equal,
    `${what}: the export differs from the model (${cmp.size} bytes read, first difference at ${cmp.firstDifference}, ` +
      `${cmp.differingRegions} regions of 64 KiB differ)`,
  );
  const v = await app.verify();
  assert.equal(v.code, 0, `${what}: snapback verify found an unlogged difference: ${JSON.stringify(v.report)}`);
}

// ---------------------------------------------------------------------------------------------

describe('host boot: a QEMU PC boots from Snapback over USB, writes, is power-cycled, finds the model', function () {
  this.timeout(600_000);
  let root: string;
  let small: HostImage; // 64 MiB
  let large: HostImage; // 256 MiB
  let n = 0;
  const scenarioDir = async (name: string): Promise<string> => {
    const d = path.join(root, `${++n}-${name}`);
    await fs.mkdir(d, { recursive: true });
    return d;
  };
  const apps: Appliance[] = [];
  const appliance = async (dir: string, model: HostImage, restore: 'instant' | 'eager', hydrationRate: number | null = null): Promise<Appliance> => {
    const app = new Appliance(dir, model, restore);
    apps.push(app);
    await app.init();
    await app.serve();
    await app.hydrationRate(hydrationRate);
    const s = await app.statusCli();
    assert.equal(s.restoreMode, restore);
    assert.equal(s.mode, 'frozen', 'a new appliance starts frozen');
    return app;
  };

  before(async function () {
    this.timeout(600_000);
    requireVmTools();
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
    for (const [tool, pkg] of [['nbdcopy', 'libnbd-bin']] as const) {
      const found = (process.env.PATH ?? '').split(':').some((d) => d && existsSync(path.join(d, tool)));
      if (!found) throw new Error(`${tool} not found; install the Debian package ${pkg}`);
    }
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'snapback-host-boot-'));
    small = await buildHostImage({ dir: root, name: 'model-64m', sizeMiB: 64 });
    large = await buildHostImage({ dir: root, name: 'model-256m', sizeMiB: 256 });
    for (const m of [small, large]) {
      await runCli(['model', 'manifest', m.path]);
    }
    console.log(`    models built in ${((small.buildMs + large.buildMs) / 1000).toFixed(1)} s (kernel ${small.kernel.version}) under ${root}`);
  });

  let anyFailed = false;
  after(async function () {
    for (const a of apps) await a.stop().catch(() => undefined);
    printTimings();
    if (!root) return;
    if (anyFailed || process.env.SNAPBACK_KEEP_RIG) console.log(`    rig files (logs, state, disks) kept in ${root}`);
    else await fs.rm(root, { recursive: true, force: true });
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') {
      anyFailed = true;
      for (const a of apps) console.log(a.logTail(40));
    }
    for (const a of apps) await a.stop().catch(() => undefined);
    apps.length = 0;
  });

  it('1. writes, a clean power-off, a power cycle: every file and every byte is the model again; history shows both sessions', async function () {
    const t = timings('1 power-off');
    const dir = await scenarioDir('power-off');
    const app = await appliance(dir, small, 'instant');
    const raw = rawWriteRanges(small);
    const first = await app.status();

    await bootAndRun(app, dir, 'boot-1-write', FILE_CHANGES + rawWritesScript(raw), t);
    const afterWrite = await app.status();
    assert.ok(afterWrite.regions.writtenThisSession >= raw.length, `the write session logged ${afterWrite.regions.writtenThisSession} regions`);
    assert.equal((await app.verify()).code, 0, 'no unlogged difference while the written session is live');

    await powerCycle(app, t, raw);
    const vm = await bootAndRun(app, dir, 'boot-2-check', CHECK_MODEL, t);
    assertGuestSawModel(vm, small);
    await assertExportIsModel(app, 'after the power cycle');
    await app.sessionEnd(true);

    const history = await app.sessions();
    const writeSession = history.find((s) => s.number === first.session.number);
    const checkSession = history.find((s) => s.number === first.session.number + 1);
    assert.ok(writeSession && checkSession, `history lacks the two sessions: ${JSON.stringify(history)}`);
    assert.ok(writeSession.endedAt && checkSession.endedAt, 'both sessions ended');
    assert.equal(writeSession.regionsWritten, afterWrite.regions.writtenThisSession, 'regions written by the write session');
    assert.ok(writeSession.regionsWritten >= raw.length);
    assert.equal(checkSession.regionsWritten, 0, 'the checking boot (read-only) wrote nothing');
    t.notes.push(`sessions: #${writeSession.number} wrote ${writeSession.regionsWritten} regions (${writeSession.bytesWritten} B), #${checkSession.number} wrote ${checkSession.regionsWritten}`);
  });

  it('2. the same with the plug pulled (QEMU killed, no shutdown): the next boot finds the model', async function () {
    const t = timings('2 pulled plug');
    const dir = await scenarioDir('pulled-plug');
    const app = await appliance(dir, small, 'instant');
    const raw = rawWriteRanges(small);
    // Raw writes reach the disk (flushed; the FAT's boot sector is spared so that the FAT can
    // still be mounted); the file changes after them are left in the guest's cache, partly
    // written, when the plug is pulled.
    const script = rawWritesScript(raw.filter((r) => r.offset !== small.bootPartition.start)) + `
mount -t vfat /dev/sda1 /mnt || fail "mount rw"
i=0; while [ $i -lt 50 ]; do echo "unsynced $i" > /mnt/unsynced-$i.txt; i=$((i+1)); done
dd if=/dev/urandom of=/mnt/data/big.bin bs=64k count=32 conv=notrunc 2>/dev/null
mark dirty
wait_host never
`;
    const vm = HostVm.start({ dir, name: 'boot-1-write', nbdSocket: app.socket, scenario: script });
    await vm.waitFor('dirty');
    t.bootMs.push(bootTime(vm));
    const killed = await vm.kill();
    assert.equal(killed.signal, 'SIGKILL');
    assert.equal((await app.verify()).code, 0, 'no unlogged difference after the pulled plug');

    await powerCycle(app, t, raw);
    const check = await bootAndRun(app, dir, 'boot-2-check', CHECK_MODEL, t);
    assertGuestSawModel(check, small);
    await assertExportIsModel(app, 'after the pulled plug');
  });

  it('3. thawed: changes survive power cycles; back to frozen, the next power cycle restores the model', async function () {
    const t = timings('3 thawed');
    const dir = await scenarioDir('thawed');
    const app = await appliance(dir, small, 'instant');
    await app.mode('thawed');
    assert.equal((await app.status()).mode, 'thawed');
    const d = small.dataPartition.start;
    const rawA: Range = { offset: d + 2 * MiB, length: 256 * KiB };
    const rawB: Range = { offset: d + 7 * MiB, length: 128 * KiB };
    const patA = patternFor('A', rawA.length);
    const patB = patternFor('B', rawB.length);
    const hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

    // Boot A (thawed): write A.
    await bootAndRun(app, dir, 'boot-A-thawed', `
mount -t vfat /dev/sda1 /mnt || fail mount
echo "thawed change A" > /mnt/thawed-a.txt
rm /mnt/data/victim.txt
sync; umount /mnt
head -c ${rawA.length} /dev/zero | tr '\\000' 'A' | dd of=/dev/sda bs=64k oflag=seek_bytes seek=${rawA.offset} conv=notrunc,fsync 2>/dev/null
mark wrote-a
`, t);
    const sessionA = (await app.status()).session.number;
    const cycleA = await app.sessionEnd(true);
    t.sessionEndMs.push(cycleA.ms);
    t.daemonEndMs.push(await app.daemonEndMs(sessionA));
    const sA = await app.status();
    assert.equal(sA.mode, 'thawed');
    assert.equal(sA.regions.pending, 0, 'thawed: nothing to restore after a power cycle');
    assert.ok(sA.regions.clean < sA.regions.total, 'thawed: the regions A changed are still tracked as differing from the model');
    assert.equal((await app.verify()).code, 0);

    // Boot B (thawed): A survived; write B; switch to frozen while the guest runs; A and B
    // stay visible until the power cycle.
    const vmB = HostVm.start({ dir, name: 'boot-B-thawed-then-frozen', nbdSocket: app.socket, scenario: `
mount -t vfat -o ro /dev/sda1 /mnt || fail mount
[ "$(cat /mnt/thawed-a.txt)" = "thawed change A" ] || fail "thawed change A did not survive the power cycle"
[ ! -e /mnt/data/victim.txt ] || fail "the deletion did not survive the power cycle"
umount /mnt
[ "$(dd if=/dev/sda bs=64k iflag=skip_bytes,count_bytes skip=${rawA.offset} count=${rawA.length} 2>/dev/null | sha256sum | cut -d' ' -f1)" = "${hex(patA)}" ] || fail "raw change A did not survive"
mount -t vfat /dev/sda1 /mnt || fail mount
echo "thawed change B" > /mnt/thawed-b.txt
sync; umount /mnt
head -c ${rawB.length} /dev/zero | tr '\\000' 'B' | dd of=/dev/sda bs=64k oflag=seek_bytes seek=${rawB.offset} conv=notrunc,fsync 2>/dev/null
mark wrote-b
wait_host frozen
dropcache
mount -t vfat -o ro /dev/sda1 /mnt || fail mount
[ -f /mnt/thawed-a.txt ] && [ -f /mnt/thawed-b.txt ] || fail "switching to frozen changed the disk under the running host"
umount /mnt
[ "$(dd if=/dev/sda bs=64k iflag=skip_bytes,count_bytes skip=${rawB.offset} count=${rawB.length} 2>/dev/null | sha256sum | cut -d' ' -f1)" = "${hex(patB)}" ] || fail "raw change B vanished under the running host"
mark still-there
` });
    await vmB.waitFor('wait');
    await app.mode('frozen');
    const sB = await app.status();
    assert.equal(sB.mode, 'frozen');
    assert.equal(sB.regions.pending, 0, 'switching to frozen restores nothing under a live host');
    vmB.send('frozen');
    await vmB.waitPoweroff();
    t.bootMs.push(bootTime(vmB));

    // The power cycle after going back to frozen restores every change, thawed ones included.
    await powerCycle(app, t, [{ offset: 0, length: 512 }, rawA, rawB]);
    const check = await bootAndRun(app, dir, 'boot-C-check', CHECK_MODEL, t);
    assertGuestSawModel(check, small);
    await assertExportIsModel(app, 'frozen after thawed');
  });

  it('4. instant restore: half of a 256 MiB disk rewritten; the next boot reads the model while regions are pending; hydration finishes under the running guest', async function () {
    const t = timings('4 instant');
    const dir = await scenarioDir('instant');
    const half = large.size / 2;
    const app = await appliance(dir, large, 'instant', HYDRATION_TRICKLE);
    await bootAndRun(app, dir, 'boot-1-rewrite-half', `
dd if=/dev/urandom of=/tmp/pat bs=1M count=1 2>/dev/null
mark rewriting
i=${half / MiB}; while [ $i -lt ${large.size / MiB} ]; do dd if=/tmp/pat of=/dev/sda bs=1M seek=$i conv=notrunc 2>/dev/null; i=$((i+1)); done
dd if=/dev/urandom of=/dev/sda bs=512 count=1 conv=notrunc 2>/dev/null
sync; blockdev --flushbufs /dev/sda; dropcache
[ "$(range_sha ${large.size / MiB - 1} 1)" = "$(sha256sum /tmp/pat | cut -d' ' -f1)" ] || fail "own write not read back"
mark rewritten
`, t);
    const written = await app.status();
    assert.ok(written.regions.writtenThisSession >= half / REGION, `${written.regions.writtenThisSession} regions written`);

    const poller = pollStatus(app, 100);
    const endStart = Date.now();
    const end = await app.sessionEnd(false);
    t.sessionEndMs.push(end.ms);
    const readableAt = await waitModelReadable(app, large, [{ offset: 0, length: 512 }, { offset: half, length: 64 * KiB }, { offset: large.size - 64 * KiB, length: 64 * KiB }]);
    t.modelReadableMs.push(readableAt - endStart);

    const secondHalfSha = await fileRangeSha256(large.path, half, half);
    const vm = HostVm.start({ dir, name: 'boot-2-read-while-pending', nbdSocket: app.socket, scenario: `
mark reading
echo "@@ disk-sha256 $(disk_sha)"
mount -t vfat -o ro /dev/sda1 /mnt || fail mount
report_files /mnt
umount /mnt
mark read-done
wait_host hydrated
dropcache
[ "$(range_sha ${half / MiB} ${half / MiB})" = "${secondHalfSha}" ] || fail "after hydration the rewritten half is not the model's"
mark reread
` });
    const atBoot = await app.status();
    await vm.waitFor('reading');
    // The guest has booted (SeaBIOS, syslinux and Linux read the disk) and starts reading the
    // whole disk: regions are still pending, so what it reads there comes from the model.
    const atRead = await app.status();
    t.bootMs.push(bootTime(vm));
    assert.ok(atRead.regions.pending > 0, `no region pending any more when the guest started reading (${JSON.stringify(atRead.regions)})`);
    // Now let the hydrator go at full speed, under the guest's reads.
    const liftedAt = Date.now();
    await app.hydrationRate(null);
    const readDone = await vm.waitFor('read-done');
    const hydrated = await waitHydrated(app);
    await poller.stop();
    const firstIdle = poller.samples.find((x) => x.sentAt >= liftedAt && x.status.regions.pending === 0 && !x.status.hydration.running);
    const hydratedAt = firstIdle?.at ?? Date.now();
    t.hydrationMs.push(hydratedAt - endStart);
    assert.equal(vm.exited, undefined, 'hydration finished while the guest was running');
    assert.equal(hydrated.regions.pending, 0);
    vm.send('hydrated');
    await vm.waitPoweroff();
    assertGuestSawModel(vm, large);

    const lead = (readDone.at - hydratedAt) / 1000;
    t.notes.push(
      `pending regions (of ${written.regions.writtenThisSession} written): ${atBoot.regions.pending} when QEMU started, ${atRead.regions.pending} when the guest began ` +
        `reading the disk; hydration trickled at ${HYDRATION_TRICKLE / MiB} MiB/s until then, then ran unlimited: ${atRead.regions.pending} regions in ` +
        `${((hydratedAt - liftedAt) / 1000).toFixed(2)} s under the guest's reads, done ${Math.abs(lead).toFixed(2)} s ${lead >= 0 ? 'before' : 'after'} the guest finished reading`,
    );
    t.daemonEndMs.push(await app.daemonEndMs(written.session.number));
    await assertExportIsModel(app, 'instant restore');
  });

  it('5. eager restore: the medium comes back only once every pending region is restored', async function () {
    const t = timings('5 eager');
    const dir = await scenarioDir('eager');
    const app = await appliance(dir, small, 'eager');
    const raw = rawWriteRanges(small);
    const d = small.dataPartition;
    const bulk: Range = { offset: d.start + 12 * MiB, length: 8 * MiB };
    await bootAndRun(app, dir, 'boot-1-write', FILE_CHANGES + rawWritesScript([...raw, bulk]), t);
    const written = await app.status();

    // Probe the medium the whole time the session ends: every read that succeeds after the
    // end was requested must already be the model's bytes, and no status sample asked for
    // after a successful read may show a pending region.
    const probe = [...raw, bulk];
    const expected = await Promise.all(probe.map((r) => fileRange(small.path, r)));
    const poller = pollStatus(app, 50);
    const endStart = Date.now();
    const endP = app.sessionEnd(false);
    let firstModelReadAt = 0;
    const reads: Array<{ sentAt: number; at: number; model: boolean }> = [];
    const probeDeadline = Date.now() + 120_000;
    while (!firstModelReadAt) {
      const sentAt = Date.now();
      try {
        const got = await nbdReadRanges(app.socket, probe);
        const model = got.every((g, i) => g.equals(expected[i]!));
        reads.push({ sentAt, at: Date.now(), model });
        if (model) firstModelReadAt = Date.now();
      } catch {
        /* the medium is not back */
      }
      if (Date.now() > probeDeadline) throw new Error(`eager: the model never became readable\n${app.logTail()}`);
      await sleep(20);
    }
    const end = await endP;
    t.sessionEndMs.push(end.ms);
    t.daemonEndMs.push(await app.daemonEndMs(written.session.number));
    t.modelReadableMs.push(firstModelReadAt - endStart);
    const hydrated = await waitHydrated(app);
    t.hydrationMs.push(Date.now() - endStart);
    await sleep(300);
    await poller.stop();
    assert.equal(hydrated.regions.pending, 0);

    const afterEnd = reads.filter((r) => r.sentAt > end.ms + endStart);
    assert.ok(afterEnd.every((r) => r.model), 'eager: a read after the session end returned the old session\'s data');
    const lateSamples = poller.samples.filter((s) => s.sentAt > firstModelReadAt && s.status.regions.pending > 0);
    assert.deepEqual(lateSamples.map((s) => s.status.regions.pending), [], 'eager: the medium was readable while regions were still pending');
    const pendingSeen = poller.samples.filter((s) => s.status.regions.pending > 0);
    t.notes.push(`restored ${written.regions.writtenThisSession} regions; status showed pending regions in ${pendingSeen.length} samples before the medium came back`);

    const check = await bootAndRun(app, dir, 'boot-2-check', CHECK_MODEL, t);
    assertGuestSawModel(check, small);
    await assertExportIsModel(app, 'eager restore');
    const history = await app.sessions();
    const ended = history.find((s) => s.number === written.session.number);
    assert.ok(ended?.endedAt, `the written session is in the history: ${JSON.stringify(history)}`);
    t.notes.push(`history: sessionEndMs ${ended.sessionEndMs}, restoreMs ${ended.restoreMs}`);
  });

  it('6. the daemon is killed (kill -9) while the guest writes; it restarts; the next boot finds the model', async function () {
    const t = timings('6 daemon killed');
    const dir = await scenarioDir('daemon-killed');
    const app = await appliance(dir, small, 'instant');
    const d = small.dataPartition.start;
    const before = await app.status();
    const vm = HostVm.start({ dir, name: 'boot-1-writing', nbdSocket: app.socket, scenario: `
mount -t vfat /dev/sda1 /mnt || fail mount
dd if=/dev/urandom of=/tmp/pat bs=256k count=1 2>/dev/null
i=0
while true; do
  dd if=/tmp/pat of=/dev/sda bs=256k oflag=seek_bytes seek=$((${d} + i * 262144 % (16 * 1048576))) conv=notrunc,fsync 2>/dev/null || fail "write $i failed"
  echo "file $i" > /mnt/file-$i.txt
  [ $((i % 4)) -eq 0 ] && sync
  mark wrote $i
  i=$((i+1))
done
` });
    await vm.waitFor('wrote');
    while (vm.all('wrote').length < 8 && !vm.exited) await sleep(20);
    t.bootMs.push(bootTime(vm));
    await app.kill9();
    t.notes.push(`daemon killed after the guest reported ${vm.all('wrote').length} flushed writes`);
    await vm.kill(); // the host goes down with it (see docs/host-boot-rig.md)

    // With the daemon dead, the log on disk covers every difference.
    const v = await app.verify();
    assert.equal(v.code, 0, `after kill -9: unlogged difference: ${JSON.stringify(v.report)}`);
    const restartStart = Date.now();
    const serveMs = await app.serve(); // starting the daemon ends the session
    t.sessionEndMs.push(serveMs);
    const readableAt = await waitModelReadable(app, small, [{ offset: 0, length: 512 }, { offset: d, length: 4 * MiB }]);
    t.modelReadableMs.push(readableAt - restartStart);
    await waitHydrated(app);
    t.hydrationMs.push(Date.now() - restartStart);
    const after = await app.status();
    assert.ok(after.session.number > before.session.number, 'the restart began a new session');
    const killed = (await app.sessions()).find((x) => x.number === before.session.number);
    assert.ok(killed, 'the session the daemon died in is in the history');
    assert.ok(killed.endedAt, 'the session the daemon died in was ended by the restart');
    assert.equal(killed.endReason, 'daemon-start');
    assert.ok(killed.regionsWritten > 0, `the history counts the regions written before the crash (${killed.regionsWritten})`);
    t.daemonEndMs.push(killed.sessionEndMs ?? NaN);
    t.notes.push(`the killed session: ${killed.regionsWritten} regions written, ended by ${killed.endReason}`);

    const check = await bootAndRun(app, dir, 'boot-2-check', CHECK_MODEL, t);
    assertGuestSawModel(check, small);
    await assertExportIsModel(app, 'after kill -9 of the daemon');
  });

  it('7. a thawed maintenance session captured as the new baseline, then a switch back to the first model, each followed by a power cycle', async function () {
    const t = timings('7 capture, switch');
    const dir = await scenarioDir('capture-switch');
    const app = await appliance(dir, small, 'instant');
    const cli = (args: string[]): Promise<CliResult> => runCli([...args, '--state-dir', app.stateDir]);
    await app.mode('thawed');

    // Boot 1, thawed: the maintenance (an update installed); then captured as the new baseline
    await bootAndRun(app, dir, 'boot-1-maintenance', `
mount -t vfat /dev/sda1 /mnt || fail mount
echo "installed update" > /mnt/update.txt
rm /mnt/data/victim.txt
sync; umount /mnt
mark updated
`, t);
    const captured = (await cli(['model', 'capture', '--name', 'updated', '--activate'])).stdout.trim().split('\n').pop() ?? '';
    assert.match(captured, /^[0-9a-f]{64}$/, 'capture prints the new model id last');
    const s1 = await app.status();
    assert.equal(s1.regions.pending, 0, 'capture --activate made regions pending: a restore would follow');
    assert.equal((await app.verify()).code, 0, 'an unlogged difference from the captured model');
    await app.mode('frozen');
    const capturedImage: HostImage = { ...small, path: path.join(app.stateDir, 'models', captured, 'image') };

    // Boot 2, frozen: the update is there; junk written; a power cycle brings the captured model back
    await bootAndRun(app, dir, 'boot-2-junk', `
mount -t vfat /dev/sda1 /mnt || fail mount
[ "$(cat /mnt/update.txt)" = "installed update" ] || fail "the captured update is missing"
echo junk > /mnt/junk.txt
sync; umount /mnt
mark junked
`, t);
    await app.sessionEnd(true);
    await waitHydrated(app);
    const cmp = await compareExportWithModel(app.socket, capturedImage);
    assert.ok(cmp.equal, `after the power cycle the export is not the captured model (first difference at ${cmp.firstDifference}, ${cmp.differingRegions} regions)`);
    await bootAndRun(app, dir, 'boot-3-check-captured', `
mount -t vfat -o ro /dev/sda1 /mnt || fail mount
[ "$(cat /mnt/update.txt)" = "installed update" ] || fail "the captured update is missing after the power cycle"
[ ! -e /mnt/junk.txt ] || fail "the junk of the frozen session survived the power cycle"
[ ! -e /mnt/data/victim.txt ] || fail "the captured deletion was undone"
umount /mnt
mark checked
`, t);

    // A switch back to the first model: it takes effect at the power cycle
    const list = JSON.parse((await cli(['model', 'list', '--json'])).stdout) as { id: string; name: string; active: boolean }[];
    const first = list.find((m) => m.id !== captured);
    assert.ok(first && list.find((m) => m.id === captured)?.active, `the library: ${JSON.stringify(list)}`);
    const act = await cli(['model', 'activate', first.id]);
    assert.match(act.stdout, /next session end/);
    await app.sessionEnd(true);
    await waitHydrated(app);
    const vm = await bootAndRun(app, dir, 'boot-4-check-first', CHECK_MODEL, t);
    assertGuestSawModel(vm, small);
    await assertExportIsModel(app, 'after the switch back to the first model');
  });

  it('8. a new appliance provisioned by init --model URL: the host boots from the model while it is still downloading, reads its files, writes; the download completes; a power cycle brings the model back', async function () {
    const t = timings('8 lazy boot');
    const dir = await scenarioDir('lazy-url');
    // the remote system: nginx serving the model and its manifest, each connection at most 4 MiB/s
    const www = path.join(dir, 'www');
    await fs.mkdir(www);
    await fs.copyFile(small.path, path.join(www, 'model.img'));
    await fs.copyFile(`${small.path}.manifest.json`, path.join(www, 'model.img.manifest.json'));
    const nginx = await Nginx.start(path.join(dir, 'nginx'), { root: www, rateLimit: 4 * MiB });
    try {
      const app = new Appliance(dir, small, 'instant');
      apps.push(app);
      await app.initFromUrl(nginx.url('slow', 'model.img'));
      const cli = (args: string[]): Promise<CliResult> => runCli([...args, '--state-dir', app.stateDir]);
      const [lazy] = JSON.parse((await cli(['model', 'list', '--json'])).stdout) as LibraryModel[];
      assert.ok(lazy && lazy.active && !lazy.complete, `init --model URL: ${JSON.stringify(lazy)}`);
      // the background download trickles (kept for the daemon's start), so that the host boots
      // while most of the model is still on the server; what the host reads is fetched first
      await cli(['model', 'download-rate', lazy.id, String(LAZY_TRICKLE)]);
      await app.serve();
      await app.hydrationRate(LAZY_TRICKLE);

      const vm = await bootAndRun(app, dir, 'boot-1-lazy', `
mark check-start
mount -t vfat -o ro /dev/sda1 /mnt || fail "mount the model's FAT"
report_files /mnt
umount /mnt
mount -t vfat /dev/sda1 /mnt || fail "mount rw"
echo "written while the model arrives" > /mnt/lazy-write.txt
dd if=/dev/urandom of=/mnt/data/big.bin bs=64k count=8 conv=notrunc 2>/dev/null
sync; umount /mnt
dropcache
mount -t vfat -o ro /dev/sda1 /mnt || fail "remount ro"
[ "$(cat /mnt/lazy-write.txt)" = "written while the model arrives" ] || fail "the write is not read back"
umount /mnt
mark checked
`, t);
      assertGuestSawModelFiles(vm, small);
      const during = (await app.models()).find((m) => m.id === lazy.id);
      assert.ok(during?.download && !during.complete && during.download.regionsDone < during.download.regionsTotal,
        `the guest booted and powered off with the download still running: ${JSON.stringify(during)}`);
      t.notes.push(`${during.download.regionsDone} of ${during.download.regionsTotal} model regions were here when the guest powered off`);

      // the rest arrives; the model becomes complete in the library
      await cli(['model', 'download-rate', lazy.id, 'unlimited']);
      await app.hydrationRate(null);
      const deadline = Date.now() + 180_000;
      for (;;) {
        const m = (await app.models()).find((x) => x.id === lazy.id);
        if (m?.complete && m.download === null) break;
        if (Date.now() > deadline) throw new Error(`the download did not complete: ${JSON.stringify(m)}\n${app.logTail()}`);
        await sleep(250);
      }
      // the power cycle: the guest's writes are undone, the export is the model, every byte
      await powerCycle(app, t, [{ offset: small.bootPartition.start, length: 4096 }]);
      await assertExportIsModel(app, 'after the download completed and a power cycle');
    } finally {
      await nginx.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------

/**
 * Scenario 8's background download and restore rates while the guest boots: one 1 MiB model
 * region in 32 s each, so that most of the 64 MiB model is still on the server when the guest
 * powers off, however slowly TCG boots on a loaded machine (a 150 s boot: ~10 regions).
 */
const LAZY_TRICKLE = 32 * KiB;

/**
 * Scenario 4's hydration rate until the guest starts reading: slow enough that regions are
 * surely still pending then, however slowly TCG boots on a loaded machine (128 MiB take 128 s).
 */
const HYDRATION_TRICKLE = 1 * MiB;

function patternFor(letter: string, length: number): Buffer {
  return Buffer.alloc(length, letter);
}
