/**
 * The NBD benchmark: the same image served by Snapback's NBD server (in
 * its own Node process, bench/nbd-serve-entry.ts), by `nbdkit file` and by
 * `qemu-nbd --cache=writeback --aio=threads`, over unix sockets, with the same client
 * workloads in one run, interleaved server by server within each round:
 *   - nbdcopy sequential read and write, 1 MiB and 128 KiB requests (-C 1 -T 1 -R 16 --no-extents)
 *   - fio's nbd engine, 4 KiB random read and write at queue depth 1 (client and every server
 *     thread pinned to one CPU: otherwise it measures cross-CPU wakeups) and 32.
 * Reports MB/s or IOPS, the server's CPU time per request (fio workloads), and our ratio to
 * each peer; the median over rounds is the figure, every sample is kept.
 *
 * The image lives on /dev/shm: tmpfs keeps every server's I/O in memory and steady, so the
 * figures compare the servers rather than the disk (buffered overwrites of an ext4 file vary
 * up to 10x between runs on this kernel), and it never touches the SD card on a Pi.
 *
 *   runNbdBench({ deviceModule })   // a module exporting makeDevice(imagePath) for our server
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, open, rm, rmdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlockDevice } from '../appliance/storage/block-device.js';
import { isTmpfs } from './filesystem.js';
import { unitNodeOptions } from '../test/helpers/unit-node-options.js';
import { nativeIo } from '../appliance/native/native-io.js';
import { SEND_BUFFER_BYTES } from '../appliance/nbd/reply-sender.js';

export type ServerName = 'snapback' | 'nbdkit' | 'qemu-nbd';

export interface NbdBenchOptions {
  /** Work directory (default /dev/shm/snapback-nbd-bench-PID, or os.tmpdir() without tmpfs). Removed afterwards. */
  dir?: string;
  /** Image size (default 1 GiB). */
  imageBytes?: number;
  /**
   * ES module exporting `makeDevice(imagePath): Promise<BlockDevice>` that our server (a child
   * process) serves; default: the image through FileDevice.
   */
  deviceModule?: string;
  /**
   * Accepted for symmetry with the in-process benches, but a function cannot cross into the
   * server's process: pass `deviceModule` (the module that exports it) as well.
   */
  makeDevice?: (imagePath: string) => Promise<BlockDevice>;
  /**
   * Rounds of the whole interleaved set; the median is reported (default 5). On the shared VMs
   * this runs on, a server now and then runs a whole workload at half speed with twice the CPU
   * time per GiB, with no more context switches, page faults or migrations than in its other
   * rounds (perf stat): the virtual CPU was slower. It strikes every server; with three rounds
   * one such round moved a median by a fifth.
   */
  rounds?: number;
  /** Seconds per fio workload (default 4). */
  fioSeconds?: number;
  /** Peers to compare with (default both). */
  peers?: Array<'nbdkit' | 'qemu-nbd'>;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
  /** Workload ids to run (default all). */
  only?: string[];
  /** Skip the Pi-budget measurement (default: run it). */
  skipPiBudget?: boolean;
}

export interface WorkloadResult {
  id: string;
  description: string;
  unit: 'MB/s' | 'IOPS';
  /** Median per server. */
  value: Partial<Record<ServerName, number>>;
  samples: Partial<Record<ServerName, number[]>>;
  /** Server CPU time per request in microseconds (fio workloads), median. */
  serverCpuUsPerRequest?: Partial<Record<ServerName, number>>;
  /** Server CPU seconds (all threads) per GiB moved, median. */
  serverCpuSecondsPerGiB?: Partial<Record<ServerName, number>>;
  /** The same per round, in round order (how much the median moves). */
  serverCpuSecondsPerGiBSamples?: Partial<Record<ServerName, number[]>>;
  ratioToNbdkit?: number;
  ratioToQemuNbd?: number;
  /** Our CPU per GiB divided by nbdkit's (at most 1 is the target on the target rows). */
  cpuRatioToNbdkit?: number;
  /**
   * Our server only, per sample: how many times its inline I/O governor turned inline I/O off
   * (a call it took for a disk wait; appliance/storage/inline-io.ts), and the share of the
   * sample's requests done inline. Requests not done inline took the batched worker.
   */
  inlineIo?: Array<{ off: number; inlineShare: number | null }>;
  /** The target, as a ratio to nbdkit. */
  target?: number;
  pass?: boolean;
  /** Whether our CPU per GiB is at most nbdkit's (target rows). */
  cpuPass?: boolean;
}

/**
 * The Pi-sized budget: our server limited to 25 % of one core must sustain 40 MB/s sequential
 * read and write. Measured under a cgroup CPU limit where the machine allows it (v2 cpu.max, or
 * v1's CFS quota); otherwise derived from the CPU seconds per GiB.
 */
