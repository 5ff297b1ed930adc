/**
 * The USB gadget on a real Linux USB stack: Debian's kernel in QEMU, dummy_hcd as
 * both the Pi's device controller and the computer's USB host, the project's gadget code
 * driving configfs and the kernel nbd client, and the guest's own /dev/sdX as the computer's
 * view of the disk.
 *
 * This one file plays two parts:
 *  - on the host (under mocha) it boots the VM once (test/rigs/kernel-vm.ts) and turns the
 *    guest's step results into tests;
 *  - inside the guest (SNAPBACK_GADGET_GUEST set) it is the scenario: it runs the appliance,
 *    acts as the computer through /dev/sdX and checks every byte it reads.
 * Two appliances run in the same boot, one after the other:
 *  - "harness": GadgetComponent with a small in-process session service and nbdkit serving a
 *    plain file, restored from the model at each session end (proves the gadget code alone);
 *  - "daemon": the real `snapback serve --gadget on`, ended through the UDC, the host's port,
 *    and the CLI; killed with SIGKILL in the middle of a write and restarted.
 */
import { fork, spawn, execFile, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { EventEmitter } from 'node:events';
import { closeSync, constants as fsConstants, existsSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { bytesStateSource, encodeRegionMap } from '../../appliance/session/region-map-codec.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../helpers/wait.js';
import { patternBytes as pattern } from '../helpers/prng.js';
import { GUEST_RESULTS, NO_RUN, notReported, readVmRun, reportStep, runStep, sh, type VmRun } from '../rigs/vm-steps.js';

const execFileP = promisify(execFile);
const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..', '..', '..');
const GADGET = 'snapback';
const UDC = 'dummy_udc.0';
const DISK_SIZE = 16 * 1024 * 1024;
const MiB = 1024 * 1024;

// =========================================================================================
// Shared between host and guest
// =========================================================================================



// =========================================================================================
// Host side (mocha)
// =========================================================================================

function hostTests(): void {
  describe('USB gadget on a real kernel (QEMU, dummy_hcd)', function () {
    this.timeout(15 * 60_000);
    let run: VmRun = NO_RUN;
    let bootError: Error | null = null;

    before(async function () {
      const { runKernelVm } = await import('../rigs/kernel-vm.js');
      let prep = '';
      try {
        // The model and the state directory are made here, where node is fast; the guest copies
        // them to the same absolute path on its tmpfs.
        prep = await fs.mkdtemp(path.join(os.tmpdir(), 'snapback-gadget-prep-'));
        await prepare(prep);
        const r = await runKernelVm({
          modules: ['dummy_hcd', 'usb_storage', 'sd_mod', 'vfat', 'nls_cp437', 'nls_iso8859_1', 'nls_utf8', 'nls_ascii'],
          command: ['node', THIS_FILE],
          env: {
            SNAPBACK_GADGET_GUEST: 'scenario',
            SNAPBACK_GADGET_PREP: prep,
            NODE_ENV: 'production',
            LOG_LEVEL: process.env.GADGET_VM_LOG_LEVEL ?? 'warn',
            ...(process.env.GADGET_VM_TRACE ? { GADGET_VM_TRACE: '1' } : {}),
            ...(process.env.GADGET_VM_HARNESS ? { GADGET_VM_HARNESS: '1' } : {}),
          },
          shares: [{ hostPath: prep, guestPath: '/prep', readOnly: true }],
          timeoutMs: 8 * 60_000,
          memoryMb: 768,
          onConsoleLine: process.env.GADGET_VM_VERBOSE ? (l) => process.stderr.write(`  | ${l}\n`) : undefined,
        });
        run = readVmRun(r, 80);
        bootError = run.runError;
      } catch (err) {
        bootError = err as Error;
      } finally {
        if (prep) await fs.rm(prep, { recursive: true, force: true });
      }
    });

    const expectStep = (phase: string, step: string): void => {
      it(`${phase}: ${step}`, function () {
        if (bootError) throw bootError;
        const s = run.steps.find((x) => x.phase === phase && x.step === step);
        if (!s) throw notReported(run);
        if (!s.ok) throw new Error(`${s.detail}\n--- guest console (tail) ---\n${run.consoleTail}`);
      });
    };
    for (const [phase, names] of Object.entries(EXPECTED_STEPS)) for (const n of names) expectStep(phase, n);

    it('the guest scenario finished cleanly', async function () {
      if (bootError) throw bootError;
      const failed = run.steps.filter((s) => !s.ok);
      if (failed.length > 0) throw new Error(`failed steps: ${failed.map((f) => `${f.phase}: ${f.step}`).join('; ')}`);
      const done = run.steps.find((s) => s.phase === 'scenario' && s.step === 'done');
      if (!done) throw new Error(`the scenario did not reach its end (results in ${run.resultsDir})\n${run.consoleTail}`);
      // Everything passed: the results (daemon logs, traces) are kept only when asked for.
      if (!process.env.GADGET_VM_TRACE && run.resultsDir) await fs.rm(run.resultsDir, { recursive: true, force: true });
    });
  });
}

/** Makes, in `prep`, the model (pseudo-random with a FAT filesystem), its manifest, a zeroed working disk and an initialised state directory. */
async function prepare(prep: string): Promise<void> {
  const model = path.join(prep, 'model.img');
  writeFileSync(model, pattern(DISK_SIZE, 42));
  await execFileP('mkfs.vfat', ['-n', 'SNAPMODEL', model]);
  await execFileP('node', [CLI, 'model', 'manifest', model]);
  const disk = path.join(prep, 'disk.img');
  writeFileSync(disk, '');
  await fs.truncate(disk, DISK_SIZE);
  // A working disk of zeros: every region starts pending, read from the model, hydrated in the background.
  await execFileP('node', [CLI, 'init', '--state-dir', path.join(prep, 'state'), '--model', model, '--disk', disk]);
}

/** The steps of one appliance's run, in order (the guest reports each; the host expects each). */
const S = {
  built: 'gadget built: the disk appears on the host side as /dev/sdX',
  initial: 'every byte reads as the model',
  status: 'status --json shows the gadget bound and the host configured',
  w1: 'session 1: raw writes read back',
  files: 'session 1: files written through vfat read back',
  reenum: 're-enumeration (UDC unbind + rebind) ends the session',
  afterReenum: 'after the re-enumeration every byte reads as the model',
  w2: 'session 2: raw writes read back',
  port: 'host port disable + enable ends the session',
  afterPort: 'after the port cycle every byte reads as the model',
  w3: 'session 3: raw writes read back',
  api: 'API session end (medium ejected, nbd detached and reattached)',
  afterApi: 'after the API session end every byte reads as the model',
  kill: 'SIGKILL mid-write, restart: stale gadget cleaned up',
  afterKill: 'after the restart every byte reads as the model',
  history: 'the session history names every end and the USB transitions',
  stop: 'stop removes the gadget and the nbd attachment',
} as const;

/** The appliances run in the guest: the real daemon always; the harness on request (debugging). */
const PHASES = process.env.GADGET_VM_HARNESS ? ['harness', 'daemon'] : ['daemon'];

function expectedSteps(phase: string): string[] {
  return Object.values(S).filter((n) => phase === 'daemon' || (n !== S.status && n !== S.history));
}

const EXPECTED_STEPS: Record<string, string[]> = Object.fromEntries(PHASES.map((p) => [p, expectedSteps(p)]));

// =========================================================================================
// Guest side: the scenario
// =========================================================================================

const RESULTS = GUEST_RESULTS;
const PREP = process.env.SNAPBACK_GADGET_PREP ?? '/tmp/snap';

function report(phase: string, step: string, ok: boolean, detail: string, t0: number): void {
  reportStep({ phase, step, ok, detail, ms: Date.now() - t0 });
}

class StepFailed extends Error {}

/** Runs one step and reports it; a failed step ends the scenario. */
async function step(phase: string, name: string, fn: () => Promise<string | void>): Promise<void> {
  if (!(await runStep({ phase, step: name }, fn)).ok) throw new StepFailed(name);
}

/** The computer's side: the gadget's disk as /dev/sdX on the guest's own USB host. */
class HostSide {
  /** The block device name (sda, sdb, …) currently showing our gadget. */
  findDisk(): string | null {
    for (const n of readdirSync('/sys/block')) {
      if (!/^sd[a-z]+$/.test(n)) continue;
      try {
        const vendor = readFileSync(`/sys/block/${n}/device/vendor`, 'utf8').trim();
        if (vendor !== 'Snapback' || !existsSync(`/dev/${n}`)) continue;
        let size = Number(readFileSync(`/sys/block/${n}/size`, 'utf8').trim());
        if (size * 512 !== DISK_SIZE) {
          // A removable disk whose medium changed: opening it makes sd check the medium again.
          try {
            closeSync(openSync(`/dev/${n}`, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK));
          } catch {
            // no medium yet
          }
          size = Number(readFileSync(`/sys/block/${n}/size`, 'utf8').trim());
        }
        if (size * 512 === DISK_SIZE) return n;
      } catch {
        // going away: skip
      }
    }
    return null;
  }

  async waitDisk(timeoutMs = 60_000): Promise<string> {
    return waitFor('the gadget disk on the host side', () => this.findDisk(), timeoutMs, 100);
  }

  async waitGone(dev: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(`/dev/${dev} to go away`, () => !existsSync(`/sys/block/${dev}`), timeoutMs, 50);
  }

  /** Reads the whole disk with O_DIRECT (no host-side page cache), retrying a medium change. */
  async readAll(dev: string): Promise<Buffer> {
    let last = '';
    for (let attempt = 0; attempt < 8; attempt++) {
      const r = await readDirect(`/dev/${dev}`, 0, DISK_SIZE);
      if (r.ok) return r.data;
      last = r.error;
      await sleep(500);
    }
    throw new Error(`cannot read /dev/${dev}: ${last}`);
  }

  /** Reads a 512-aligned range with O_DIRECT. */
  async readRange(dev: string, offset: number, len: number): Promise<Buffer> {
    const out = '/tmp/range.bin';
    const bs = offset % 4096 === 0 && len % 4096 === 0 ? 4096 : 512;
    await sh('busybox', ['dd', `if=/dev/${dev}`, `of=${out}`, `bs=${bs}`, `skip=${offset / bs}`, `count=${len / bs}`, 'iflag=direct'], { timeoutMs: 120_000 });
    const data = readFileSync(out);
    await fs.rm(out, { force: true });
    return data;
  }

  async writeRaw(dev: string, offset: number, data: Buffer): Promise<void> {
    const tmp = `/tmp/pattern-${offset}.bin`;
    writeFileSync(tmp, data);
    const bs = offset % 4096 === 0 && data.length % 4096 === 0 ? 4096 : 512;
    await sh('busybox', ['dd', `if=${tmp}`, `of=/dev/${dev}`, `bs=${bs}`, `seek=${offset / bs}`, 'oflag=direct', 'conv=fsync,notrunc'], {
      timeoutMs: 120_000,
    });
    await fs.rm(tmp, { force: true });
  }

  usbPortDisableFile(dev: string): string {
    // /sys/block/sda → …/usb1/1-1/1-1:1.0/host0/…: the USB device is the component before the interface.
    const real = path.resolve('/sys/block', readlinkSafe(`/sys/block/${dev}`));
    const parts = real.split('/');
    const iface = parts.findIndex((p) => /^\d+-[\d.]+:\d+\.\d+$/.test(p));
    if (iface <= 0) throw new Error(`cannot find the USB device of ${dev} in ${real}`);
    // The device B-P hangs off root port P of bus B: …/usbB/B-0:1.0/usbB-portP/disable.
    const m = /^(\d+)-(\d+)$/.exec(parts[iface - 1] ?? '');
    if (!m) throw new Error(`${parts[iface - 1]} is not on a root port (${real})`);
    const bus = parts.slice(0, iface - 1).join('/');
    return path.join(bus, `${m[1]}-0:1.0`, `usb${m[1]}-port${m[2]}`, 'disable');
  }
}

function readlinkSafe(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return p;
  }
}

async function readDirect(file: string, offset: number, len: number): Promise<{ ok: true; data: Buffer } | { ok: false; error: string }> {
  // Into a tmpfs file, not through a pipe: pipes are slow under TCG.
  const out = '/tmp/readback.bin';
  const bs = MiB;
  const r = await sh('busybox', ['dd', `if=${file}`, `of=${out}`, `bs=${bs}`, `skip=${offset / bs}`, `count=${len / bs}`, 'iflag=direct'], {
    allowFail: true,
    timeoutMs: 120_000,
  });
  const data = existsSync(out) ? readFileSync(out) : Buffer.alloc(0);
  await fs.rm(out, { force: true });
  if (r.code === 0 && data.length === len) return { ok: true, data };
  return { ok: false, error: `dd exit ${r.code}, ${data.length}/${len} bytes: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}` };
}

/** Where two images differ, as a short list of MiB ranges. */
function diffSummary(actual: Buffer, expected: Buffer): string {
  const bad: number[] = [];
  for (let off = 0; off < expected.length; off += 64 * 1024) {
    if (actual.subarray(off, off + 65536).compare(expected.subarray(off, off + 65536)) !== 0) bad.push(off / 65536);
  }
  if (bad.length === 0) return 'identical';
  return `${bad.length} of ${expected.length / 65536} 64-KiB regions differ (first: ${bad.slice(0, 12).join(', ')})`;
}

function mustEqual(actual: Buffer, expected: Buffer, what: string): void {
  if (actual.length !== expected.length || actual.compare(expected) !== 0) throw new Error(`${what}: ${diffSummary(actual, expected)}`);
}

/** Writes the session's raw blocks: region-aligned, unaligned, partial and spanning. */
function sessionWrites(session: number): { offset: number; data: Buffer }[] {
  return [
    { offset: 2 * MiB, data: pattern(64 * 1024, session * 10 + 1) }, // one whole region
    { offset: 5 * MiB + 4096, data: pattern(8192, session * 10 + 2) }, // inside a region
    { offset: 7 * MiB - 512, data: pattern(4096, session * 10 + 3) }, // across a region boundary, 512-aligned
    { offset: 9 * MiB, data: pattern(MiB + 64 * 1024, session * 10 + 4) }, // many regions
    { offset: DISK_SIZE - 512, data: pattern(512, session * 10 + 5) }, // the last sector
  ];
}

interface Appliance {
  readonly phase: string;
  start(): Promise<void>;
  kill9(): Promise<void>;
  stop(): Promise<void>;
  sessionNumber(): Promise<number>;
  endSessionApi(): Promise<void>;
  /** The host events recorded in the current and previous sessions (newest last). */
  events(): Promise<string[]>;
  gadgetNbdDevice(): Promise<string | null>;
}

async function guestScenario(): Promise<void> {
  mkdirSync(RESULTS, { recursive: true });
  const t0 = Date.now();
  let failed = false;
  try {
    // The model (16 MiB, pseudo-random, a FAT filesystem at its start) and the state directory.
    await step('scenario', 'model and state directory copied in', async () => {
      await fs.mkdir(PREP, { recursive: true });
      // Timestamps kept: the daemon re-verifies a model whose file looks changed since its manifest.
      await fs.cp('/prep', PREP, { recursive: true, preserveTimestamps: true });
      return PREP;
    });
    const model = readFileSync(path.join(PREP, 'model.img'));
    const apps: Appliance[] = PHASES.map((p) => (p === 'harness' ? new HarnessAppliance() : new DaemonAppliance()));
    for (const app of apps) {
      current = app;
      const trace = process.env.GADGET_VM_TRACE ? startTraceRecorder() : { stop: () => undefined };
      try {
        await runPhase(app, model);
      } finally {
        trace.stop(app.phase);
      }
    }
    current = null;
  } catch (err) {
    failed = true;
    if (!(err instanceof StepFailed)) report('scenario', 'unexpected error', false, err instanceof Error ? err.stack ?? err.message : String(err), t0);
    // Leave nothing running that would keep the guest from powering off.
    await current?.kill9().catch(() => undefined);
  }
  if (!failed) report('scenario', 'done', true, '', t0);
  process.exit(failed ? 1 : 0);
}

let current: Appliance | null = null;

/** Records every UDC state the guest sees (every 20 ms), to compare with the policy's view. */
function startTraceRecorder(): { stop(name: string): void } {
  const file = `/sys/class/udc/${UDC}/state`;
  const seen: { t: number; state: string }[] = [];
  const t0 = Date.now();
  let last = '';
  const timer = setInterval(() => {
    try {
      const s = readFileSync(file, 'utf8').trim();
      if (s !== last) {
        seen.push({ t: Date.now() - t0, state: s });
        last = s;
      }
    } catch {
      // the UDC is always there under dummy_hcd
    }
  }, 20);
  return {
    stop(name: string) {
      clearInterval(timer);
      writeFileSync(path.join(RESULTS, `udc-trace-${name}.json`), JSON.stringify(seen, null, 1));
    },
  };
}

async function runPhase(app: Appliance, model: Buffer): Promise<void> {
  const P = app.phase;
  const host = new HostSide();
  let dev = '';
  const expectModel = async (what: string): Promise<string> => {
    dev = await host.waitDisk();
    const all = await host.readAll(dev);
    mustEqual(all, model, what);
    return `/dev/${dev}: ${DISK_SIZE} bytes equal the model`;
  };
  const writeSession = async (n: number): Promise<string> => {
    const writes = sessionWrites(n);
    for (const w of writes) await host.writeRaw(dev, w.offset, w.data);
    let bytes = 0;
    for (const w of writes) {
      mustEqual(await host.readRange(dev, w.offset, w.data.length), w.data, `session ${n}: ${w.data.length} bytes at ${w.offset}`);
      bytes += w.data.length;
    }
    return `${writes.length} writes, ${bytes} bytes read back as written`;
  };
  const waitSessionEnd = async (before: number, how: string): Promise<string> => {
    const n = await waitFor(`the session to end by ${how}`, async () => {
      const s = await app.sessionNumber();
      return s > before ? s : null;
    }, 60_000, 200);
    const ev = (await app.events()).filter((e) => e.startsWith('usb') || e.startsWith('gadget') || e.startsWith('end'));
    return `session ${before} → ${n}; events: ${ev.slice(-6).join(' | ')}`;
  };

  await step(P, S.built, async () => {
    await app.start();
    dev = await host.waitDisk();
    return `/dev/${dev}, nbd ${await app.gadgetNbdDevice()}`;
  });
  await step(P, S.initial, () => expectModel('initial contents'));
  if (app instanceof DaemonAppliance) {
    await step(P, S.status, async () => {
      const st = await app.cliStatus();
      const g = st.host.gadget;
      if (!g || !g.bound || g.medium !== 'inserted' || g.udc !== UDC) throw new Error(`gadget status: ${JSON.stringify(g)}`);
      if (st.host.connection !== 'configured' || g.udcState !== 'configured') throw new Error(`host connection ${st.host.connection}, UDC ${g.udcState}`);
      return `host ${st.host.connection}; gadget ${JSON.stringify(g)}`;
    });
  }

  // Session 1: raw writes and files.
  await step(P, S.w1, () => writeSession(1));
  await step(P, S.files, async () => {
    await fs.mkdir('/mnt/usb', { recursive: true });
    await sh('mount', ['-t', 'vfat', `/dev/${dev}`, '/mnt/usb']);
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 5; i++) {
      const f = `/mnt/usb/file${i}.bin`;
      files[f] = pattern(100_000 + i * 37_000, 1000 + i);
      writeFileSync(f, files[f]!);
    }
    await sh('umount', ['/mnt/usb']);
    await sh('mount', ['-t', 'vfat', '-o', 'ro', `/dev/${dev}`, '/mnt/usb']);
    try {
      for (const [f, data] of Object.entries(files)) mustEqual(readFileSync(f), data, f);
    } finally {
      await sh('umount', ['/mnt/usb']);
    }
    return `${Object.keys(files).length} files`;
  });

  // End 1: the device side disconnects and reconnects (what a host power-cycle looks like).
  await step(P, S.reenum, async () => {
    const before = await app.sessionNumber();
    const udcFile = `/sys/kernel/config/usb_gadget/${GADGET}/UDC`;
    writeFileSync(udcFile, '\n');
    await host.waitGone(dev);
    await sleep(300);
    writeFileSync(udcFile, `${UDC}\n`);
    return waitSessionEnd(before, 're-enumeration');
  });
  await step(P, S.afterReenum, () => expectModel('after the re-enumeration'));

  // End 2: the computer's side switches its port off and on.
  await step(P, S.w2, () => writeSession(2));
  await step(P, S.port, async () => {
    const before = await app.sessionNumber();
    const disable = host.usbPortDisableFile(dev);
    writeFileSync(disable, '1\n');
    await host.waitGone(dev);
    await sleep(500);
    writeFileSync(disable, '0\n');
    return `${disable}; ${await waitSessionEnd(before, 'port cycle')}`;
  });
  await step(P, S.afterPort, () => expectModel('after the port cycle'));

  // End 3: the API, while the host stays connected (its cache is bypassed by O_DIRECT; the
  // gadget's /dev/nbdX cache must not survive).
  await step(P, S.w3, () => writeSession(3));
  await step(P, S.api, async () => {
    const before = await app.sessionNumber();
    await app.endSessionApi();
    return waitSessionEnd(before, 'the API');
  });
  await step(P, S.afterApi, () => expectModel('after the API session end'));

  // Crash: SIGKILL while the host writes, restart.
  await step(P, S.kill, async () => {
    writeFileSync('/tmp/bigwrite.bin', pattern(8 * MiB, 77));
    const writer = spawn('busybox', ['dd', 'if=/tmp/bigwrite.bin', `of=/dev/${dev}`, 'bs=64k', `seek=${(4 * MiB) / 65536}`, 'oflag=direct'], {
      stdio: 'ignore',
    });
    const writerDone = new Promise<number | null>((r) => writer.on('close', (c) => r(c)));
    await sleep(1500);
    await app.kill9();
    // The dead server leaves /dev/nbdX with requests nobody answers; the restarted appliance
    // must clean that up (the writer then gets I/O errors and exits).
    await app.start();
    const code = await Promise.race([writerDone, sleep(60_000).then(() => 'still blocked' as const)]);
    if (code === 'still blocked') throw new Error('the host-side writer is still blocked a minute after the restart');
    const ev = await app.events();
    const cleaned = ev.find((e) => e.includes('cleaning up what an earlier run left'));
    if (!cleaned) throw new Error(`no clean-up recorded; events: ${ev.slice(-8).join(' | ')}`);
    return `writer exit ${String(code)}; ${cleaned}`;
  });
  await step(P, S.afterKill, () => expectModel('after the restart'));

  if (app instanceof DaemonAppliance) {
    await step(P, S.history, async () => {
      const sessions = await app.sessions();
      const reasons = sessions.filter((x) => x.endReason).map((x) => x.endReason);
      const want = ['usb-reconnect', 'usb-reconnect', 'api', 'daemon-start'];
      // The runs's own ends, in order, after the first daemon start's.
      const tail = reasons.slice(-want.length);
      if (tail.join() !== want.join()) throw new Error(`session end reasons ${reasons.join(', ')}; expected to end with ${want.join(', ')}`);
      const events = sessions.flatMap((x) => x.events.map((e) => e.what));
      for (const needle of ['usb: configured → default', 'usb: default → configured', 'usb: host re-enumerated the gadget', 'gadget: cleaning up what an earlier run left']) {
        if (!events.some((e) => e.includes(needle))) throw new Error(`no event "${needle}" in ${JSON.stringify(events.slice(-30))}`);
      }
      if (!sessions.every((x) => x.events.every((e) => typeof e.at === 'string' && !Number.isNaN(Date.parse(e.at))))) throw new Error('an event without a time');
      return `ends: ${reasons.join(', ')}; ${events.length} events`;
    });
  }
  await step(P, S.stop, async () => {
    const nbd = await app.gadgetNbdDevice();
    await app.stop();
    if (existsSync(`/sys/kernel/config/usb_gadget/${GADGET}`)) throw new Error('the gadget directory is still there');
    const name = nbd ? path.basename(nbd) : null;
    if (name && existsSync(`/sys/block/${name}/pid`)) throw new Error(`${name} is still connected`);
    await host.waitGone(dev);
    return `gadget removed, ${nbd ?? 'nbd'} disconnected`;
  });
}

// -----------------------------------------------------------------------------------------
// The real daemon: `snapback serve --gadget on`, driven through its control socket and CLI.
// -----------------------------------------------------------------------------------------

interface DaemonStatus {
  session: { number: number };
  host: {
    connection: string;
    gadget: { enabled: boolean; udc: string | null; udcState: string | null; bound: boolean; nbdDevice: string | null; medium: string; lastError: string | null } | null;
  };
}

interface DaemonSession {
  number: number;
  endReason: string | null;
  events: { at: string; what: string }[];
}

const CLI = path.join(REPO, 'dist', 'appliance', 'cli', 'main.js');

class DaemonAppliance implements Appliance {
  readonly phase = 'daemon';
  private readonly dir = path.join(PREP, 'state');
  private child: ChildProcess | null = null;
  private runs = 0;

  async start(): Promise<void> {
    const log = path.join(RESULTS, `daemon-${++this.runs}.log`);
    const out = await fs.open(log, 'a');
    const child = spawn('node', [CLI, 'serve', '--state-dir', this.dir, '--gadget', 'on', '--gpio', 'off', '--http-listen', '127.0.0.1:0'], {
      stdio: ['ignore', out.fd, out.fd],
      env: { ...process.env, LOG_LEVEL: 'info' },
    });
    await out.close();
    this.child = child;
    let exited: string | null = null;
    child.on('exit', (code, sig) => {
      exited = `exit ${code ?? sig}`;
    });
    await waitFor('the daemon to bind the gadget', async () => {
      if (exited) throw new Error(`the daemon ${exited}: ${readFileSync(log, 'utf8').split('\n').slice(-8).join(' | ')}`);
      const st = await this.api<DaemonStatus>('GET', '/api/status').catch(() => null);
      return st?.host.gadget?.bound && st.host.gadget.medium === 'inserted' ? st : null;
    }, 90_000, 250).catch((err: unknown) => {
      if (exited) throw err;
      throw new Error(`${String(err)}; daemon log: ${readFileSync(log, 'utf8').split('\n').slice(-8).join(' | ')}`);
    });
  }