export interface PiBudget {
  /** How the figures were obtained. */
  method: 'cgroup cpu.max' | 'cgroup v1 cpu quota' | 'estimated from CPU seconds per GiB';
  note: string;
  rows: Array<{
    id: string;
    cpuSecondsPerGiB: number;
    /** MB/s at 25 % of one core of this machine (measured or estimated). */
    mbPerSecondAtQuarterCore: number;
    /** MB/s one Pi 4 core (about 5x slower than one core here) would sustain at 100 %. */
    mbPerSecondOnePi4Core: number;
    target: number;
    pass: boolean;
  }>;
}

export interface NbdBenchResult {
  startedAt: string;
  durationS: number;
  env: {
    node: string;
    cpus: number;
    cpu: string;
    kernel: string;
    nbdkit: string;
    qemuNbd: string;
    nbdcopy: string;
    fio: string;
    dir: string;
    tmpfs: boolean;
    /** Whether our server splices large reads (the native addon loaded), and the socket limit it meets. */
    nativeIo?: string;
  };
  imageBytes: number;
  rounds: number;
  device: string;
  workloads: WorkloadResult[];
  piBudget: PiBudget | null;
  markdown: string;
}

interface Workload {
  id: string;
  description: string;
  unit: 'MB/s' | 'IOPS';
  target?: number;
  run(ctx: RunContext, server: RunningServer): Promise<{ value: number; requests?: number; cpuUsPerRequest?: number; cpuSecondsPerGiB?: number }>;
}

interface RunContext {
  imageBytes: number;
  sourcePath: string;
  fioSeconds: number;
}

interface RunningServer {
  name: ServerName;
  uri: string;
  pid: number;
  child: ChildProcess;
  exited: Promise<void>;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** The Pi budget: this share of one core, and the throughput it must sustain (MB/s). */
const PI_CPU_SHARE = 0.25;
const PI_TARGET_MBS = 40;
/** A Pi 4 core against one core of the machines this runs on. */
const PI4_SLOWDOWN = 5;
/** Untimed whole-image writes per server before the rounds (see runNbdBench). */
const WRITE_WARMUPS = 3;
const NBDCOPY_BASE = ['-C', '1', '-T', '1', '-R', '16', '--no-extents'];

function nbdcopyWorkload(id: string, direction: 'read' | 'write', requestSize: number, target?: number): Workload {
  return {
    id,
    description: `nbdcopy sequential ${direction}, ${requestSize >= MiB ? `${requestSize / MiB} MiB` : `${requestSize / 1024} KiB`} requests`,
    unit: 'MB/s',
    target,
    async run(ctx, server) {
      const args = [...NBDCOPY_BASE, `--request-size=${requestSize}`, ...(direction === 'read' ? [server.uri, 'null:'] : [ctx.sourcePath, server.uri])];
      const cpu0 = processCpuSeconds(server.pid);
      const t0 = process.hrtime.bigint();
      await run('nbdcopy', args);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpuSeconds = processCpuSeconds(server.pid) - cpu0;
      return { value: ctx.imageBytes / 1e6 / seconds, cpuSecondsPerGiB: cpuSeconds / (ctx.imageBytes / GiB) };
    },
  };
}

function fioWorkload(id: string, rw: 'randread' | 'randwrite', iodepth: number, target?: number): Workload {
  const pinned = iodepth === 1;
  return {
    id,
    description: `fio nbd engine, 4 KiB ${rw}, queue depth ${iodepth}${pinned ? ' (client and server on one CPU)' : ''}`,
    unit: 'IOPS',
    target,
    async run(ctx, server) {
      const cpu = pinned ? pinCpu() : null;
      if (cpu !== null) await run('taskset', ['-a', '-p', '-c', String(cpu), String(server.pid)]);
      try {
        const before = processCpuSeconds(server.pid);
        const args = [
          '--name=nbd',
          '--ioengine=nbd',
          `--uri=${server.uri}`,
          `--rw=${rw}`,
          '--bs=4k',
          `--iodepth=${iodepth}`,
          `--runtime=${ctx.fioSeconds}`,
          '--time_based',
          `--size=${ctx.imageBytes}`,
          '--output-format=json',
        ];
        const out = cpu !== null ? await run('taskset', ['-c', String(cpu), 'fio', ...args]) : await run('fio', args);
        const cpuSeconds = processCpuSeconds(server.pid) - before;
        const json = JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<Record<'read' | 'write', { iops: number; total_ios: number }>> };
        const job = json.jobs[0]![rw === 'randread' ? 'read' : 'write'];
        return {
          value: job.iops,
          requests: job.total_ios,
          cpuUsPerRequest: job.total_ios > 0 ? (cpuSeconds * 1e6) / job.total_ios : undefined,
          cpuSecondsPerGiB: job.total_ios > 0 ? cpuSeconds / ((job.total_ios * 4096) / GiB) : undefined,
        };
      } finally {
        if (cpu !== null) await run('taskset', ['-a', '-p', '-c', `0-${os.cpus().length - 1}`, String(server.pid)]).catch(() => undefined);
      }
    },
  };
}