  api<T>(method: 'GET' | 'POST', p: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        { socketPath: path.join(this.dir, 'control.sock'), method, path: p, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {} },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            if ((res.statusCode ?? 500) >= 400) reject(new Error(`${method} ${p}: ${res.statusCode} ${text}`));
            else resolve(JSON.parse(text) as T);
          });
        },
      );
      req.on('error', reject);
      if (payload) req.write(payload);
      req.end();
    });
  }

  async cliStatus(): Promise<DaemonStatus> {
    const r = await sh('node', [CLI, 'status', '--state-dir', this.dir, '--json']);
    return JSON.parse(r.stdout) as DaemonStatus;
  }

  async sessions(): Promise<DaemonSession[]> {
    return (await this.api<{ sessions: DaemonSession[] }>('GET', '/api/sessions')).sessions;
  }

  async kill9(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
    this.child = null;
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const gone = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    child.kill('SIGTERM');
    const code = await gone;
    this.child = null;
    if (code !== 0) throw new Error(`the daemon exited with ${code} on SIGTERM`);
  }

  async sessionNumber(): Promise<number> {
    return (await this.api<DaemonStatus>('GET', '/api/status')).session.number;
  }

  async endSessionApi(): Promise<void> {
    // Through the CLI, as an operator would.
    await sh('node', [CLI, 'session', 'end', '--state-dir', this.dir, '--wait'], { timeoutMs: 120_000 });
  }

  async events(): Promise<string[]> {
    const sessions = await this.sessions();
    return sessions.flatMap((x) => [...x.events.map((e) => e.what), ...(x.endReason ? [`end: ${x.endReason}`] : [])]);
  }

  async gadgetNbdDevice(): Promise<string | null> {
    return (await this.api<DaemonStatus>('GET', '/api/status')).host.gadget?.nbdDevice ?? null;
  }
}

// -----------------------------------------------------------------------------------------
// The harness appliance: GadgetComponent + nbdkit + a minimal session service, in a child
// process (so that it can be killed with SIGKILL like the daemon).
// -----------------------------------------------------------------------------------------

interface HarnessStatus {
  session: number;
  events: string[];
  nbdDevice: string | null;
}

class HarnessAppliance implements Appliance {
  readonly phase = 'harness';
  private child: ChildProcess | null = null;
  private seq = 0;
  private pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  async start(): Promise<void> {
    const child = fork(THIS_FILE, [], {
      env: { ...process.env, SNAPBACK_GADGET_GUEST: 'harness-server' },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child = child;
    child.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(m.error));
    });
    child.on('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error('the harness server exited'));
      this.pending.clear();
    });
    await this.call('started');
  }

  private call(cmd: string): Promise<unknown> {
    const child = this.child;
    if (!child) return Promise.reject(new Error('the harness server is not running'));
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      child.send({ id, cmd });
    });
  }

  async kill9(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await gone;
    this.child = null;
  }

  async stop(): Promise<void> {
    await this.call('stop');
    const child = this.child;
    if (child) {
      const gone = new Promise((r) => child.once('exit', r));
      child.disconnect();
      await gone;
    }
    this.child = null;
  }

  async sessionNumber(): Promise<number> {
    return ((await this.call('status')) as HarnessStatus).session;
  }

  async endSessionApi(): Promise<void> {
    await this.call('end-session');
  }

  async events(): Promise<string[]> {
    return ((await this.call('status')) as HarnessStatus).events;
  }

  async gadgetNbdDevice(): Promise<string | null> {
    return ((await this.call('status')) as HarnessStatus).nbdDevice;
  }
}