/** Target rows: at least as fast as nbdkit, with at most its CPU per GiB. */
export const WORKLOADS: readonly Workload[] = [
  nbdcopyWorkload('seq-read-1m', 'read', MiB, 1.0),
  nbdcopyWorkload('seq-write-1m', 'write', MiB, 1.0),
  nbdcopyWorkload('seq-read-128k', 'read', 128 * 1024),
  nbdcopyWorkload('seq-write-128k', 'write', 128 * 1024),
  fioWorkload('randread-4k-qd1', 'randread', 1),
  fioWorkload('randwrite-4k-qd1', 'randwrite', 1),
  fioWorkload('randread-4k-qd32', 'randread', 32, 1.0),
  fioWorkload('randwrite-4k-qd32', 'randwrite', 32, 1.0),
];

/** Runs only the workloads whose id is listed (all by default). */
function selectWorkloads(only: readonly string[] | undefined): readonly Workload[] {
  if (!only || only.length === 0) return WORKLOADS;
  const unknown = only.filter((id) => !WORKLOADS.some((w) => w.id === id));
  if (unknown.length) throw new Error(`unknown NBD workload(s) ${unknown.join(', ')}; known: ${WORKLOADS.map((w) => w.id).join(', ')}`);
  return WORKLOADS.filter((w) => only.includes(w.id));
}