async function harnessServer(): Promise<void> {
  const { GadgetComponent } = await import('../../appliance/gadget/gadget-component.js');
  type Svc = import('../../appliance/session/appliance-service.js').ApplianceService;
  type Participant = import('../../appliance/session/appliance-service.js').SessionEndParticipant;
  const dir = path.join(PREP, 'harness');
  await fs.mkdir(dir, { recursive: true });
  const socket = path.join(dir, 'nbd.sock');
  const disk = path.join(dir, 'disk.img');
  // Every start is a session start: the disk comes back to the model (as the daemon does).
  await fs.copyFile(path.join(PREP, 'model.img'), disk);
  await fs.rm(socket, { force: true });
  const nbdkit = spawn('nbdkit', ['--foreground', '--unix', socket, '--threads', '4', 'file', disk], { stdio: ['ignore', 'inherit', 'inherit'] });
  await waitFor('the nbdkit socket', () => existsSync(socket), 30_000, 50);

  let session = 1;
  const events: string[] = [];
  const participants: Participant[] = [];
  let ending: Promise<unknown> | null = null;
  const service = Object.assign(new EventEmitter(), {
    status: () => {
      throw new Error('not in the harness');
    },
    async endSession(reason: string, note?: string) {
      if (ending) return ending;
      ending = (async () => {
        const done: Participant[] = [];
        try {
          for (const p of participants) {
            await p.quiesce();
            done.push(p);
          }
          // The "restore": the whole disk back to the model, beneath the (detached) nbd device.
          await fs.copyFile(path.join(PREP, 'model.img'), disk);
          events.push(`end: ${reason}${note ? ` (${note})` : ''}`);
          session++;
        } finally {
          for (const p of done.reverse()) await p.resume();
        }
        return { number: session - 1 };
      })().finally(() => {
        ending = null;
      });
      return ending;
    },
    setMode: async () => undefined,
    setRestoreMode: async () => undefined,
    setHydrationRate: async () => undefined,
    regionMap: async () => encodeRegionMap(bytesStateSource(new Uint8Array(0))),
    sessions: () => [],
    recordHostEvent: (what: string) => {
      events.push(what);
    },
    addSessionEndParticipant: (p: Participant) => {
      participants.push(p);
    },
    setHostConnection: () => undefined,
  }) as unknown as Svc;

  const gadget = new GadgetComponent(service, { policy: { pollIntervalMs: 100 }, runtimeDir: '/run/snapback-harness' }, { nbdSocket: socket });
  const handlers: Record<string, () => Promise<unknown>> = {
    started: async () => {
      await gadget.start();
      return true;
    },
    status: async () => ({ session, events, nbdDevice: gadget.status().nbdDevice }) satisfies HarnessStatus,
    'end-session': async () => service.endSession('api'),
    stop: async () => {
      await gadget.stop();
      nbdkit.kill('SIGTERM');
      return true;
    },
  };
  process.on('message', (m: { id: number; cmd: string }) => {
    const h = handlers[m.cmd];
    if (!h) {
      process.send?.({ id: m.id, ok: false, error: `unknown command ${m.cmd}` });
      return;
    }
    h().then(
      (value) => process.send?.({ id: m.id, ok: true, value }),
      (err: unknown) => process.send?.({ id: m.id, ok: false, error: err instanceof Error ? err.stack ?? err.message : String(err) }),
    );
  });
  process.on('disconnect', () => {
    nbdkit.kill('SIGTERM');
    process.exit(0);
  });
}

// =========================================================================================
// Which part this process plays (last, so that every declaration above is initialised)
// =========================================================================================

const role = process.env.SNAPBACK_GADGET_GUEST;
if (role === 'scenario') {
  await guestScenario();
} else if (role === 'harness-server') {
  await harnessServer();
} else {
  hostTests();
}