export async function runNbdBench(opts: NbdBenchOptions = {}): Promise<NbdBenchResult> {
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  if (opts.makeDevice && !opts.deviceModule) {
    throw new Error('runNbdBench: our server runs in a child process; pass deviceModule (a module exporting makeDevice)');
  }
  for (const tool of ['nbdcopy', 'fio', 'taskset', ...(opts.peers ?? ['nbdkit', 'qemu-nbd'])]) await requireTool(tool);
  const started = new Date();
  const imageBytes = opts.imageBytes ?? 1024 * MiB;
  const rounds = opts.rounds ?? 5;
  const fioSeconds = opts.fioSeconds ?? 4;
  const peers = opts.peers ?? ['nbdkit', 'qemu-nbd'];
  const dir = resolve(opts.dir ?? (isTmpfs('/dev/shm') ? join('/dev/shm', `snapback-nbd-bench-${process.pid}`) : join(os.tmpdir(), `snapback-nbd-bench-${process.pid}`)));
  await mkdir(dir, { recursive: true });
  const imagePath = join(dir, 'disk.img');
  const sourcePath = join(dir, 'source.img');
  const servers: RunningServer[] = [];
  try {
    log(`nbd bench: writing two ${imageBytes / MiB} MiB images of random data in ${dir}`);
    await writeRandomFile(imagePath, imageBytes);
    await writeRandomFile(sourcePath, imageBytes);

    servers.push(await startSnapback(dir, imagePath, opts.deviceModule));
    if (peers.includes('nbdkit')) servers.push(await startPeer('nbdkit', dir, imagePath));
    if (peers.includes('qemu-nbd')) servers.push(await startPeer('qemu-nbd', dir, imagePath));

    const ctx: RunContext = { imageBytes, sourcePath, fioSeconds };
    // Untimed warm-up per server, for every server alike: one read of the whole image, then
    // three writes of it. JIT tiers, buffer pools and first-touch page faults are paid before
    // anything is measured, and the write log has marked every region (the steady state of a
    // session; first-touch writes are measured by the storage benchmark). Measured on our
    // server: the first three GiB of 1 MiB writes cost 17, 15 and 13 cs of user CPU, later ones
    // 7-9; a cold first round decided the median of five.
    for (const server of servers) {
      await run('nbdcopy', [...NBDCOPY_BASE, `--request-size=${MiB}`, server.uri, 'null:']);
      for (let i = 0; i < WRITE_WARMUPS; i++) await run('nbdcopy', [...NBDCOPY_BASE, `--request-size=${MiB}`, sourcePath, server.uri]);
    }
    const samples = new Map<string, Map<ServerName, number[]>>();
    const inline = new Map<string, Array<{ off: number; inlineShare: number | null }>>();
    const cpu = new Map<string, Map<ServerName, number[]>>();
    const cpuGiB = new Map<string, Map<ServerName, number[]>>();
    const workloadsRun = selectWorkloads(opts.only);
    for (let round = 0; round < rounds; round++) {
      for (const w of workloadsRun) {
        // Rotate the order each round so that no server always runs first (warm) or last.
        const order = servers.map((_, i) => servers[(i + round) % servers.length]!);
        for (const server of order) {
          const inlineBefore = await inlineIoStats(server);
          const r = await w.run(ctx, server);
          const inlineAfter = await inlineIoStats(server);
          let inlineNote = '';
          if (inlineBefore && inlineAfter) {
            const off = inlineAfter.off - inlineBefore.off;
            const inlineShare = r.requests ? round2((inlineAfter.calls - inlineBefore.calls) / r.requests) : null;
            let xs = inline.get(w.id);
            if (!xs) inline.set(w.id, (xs = []));
            xs.push({ off, inlineShare });
            inlineNote = `${inlineShare !== null ? `, ${Math.round(inlineShare * 100)} % inline` : ''}${off ? `, inline I/O turned off ${off}×` : ''}`;
          }
          push(samples, w.id, server.name, r.value);
          if (r.cpuUsPerRequest !== undefined) push(cpu, w.id, server.name, r.cpuUsPerRequest);
          if (r.cpuSecondsPerGiB !== undefined) push(cpuGiB, w.id, server.name, r.cpuSecondsPerGiB);
          log(
            `  round ${round + 1}/${rounds} ${w.id} ${server.name}: ${r.value.toFixed(w.unit === 'IOPS' ? 0 : 1)} ${w.unit}` +
              `${r.cpuUsPerRequest !== undefined ? `, server cpu ${r.cpuUsPerRequest.toFixed(1)} µs/request` : ''}` +
              `${r.cpuSecondsPerGiB !== undefined ? `, ${r.cpuSecondsPerGiB.toFixed(2)} cpu-s/GiB` : ''}${inlineNote}`,
          );
        }
      }
    }

    const workloads: WorkloadResult[] = workloadsRun.map((w) => {
      const value: Partial<Record<ServerName, number>> = {};
      const all: Partial<Record<ServerName, number[]>> = {};
      const cpuMedian: Partial<Record<ServerName, number>> = {};
      const cpuGiBMedian: Partial<Record<ServerName, number>> = {};
      const cpuGiBAll: Partial<Record<ServerName, number[]>> = {};
      for (const s of servers) {
        const xs = samples.get(w.id)?.get(s.name) ?? [];
        all[s.name] = xs.map((x) => round2(x));
        value[s.name] = round2(median(xs));
        const cs = cpu.get(w.id)?.get(s.name);
        if (cs?.length) cpuMedian[s.name] = round2(median(cs));
        const gs = cpuGiB.get(w.id)?.get(s.name);
        if (gs?.length) {
          cpuGiBMedian[s.name] = Math.round(median(gs) * 1000) / 1000;
          cpuGiBAll[s.name] = gs.map((g) => Math.round(g * 1000) / 1000);
        }
      }
      const ours = value.snapback ?? 0;
      const result: WorkloadResult = { id: w.id, description: w.description, unit: w.unit, value, samples: all };
      if (Object.keys(cpuMedian).length) result.serverCpuUsPerRequest = cpuMedian;
      if (Object.keys(cpuGiBMedian).length) {
        result.serverCpuSecondsPerGiB = cpuGiBMedian;
        result.serverCpuSecondsPerGiBSamples = cpuGiBAll;
      }
      if (value.nbdkit) result.ratioToNbdkit = round2(ours / value.nbdkit);
      if (value['qemu-nbd']) result.ratioToQemuNbd = round2(ours / value['qemu-nbd']);
      const inlineSamples = inline.get(w.id);
      if (inlineSamples) result.inlineIo = inlineSamples;
      if (cpuGiBMedian.snapback !== undefined && cpuGiBMedian.nbdkit) result.cpuRatioToNbdkit = round2(cpuGiBMedian.snapback / cpuGiBMedian.nbdkit);
      if (w.target !== undefined && result.ratioToNbdkit !== undefined) {
        result.target = w.target;
        result.pass = result.ratioToNbdkit >= w.target;
        if (result.cpuRatioToNbdkit !== undefined) result.cpuPass = result.cpuRatioToNbdkit <= 1;
      }
      return result;
    });
    const piBudget = opts.skipPiBudget ? null : await measurePiBudget(ctx, servers.find((s) => s.name === 'snapback')!, workloads, log);

    const result: Omit<NbdBenchResult, 'markdown'> = {
      startedAt: started.toISOString(),
      durationS: Math.round((Date.now() - started.getTime()) / 100) / 10,
      env: {
        node: process.version,
        cpus: os.cpus().length,
        cpu: os.cpus()[0]?.model ?? 'unknown',
        kernel: os.release(),
        nbdkit: peers.includes('nbdkit') ? (await run('nbdkit', ['--version'])).trim() : '',
        qemuNbd: peers.includes('qemu-nbd') ? ((await run('qemu-nbd', ['--version'])).split('\n')[0] ?? '').trim() : '',
        nbdcopy: ((await run('nbdcopy', ['--version'])).split('\n')[0] ?? '').trim(),
        fio: (await run('fio', ['--version'])).trim(),
        dir,
        tmpfs: isTmpfs(dir),
        nativeIo: nativeIoNote(),
      },
      imageBytes,
      rounds,
      device: `${opts.deviceModule ? `makeDevice from ${opts.deviceModule}` : 'FileDevice'}${unitNodeOptions() ? `, node ${unitNodeOptions()} (the appliance unit's NODE_OPTIONS)` : ''}`,
      workloads,
      piBudget,
    };
    return { ...result, markdown: nbdMarkdown(result) };
  } finally {
    await Promise.all(servers.map((s) => stopServer(s)));
    await rm(dir, { recursive: true, force: true });
  }
}

const CGROUP_ROOT = '/sys/fs/cgroup';
/** Where the cgroup v1 cpu controller is mounted (on hosts still on the legacy hierarchy). */
const CGROUP_V1_CPU = join(CGROUP_ROOT, 'cpu');

/** A cgroup our server runs in for the Pi budget, limited to PI_CPU_SHARE of one core. */
interface CpuLimitedGroup {
  method: PiBudget['method'];
  note: string;
  /** Moves every thread of `pid` into the group. */
  enter(pid: number): Promise<void>;
  /** Moves `pid` back to the root group and removes the group. */
  remove(pid: number): Promise<void>;
}

/**
 * Makes a cgroup with a CPU limit of a quarter of one core: cgroup v2's cpu.max where the cpu
 * controller is enabled, else cgroup v1's CFS quota (cpu.cfs_quota_us over cpu.cfs_period_us),
 * which limits the same way. Throws, saying why, where neither can be made.
 */
async function makeCpuLimitedGroup(name: string): Promise<CpuLimitedGroup> {
  const quota = Math.round(PI_CPU_SHARE * 100_000);
  const made = (root: string, group: string, method: PiBudget['method'], note: string): CpuLimitedGroup => ({
    method,
    note,
    enter: (pid) => writeFile(join(group, 'cgroup.procs'), `${pid}\n`),
    remove: async (pid) => {
      await writeFile(join(root, 'cgroup.procs'), `${pid}\n`).catch(() => undefined);
      await rmdir(group).catch(() => undefined);
    },
  });
  let v2Why: string;
  try {
    const controllers = readFileSync(join(CGROUP_ROOT, 'cgroup.controllers'), 'utf8');
    if (!controllers.split(/\s+/).includes('cpu')) throw new Error('the cgroup v2 cpu controller is not enabled');
    const group = join(CGROUP_ROOT, name);
    await mkdir(group);
    try {
      await writeFile(join(group, 'cpu.max'), `${quota} 100000\n`);
    } catch (err) {
      await rmdir(group).catch(() => undefined);
      throw err;
    }
    return made(CGROUP_ROOT, group, 'cgroup cpu.max', `our server in a cgroup v2 with cpu.max ${quota} 100000`);
  } catch (err) {
    v2Why = (err as Error).message.split('\n')[0] ?? '';
  }
  try {
    if (!existsSync(join(CGROUP_V1_CPU, 'cpu.cfs_quota_us'))) throw new Error('no cgroup v1 cpu controller either');
    const group = join(CGROUP_V1_CPU, name);
    await mkdir(group);
    try {
      await writeFile(join(group, 'cpu.cfs_period_us'), '100000\n');
      await writeFile(join(group, 'cpu.cfs_quota_us'), `${quota}\n`);
    } catch (err) {
      await rmdir(group).catch(() => undefined);
      throw err;
    }
    return made(CGROUP_V1_CPU, group, 'cgroup v1 cpu quota', `our server in a cgroup v1 with cpu.cfs_quota_us ${quota} per cpu.cfs_period_us 100000 (no cgroup v2 cpu controller here: ${v2Why})`);
  } catch (err) {
    throw new Error(`${v2Why}; ${(err as Error).message.split('\n')[0] ?? ''}`);
  }
}

/**
 * Our server's sequential 1 MiB read and write under a quarter of one core: measured in a
 * cgroup with a CPU limit where this machine lets us make one (cgroup v2 cpu.max, else the
 * cgroup v1 CFS quota), else derived from the CPU seconds per GiB measured above (our
 * server's own threads only; the client is not counted).
 */
async function measurePiBudget(ctx: RunContext, ours: RunningServer, workloads: WorkloadResult[], log: (line: string) => void): Promise<PiBudget> {
  const ids = ['seq-read-1m', 'seq-write-1m'];
  const rowsFor = (mbs: (id: string, cpuGiB: number) => number): PiBudget['rows'] =>
    ids.flatMap((id) => {
      const cpuGiB = workloads.find((w) => w.id === id)?.serverCpuSecondsPerGiB?.snapback;
      if (cpuGiB === undefined || cpuGiB <= 0) return [];
      const atQuarter = round2(mbs(id, cpuGiB));
      return [{ id, cpuSecondsPerGiB: cpuGiB, mbPerSecondAtQuarterCore: atQuarter, mbPerSecondOnePi4Core: round2(GiB / 1e6 / (PI4_SLOWDOWN * cpuGiB)), target: PI_TARGET_MBS, pass: atQuarter >= PI_TARGET_MBS }];
    });
  let why = '';
  try {
    const group = await makeCpuLimitedGroup(`snapback-bench-${process.pid}`);
    try {
      await group.enter(ours.pid);
      const measured = new Map<string, number>();
      for (const id of ids) {
        const w = WORKLOADS.find((x) => x.id === id)!;
        const r = await w.run(ctx, ours);
        measured.set(id, r.value);
        log(`  pi budget (${group.method}, ${PI_CPU_SHARE * 100} % of one core) ${id}: ${r.value.toFixed(1)} MB/s`);
      }
      return { method: group.method, note: group.note, rows: rowsFor((id) => measured.get(id) ?? 0) };
    } finally {
      await group.remove(ours.pid);
    }
  } catch (err) {
    why = (err as Error).message.split('\n')[0] ?? '';
  }
  log(`  pi budget: no cgroup with a CPU limit here (${why}); estimating from CPU seconds per GiB`);
  return {
    method: 'estimated from CPU seconds per GiB',
    note: `no cgroup with a CPU limit on this machine (${why}); MB/s at ${PI_CPU_SHARE * 100} % of one core = ${PI_CPU_SHARE} × 1 GiB ÷ CPU seconds per GiB`,
    rows: rowsFor((_id, cpuGiB) => (PI_CPU_SHARE * GiB) / 1e6 / cpuGiB),
  };
}

/** A Markdown summary (a table per unit, the ratios and the targets). */
export function nbdMarkdown(r: Omit<NbdBenchResult, 'markdown'>): string {
  const names: ServerName[] = ['snapback', 'nbdkit', 'qemu-nbd'];
  const fmt = (w: WorkloadResult, n: ServerName): string => {
    const v = w.value[n];
    if (v === undefined) return '–';
    const c = w.serverCpuUsPerRequest?.[n];
    const main = w.unit === 'IOPS' ? `${(v / 1000).toFixed(1)} k` : `${Math.round(v)}`;
    return c !== undefined ? `${main} (${c.toFixed(1)} µs)` : main;
  };
  const lines = [
    `### NBD server beside nbdkit and qemu-nbd`,
    '',
    `${r.imageBytes / MiB} MiB image on ${r.env.dir} (${r.env.tmpfs ? 'tmpfs' : 'not tmpfs'}), unix sockets; our device: ${r.device}. ` +
      `Median of ${r.rounds} interleaved round(s), after an untimed read and ${WRITE_WARMUPS} writes of the whole image per server; ${r.env.cpus} × ${r.env.cpu}; ${r.env.nbdkit}; ${r.env.qemuNbd}; ${r.env.fio}. ` +
      `MB/s for nbdcopy, IOPS for fio (server CPU time per request in brackets).` +
      (r.env.nativeIo ? ` Native I/O: ${r.env.nativeIo}.` : ''),
    '',
    '| workload | Snapback | nbdkit | qemu-nbd | ÷ nbdkit | ÷ qemu-nbd | target |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const w of r.workloads) {
    const target = w.target !== undefined ? `≥ ${w.target}× nbdkit: ${w.pass ? 'met' : 'missed'}` : '';
    lines.push(`| ${w.description} | ${names.map((n) => fmt(w, n)).join(' | ')} | ${w.ratioToNbdkit?.toFixed(2) ?? '–'} | ${w.ratioToQemuNbd?.toFixed(2) ?? '–'} | ${target} |`);
  }
  lines.push('', 'Server CPU seconds (all threads) per GiB moved:', '', '| workload | Snapback | nbdkit | qemu-nbd | Snapback ÷ nbdkit | target |', '|---|---|---|---|---|---|');
  for (const w of r.workloads) {
    const c = w.serverCpuSecondsPerGiB;
    if (!c) continue;
    const cell = (n: ServerName): string => (c[n] !== undefined ? c[n]!.toFixed(2) : '–');
    const target = w.cpuPass !== undefined ? `≤ nbdkit: ${w.cpuPass ? 'met' : 'missed'}` : '';
    lines.push(`| ${w.description} | ${cell('snapback')} | ${cell('nbdkit')} | ${cell('qemu-nbd')} | ${w.cpuRatioToNbdkit?.toFixed(2) ?? '–'} | ${target} |`);
  }
  const cpuRounds = r.workloads.filter((w) => w.cpuPass !== undefined && w.serverCpuSecondsPerGiBSamples?.snapback?.length && w.serverCpuSecondsPerGiBSamples.nbdkit?.length);
  if (cpuRounds.length) {
    lines.push('', 'The target rows round by round, Snapback / nbdkit CPU s per GiB (the ratio):', '');
    for (const w of cpuRounds) {
      const ours = w.serverCpuSecondsPerGiBSamples!.snapback!;
      const theirs = w.serverCpuSecondsPerGiBSamples!.nbdkit!;
      const cells = ours.map((o, i) => (theirs[i] ? `${o.toFixed(2)} / ${theirs[i]!.toFixed(2)} (${(o / theirs[i]!).toFixed(2)})` : '–'));
      lines.push(`- ${w.id}: ${cells.join(', ')}`);
    }
  }
  const inlineRows = r.workloads.filter((w) => w.inlineIo?.some((x) => x.inlineShare !== null));
  if (inlineRows.length) {
    lines.push('', "Our server's requests done inline, per round (the rest took the batched worker; appliance/storage/inline-io.ts), and the times its governor turned inline I/O off:", '');
    for (const w of inlineRows) {
      const cells = w.inlineIo!.map((x) => `${x.inlineShare === null ? '–' : `${Math.round(x.inlineShare * 100)} %`}${x.off ? ` (off ${x.off}×)` : ''}`);
      lines.push(`- ${w.id}: ${cells.join(', ')}`);
    }
  }
  if (r.piBudget) {
    lines.push('', `Pi-sized budget (${r.piBudget.method}): ${r.piBudget.note}; a Pi 4 core taken as ${PI4_SLOWDOWN}× slower than one core here.`, '');
    lines.push('| workload | CPU s/GiB | MB/s at 25 % of one core here | MB/s on one whole Pi 4 core | target |', '|---|---|---|---|---|');
    for (const row of r.piBudget.rows) {
      lines.push(`| ${row.id} | ${row.cpuSecondsPerGiB.toFixed(2)} | ${Math.round(row.mbPerSecondAtQuarterCore)} | ${Math.round(row.mbPerSecondOnePi4Core)} | ≥ ${row.target} MB/s at 25 %: ${row.pass ? 'met' : 'missed'} |`);
    }
  }
  lines.push('');
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function startSnapback(dir: string, imagePath: string, deviceModule: string | undefined): Promise<RunningServer> {
  const socket = join(dir, 'snapback.sock');
  const entry = join(dirname(fileURLToPath(import.meta.url)), 'nbd-serve-entry.js');
  const args = [entry, '--image', imagePath, '--socket', socket, ...(deviceModule ? ['--device-module', deviceModule] : [])];
  // Our server runs with the V8 options the daemon runs with on the appliance (a smaller young
  // generation), so its CPU per request is the installed daemon's.
  const nodeOptions = [process.env.NODE_OPTIONS ?? '', unitNodeOptions()].filter(Boolean).join(' ');
  const child = spawn(process.execPath, args, {
    // The IPC channel: inlineIoStats() asks the server for its inline I/O counters.
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', ...(nodeOptions ? { NODE_OPTIONS: nodeOptions } : {}) },
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  await new Promise<void>((resolveReady, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('"ready":true')) resolveReady();
    });
    child.once('exit', (code) => reject(new Error(`our NBD server exited ${code} before listening`)));
  });
  child.stdout!.resume();
  return { name: 'snapback', uri: `nbd+unix:///?socket=${socket}`, pid: child.pid!, child, exited };
}

/**
 * Our server's inline I/O counters (bench/nbd-serve-entry.ts answers over IPC); undefined for
 * a peer, or where our device has none.
 */
function inlineIoStats(server: RunningServer): Promise<{ calls: number; off: number } | undefined> {
  const child = server.child;
  if (server.name !== 'snapback' || !child.connected) return Promise.resolve(undefined);
  return new Promise((resolveStats) => {
    const onMessage = (msg: unknown): void => {
      const m = msg as { type?: string; inlineIo?: { calls: number; off: number } } | null;
      if (m?.type !== 'stats') return;
      child.off('message', onMessage);
      resolveStats(m.inlineIo);
    };
    child.on('message', onMessage);
    child.send({ type: 'stats' });
  });
}

async function startPeer(name: 'nbdkit' | 'qemu-nbd', dir: string, imagePath: string): Promise<RunningServer> {
  const socket = join(dir, `${name}.sock`);
  const [cmd, args] =
    name === 'nbdkit'
      ? ['nbdkit', ['-f', '-U', socket, 'file', imagePath]]
      : ['qemu-nbd', ['-f', 'raw', '--cache=writeback', '--aio=threads', '--persistent', '--shared=8', '-k', socket, imagePath]];
  // nbdkit sets PR_SET_PDEATHSIG on itself: it dies with this process, as qemu-nbd does when we stop it.
  const child = spawn(cmd, args as string[], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 20_000;
  while (!(await canConnect(socket))) {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode} before listening`);
    if (Date.now() > deadline) throw new Error(`${name} did not listen on ${socket}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { name, uri: `nbd+unix:///?socket=${socket}`, pid: child.pid!, child, exited };
}

async function stopServer(s: RunningServer): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
  await s.exited;
  clearTimeout(t);
}

function canConnect(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((r) => {
    const s = net.createConnection(path);
    s.once('connect', () => {
      s.destroy();
      r(true);
    });
    s.once('error', () => r(false));
  });
}

/** Runs a command; resolves with stdout, rejects with stderr on failure. */
function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolveRun(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim()}`))));
  });
}

async function requireTool(tool: string): Promise<void> {
  try {
    await run('sh', ['-c', `command -v ${tool}`]);
  } catch {
    throw new Error(`${tool} is not installed (Debian: nbdkit, qemu-utils, libnbd-bin, fio, util-linux)`);
  }
}

/** utime + stime of every thread of a process, in seconds. */
function processCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / USER_HZ;
}

/** /proc reports times in USER_HZ ticks: 100 on every Linux architecture this runs on. */
const USER_HZ = 100;

/** The CPU to pin queue-depth-1 runs to: the last one (the first tends to take interrupts). */
function pinCpu(): number {
  return os.cpus().length - 1;
}

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const chunk = 16 * MiB;
    for (let at = 0; at < bytes; at += chunk) await fh.write(randomBytes(Math.min(chunk, bytes - at)), 0, Math.min(chunk, bytes - at), at);
  } finally {
    await fh.close();
  }
}

function push(m: Map<string, Map<ServerName, number[]>>, id: string, name: ServerName, v: number): void {
  let inner = m.get(id);
  if (!inner) m.set(id, (inner = new Map()));
  let xs = inner.get(name);
  if (!xs) inner.set(name, (xs = []));
  xs.push(v);
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

// `node dist/bench/nbd-peers.js [--quick] [--device-module=FILE.js] [--only=ID,ID] [--peers=nbdkit,qemu-nbd]
//  [--rounds=N] [--no-pi-budget]`: run this benchmark alone (or some of its workloads) and print its summary.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const flag = (name: string): string | undefined => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const quick = process.argv.includes('--quick');
  const deviceModule = flag('device-module');
  const only = flag('only')?.split(',').filter(Boolean);
  const peers = flag('peers')?.split(',').filter(Boolean) as Array<'nbdkit' | 'qemu-nbd'> | undefined;
  const rounds = flag('rounds');
  runNbdBench({
    ...(quick ? { rounds: 1, imageBytes: 256 * MiB, fioSeconds: 2 } : {}),
    ...(deviceModule ? { deviceModule } : {}),
    ...(only ? { only } : {}),
    ...(peers ? { peers } : {}),
    ...(rounds ? { rounds: Number(rounds) } : {}),
    ...(process.argv.includes('--no-pi-budget') ? { skipPiBudget: true } : {}),
  })
    .then((r) => {
      process.stdout.write(`${r.markdown}\n`);
      process.stdout.write(`${JSON.stringify({ ...r, markdown: undefined }, null, 2)}\n`);
    })
    .catch((err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
      process.exit(1);
    });
}

/** What the bench's server does with large reads here (docs/native-io.md). */
function nativeIoNote(): string {
  if (nativeIo() === null) return 'large reads and writes copied through buffers (the native I/O addon is not loaded)';
  let wmemMax = 'unknown';
  try {
    wmemMax = readFileSync('/proc/sys/net/core/wmem_max', 'utf8').trim();
  } catch {
    // not Linux's procfs
  }
  return `large reads spliced from the file and large plain writes' payloads spliced into it (native I/O addon), socket send buffer ${SEND_BUFFER_BYTES / MiB} MiB asked (${process.getuid?.() === 0 ? 'as root: SO_SNDBUFFORCE' : `SO_SNDBUF, net.core.wmem_max ${wmemMax}`})`;
}
