/**
 * The appliance image, booted for real: the pi-gen stage's own install steps run against a
 * guest root (test/rigs/appliance-vm.ts), systemd as PID 1 starting the stage's
 * snapback.service at boot, Debian's kernel in QEMU with dummy_hcd as both the Pi's USB device
 * port and the computer's USB host, and a non-loopback network address inside the guest.
 *
 * This one file plays two parts:
 *  - on the host (under mocha) it boots the VM once and turns the guest's step results into
 *    tests;
 *  - inside the guest (SNAPBACK_APPLIANCE_GUEST set, run by systemd as rig-command.service) it
 *    is the scenario: it watches the service through systemctl and journalctl, acts as the
 *    computer through the gadget's /dev/sdX, and as a browser on the network address.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../helpers/wait.js';
import { patternBytes as pattern } from '../helpers/prng.js';
import { GUEST_RESULTS, NO_RUN, notReported, readVmRun, reportStep, runStep, sh as run, type VmRun } from '../rigs/vm-steps.js';

const THIS_FILE = fileURLToPath(import.meta.url);
const REPO = path.resolve(path.dirname(THIS_FILE), '..', '..', '..');
const DISK_SIZE = 4 * 1024 * 1024;
const UNIT = 'snapback.service';
const STATE_DIR = '/var/lib/snapback';
const ADDRESS = '192.0.2.1';
/**
 * The longest the watchdog step waits beyond the guard for systemd's watchdog: the unit's own
 * WatchdogSec (30 s) is kept. A shorter one was tried: on a busy machine an emulated daemon's
 * pings (each one a systemd-notify process) came late, and systemd killed a healthy daemon.
 */
const UNIT_WATCHDOG_SEC = 30;
/**
 * How long the scenario waits for what must happen (a start, a restart, the disk): a guard
 * against waiting for ever, not a timing assertion. An emulated guest on a busy machine can
 * take minutes to start node.
 */
const GUARD_MS = 8 * 60_000;

/** The steps, in order (the guest reports each; the host expects each). */
const S = {
  installed: 'the stage installed the unit, the CLI, the modules list, the overlay and the native BLAKE3 where pi-gen puts them, and enabled the unit',
  firstBoot: 'first boot: systemd starts the daemon once (hashing BLAKE3 natively, splicing large reads through the native I/O addon), and the computer reads the model through the gadget',
  web: `the web UI answers on ${ADDRESS}:80 and asks a network client for the setup code`,
  kill: 'kill -9: systemd restarts the daemon, which cleans up the gadget and serves the model again',
  watchdog: 'watchdog: a daemon that stops pinging (SIGSTOP) is killed by systemd, restarted, and serves again',
} as const;

// =========================================================================================
// Host side (mocha)
// =========================================================================================

function hostTests(): void {
  describe('the appliance image under systemd (pi-gen stage, QEMU, dummy_hcd)', function () {
    this.timeout(20 * 60_000);
    let run: VmRun = NO_RUN;
    let bootError: Error | null = null;

    before(async function () {
      const { runApplianceVm, prepareApplianceState } = await import('../rigs/appliance-vm.js');
      let prep = '';
      try {
        const state = await prepareApplianceState(pattern(DISK_SIZE, 7));
        prep = state.dir;
        const r = await runApplianceVm({
          command: ['node', THIS_FILE],
          env: { SNAPBACK_APPLIANCE_GUEST: 'scenario' },
          state,
          // The emulated guest on a shared machine starts node many times slower than a Pi does: a
          // longer start timeout keeps a slow start from being taken for a failed one. Everything
          // else is the stage's unit as installed.
          unitDropIns: { 'test-start-timeout.conf': '[Service]\nTimeoutStartSec=600s\n' },
          // A guard against a hung guest, not a timing assertion (an emulated guest on a busy machine is slow).
          timeoutMs: 18 * 60_000,
          kernelArgs: process.env.APPLIANCE_VM_VERBOSE ? ['systemd.journald.forward_to_console=1'] : [],
          onConsoleLine: process.env.APPLIANCE_VM_VERBOSE ? (l) => process.stderr.write(`  | ${l}\n`) : undefined,
        });
        // Steps the guest reported before a time-out still count; the others fail with it.
        run = readVmRun(r, 60);
        bootError = run.runError;
      } catch (err) {
        bootError = err as Error;
      } finally {
        if (prep) await fs.rm(prep, { recursive: true, force: true });
      }
    });

    for (const name of Object.values(S)) {
      it(name, function () {
        const s = run.steps.find((x) => x.step === name);
        if (!s) throw bootError ?? notReported(run);
        if (!s.ok) throw new Error(`${s.detail}\n(the service's journal: ${path.join(run.resultsDir, 'journal.txt')})`);
      });
    }

    after(async function () {
      // Everything passed: the results (journal, console) are kept only when something failed.
      const done = run.steps.some((s) => s.step === 'done' && s.ok);
      if (done && !bootError && run.steps.every((s) => s.ok) && !process.env.APPLIANCE_VM_KEEP) {
        await fs.rm(run.resultsDir, { recursive: true, force: true });
      }
    });
  });
}

// =========================================================================================
// Guest side: the scenario
// =========================================================================================

const RESULTS = GUEST_RESULTS;

/** Runs one step and reports it; returns whether it passed (a failed step does not stop the next ones unless the caller says so). */
async function step(name: string, fn: () => Promise<string>): Promise<boolean> {
  return (await runStep({ step: name }, fn)).ok;
}

/** A command's standard output. */
const sh = async (cmd: string, args: string[], timeoutMs = 60_000): Promise<string> => (await run(cmd, args, { timeoutMs })).stdout;

interface UnitState {
  ActiveState: string;
  SubState: string;
  MainPID: number;
  NRestarts: number;
  WatchdogUSec: string;
  UnitFileState: string;
  Result: string;
}

async function unitState(): Promise<UnitState> {
  const out = await sh('systemctl', ['show', UNIT, '-p', 'ActiveState,SubState,MainPID,NRestarts,WatchdogUSec,UnitFileState,Result']);
  const kv = Object.fromEntries(out.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  return {
    ActiveState: kv.ActiveState ?? '',
    SubState: kv.SubState ?? '',
    MainPID: Number(kv.MainPID ?? 0),
    NRestarts: Number(kv.NRestarts ?? 0),
    WatchdogUSec: kv.WatchdogUSec ?? '',
    UnitFileState: kv.UnitFileState ?? '',
    Result: kv.Result ?? '',
  };
}

async function journal(): Promise<string> {
  return sh('journalctl', ['-u', UNIT, '--no-pager', '-o', 'short-monotonic']).catch((err: unknown) => `(journalctl failed: ${String(err)})`);
}

async function journalTail(n = 25): Promise<string> {
  return (await journal()).split('\n').slice(-n).join('\n');
}

/** Waits until systemd reports the service running (Type=notify: after READY=1) with a main PID other than `not`. */
async function waitRunning(what: string, timeoutMs: number, not = 0): Promise<UnitState> {
  try {
    return await waitFor(what, async () => {
      const st = await unitState();
      return st.ActiveState === 'active' && st.SubState === 'running' && st.MainPID > 0 && st.MainPID !== not ? st : null;
    }, timeoutMs, 250);
  } catch (err) {
    throw new Error(`${(err as Error).message}; unit ${JSON.stringify(await unitState().catch(() => null))}\n--- journal (tail) ---\n${await journalTail()}`);
  }
}

/** The gadget's disk on the guest's own USB host side: vendor "Snapback", the model's size. */
function findDisk(): string | null {
  for (const n of readdirSync('/sys/block')) {
    if (!/^sd[a-z]+$/.test(n)) continue;
    try {
      if (readFileSync(`/sys/block/${n}/device/vendor`, 'utf8').trim() !== 'Snapback') continue;
      if (Number(readFileSync(`/sys/block/${n}/size`, 'utf8').trim()) * 512 !== DISK_SIZE) continue;
      if (existsSync(`/dev/${n}`)) return n;
    } catch {
      // going away: skip
    }
  }
  return null;
}

/** Reads the whole disk with O_DIRECT and compares it with the model, retrying while the medium settles. */
async function readsModel(model: Buffer, what: string): Promise<string> {
  let last = '';
  const until = Date.now() + GUARD_MS;
  while (Date.now() < until) {
    const dev = findDisk();
    if (dev) {
      const out = '/run/readback.bin';
      try {
        await sh('busybox', ['dd', `if=/dev/${dev}`, `of=${out}`, 'bs=1048576', `count=${DISK_SIZE / 1048576}`, 'iflag=direct'], 120_000);
        const data = readFileSync(out);
        if (data.length === DISK_SIZE && data.equals(model)) return `/dev/${dev}: ${DISK_SIZE} bytes equal the model`;
        last = `/dev/${dev} read ${data.length} bytes that differ from the model`;
      } catch (err) {
        last = String(err);
      } finally {
        await fs.rm(out, { force: true });
      }
    } else {
      last = 'no Snapback disk on the USB host side';
    }
    await sleep(500);
  }
  throw new Error(`${what}: ${last}`);
}

interface HttpReply {
  status: number;
  body: string;
}

function http(method: 'GET' | 'POST', p: string, body?: unknown, target: { host?: string; socketPath?: string } = { host: ADDRESS }): Promise<HttpReply> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        ...(target.socketPath ? { socketPath: target.socketPath } : { host: target.host, port: 80 }),
        method,
        path: p,
        headers: {
          ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
          // What a browser sends from the appliance's own page.
          ...(method === 'POST' && !target.socketPath ? { origin: `http://${ADDRESS}` } : {}),
        },
        timeout: 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: no answer in 30 s`)));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

async function sessionEvents(): Promise<string[]> {
  const r = await http('GET', '/api/sessions', undefined, { socketPath: path.join(STATE_DIR, 'control.sock') });
  if (r.status !== 200) throw new Error(`GET /api/sessions over the control socket: ${r.status} ${r.body}`);
  const { sessions } = JSON.parse(r.body) as { sessions: { events: { what: string }[] }[] };
  return sessions.flatMap((s) => s.events.map((e) => e.what));
}

async function guestScenario(): Promise<void> {
  mkdirSync(RESULTS, { recursive: true });
  const t0 = Date.now();
  let allOk = false;
  try {
    // the one model of the library, registered in place by `snapback init`
    const models = path.join(STATE_DIR, 'models');
    const ids = readdirSync(models).filter((n) => /^[0-9a-f]{64}$/.test(n));
    if (ids.length !== 1) throw new Error(`expected one model in ${models}, found ${ids.length}`);
    const record = JSON.parse(readFileSync(path.join(models, ids[0]!, 'record.json'), 'utf8')) as { image: string };
    const model = readFileSync(record.image);
    const stage = path.join(REPO, 'pi-gen', 'stage-snapback', '02-snapback', 'files');

    const ok: boolean[] = [];
    ok.push(await step(S.installed, async () => {
      const same = (installed: string, file: string): void => {
        if (!existsSync(installed)) throw new Error(`${installed} is missing`);
        if (!readFileSync(installed).equals(readFileSync(path.join(stage, file)))) throw new Error(`${installed} differs from the stage's files/${file}`);
      };
      same('/etc/systemd/system/snapback.service', 'snapback.service');
      same('/etc/modules-load.d/snapback.conf', 'snapback-modules.conf');
      same('/usr/local/bin/snapback', 'snapback');
      if ((statSync('/usr/local/bin/snapback').mode & 0o111) === 0) throw new Error('/usr/local/bin/snapback is not executable');
      if (!existsSync('/opt/snapback/dist/appliance/cli/main.js')) throw new Error('/opt/snapback/dist is missing the daemon');
      if (existsSync('/opt/snapback/dist/test') || existsSync('/opt/snapback/dist/bench')) throw new Error('/opt/snapback/dist carries the tests or benchmarks');
      // the native BLAKE3 of this architecture (the guest's is x86-64), unpacked rather than linked
      const blake3 = '/opt/snapback/node_modules/@napi-rs/blake-hash-linux-x64-gnu';
      if (!existsSync(path.join(blake3, 'blake.linux-x64-gnu.node')) || (await fs.lstat(blake3)).isSymbolicLink()) throw new Error(`${blake3} is not installed`);
      if (!/^dtoverlay=dwc2,dr_mode=peripheral$/m.test(readFileSync('/boot/firmware/config.txt', 'utf8'))) throw new Error('config.txt has no dtoverlay=dwc2,dr_mode=peripheral');
      const unitText = readFileSync('/etc/systemd/system/snapback.service', 'utf8');
      const wd = /^WatchdogSec=(\S+)$/m.exec(unitText);
      if (!wd) throw new Error("the stage's unit sets no WatchdogSec");
      const enabled = (await sh('systemctl', ['is-enabled', UNIT])).trim();
      if (enabled !== 'enabled') throw new Error(`systemctl is-enabled ${UNIT}: ${enabled}`);
      const st = await unitState();
      if (wd[1] !== `${UNIT_WATCHDOG_SEC}s` || st.WatchdogUSec !== `${UNIT_WATCHDOG_SEC}s`) {
        throw new Error(`the unit's WatchdogSec=${wd[1]}, systemd's WatchdogUSec=${st.WatchdogUSec}; this test expects ${UNIT_WATCHDOG_SEC}s`);
      }
      return `enabled; WatchdogSec=${wd[1]}`;
    }));

    // Without a daemon that stays up, the other steps have nothing to look at.
    const up = await step(S.firstBoot, async () => {
      const first = await waitRunning('systemd to report the daemon running (READY=1)', GUARD_MS);
      const read = await readsModel(model, 'the first boot');
      const now = await unitState();
      if (now.NRestarts !== 0 || now.MainPID !== first.MainPID) {
        throw new Error(`the daemon did not stay up: ${JSON.stringify(now)}\n--- journal (tail) ---\n${await journalTail()}`);
      }
      if (!(await journal()).includes('BLAKE3: native SIMD code')) throw new Error(`the daemon does not hash BLAKE3 natively\n--- journal (tail) ---\n${await journalTail()}`);
      if (!(await journal()).includes('are spliced from the disk file to the socket (native I/O addon)')) throw new Error(`the daemon does not splice large reads (native I/O addon not loaded?)\n--- journal (tail) ---\n${await journalTail()}`);
      if (!(await journal()).includes('are spliced from the socket into the disk file (native I/O addon)')) throw new Error(`the daemon does not splice large writes (native I/O addon not loaded?)\n--- journal (tail) ---\n${await journalTail()}`);
      return `main PID ${now.MainPID}, no restarts; ${read}`;
    });
    ok.push(up);
    if (!up) throw new Error('the first boot failed: the remaining steps are not run');

    ok.push(await step(S.web, async () => {
      const stateReply = await waitFor('the web UI on port 80', async () => http('GET', '/api/auth/state'), 60_000, 500);
      if (stateReply.status !== 200) throw new Error(`GET /api/auth/state: ${stateReply.status} ${stateReply.body}`);
      const state = JSON.parse(stateReply.body) as { passwordSet?: boolean; setupCodeRequired?: boolean };
      if (state.passwordSet !== false || state.setupCodeRequired !== true) {
        throw new Error(`GET /api/auth/state from ${ADDRESS} should say: no password, a setup code is required; it says ${stateReply.body}`);
      }
      const codeFile = path.join(STATE_DIR, 'setup-code');
      if (!existsSync(codeFile)) throw new Error(`${codeFile} is missing`);
      const mode = statSync(codeFile).mode & 0o777;
      if (mode !== 0o600) throw new Error(`${codeFile} has mode ${mode.toString(8)}, not 600`);
      const code = readFileSync(codeFile, 'utf8').trim();
      if (code.length < 6) throw new Error(`${codeFile} holds no code`);
      const log = await journal();
      if (!log.includes(code)) throw new Error(`the setup code is not in the journal of ${UNIT}`);
      const password = 'correct horse battery staple';
      const refused = (r: HttpReply, code: string): boolean => r.status === 403 && (JSON.parse(r.body) as { error?: string }).error === code;
      const without = await http('POST', '/api/auth/setup', { password });
      if (!refused(without, 'SETUP_CODE_REQUIRED')) throw new Error(`setting the password from ${ADDRESS} without the code: ${without.status} ${without.body}`);
      const wrong = await http('POST', '/api/auth/setup', { password, setupCode: code === '000000' ? '111111' : '000000' });
      if (!refused(wrong, 'BAD_SETUP_CODE')) throw new Error(`setting the password with a wrong code: ${wrong.status} ${wrong.body}`);
      const right = await http('POST', '/api/auth/setup', { password, setupCode: code });
      if (right.status !== 201) throw new Error(`setting the password with the code: ${right.status} ${right.body}`);
      const after = JSON.parse((await http('GET', '/api/auth/state')).body) as { passwordSet?: boolean };
      if (after.passwordSet !== true) throw new Error('the password is not set after setup with the code');
      return `auth state ${stateReply.body}; refused without the code (${without.status}) and with a wrong one (${wrong.status}); set with it (201)`;
    }));

    ok.push(await step(S.kill, async () => {
      const before = await unitState();
      process.kill(before.MainPID, 'SIGKILL');
      const st = await waitRunning('systemd to restart the killed daemon', GUARD_MS, before.MainPID);
      if (st.NRestarts !== before.NRestarts + 1) throw new Error(`NRestarts ${before.NRestarts} → ${st.NRestarts}`);
      const events = await sessionEvents();
      const cleaned = events.find((e) => e.includes('cleaning up what an earlier run left'));
      if (!cleaned) throw new Error(`the restarted daemon recorded no clean-up; events: ${events.slice(-8).join(' | ')}`);
      const read = await readsModel(model, 'after the restart');
      return `PID ${before.MainPID} → ${st.MainPID}; "${cleaned}"; ${read}`;
    }));

    ok.push(await step(S.watchdog, async () => {
      // After a failed step the service may be between restarts: start from a running daemon.
      await waitRunning('the daemon running before the watchdog step', GUARD_MS);
      const before = await unitState();
      const logBefore = (await journal()).split('\n').length;
      process.kill(before.MainPID, 'SIGSTOP');
      const st = await waitRunning('systemd to kill the stopped daemon and start another', UNIT_WATCHDOG_SEC * 1000 + GUARD_MS, before.MainPID);
      if (st.NRestarts !== before.NRestarts + 1) throw new Error(`NRestarts ${before.NRestarts} → ${st.NRestarts}`);
      const newLines = (await journal()).split('\n').slice(logBefore - 1);
      const timeout = newLines.find((l) => /watchdog timeout/i.test(l));
      if (!timeout) throw new Error(`systemd logged no watchdog timeout:\n${newLines.slice(-20).join('\n')}`);
      const read = await readsModel(model, 'after the watchdog restart');
      return `PID ${before.MainPID} → ${st.MainPID}; ${timeout.trim()}; ${read}`;
    }));
    allOk = ok.every(Boolean);
  } catch (err) {
    reportStep({ step: 'stopped', ok: false, detail: String((err as Error).stack ?? err), ms: Date.now() - t0 });
  }
  writeFileSync(path.join(RESULTS, 'journal.txt'), await journal());
  if (allOk) reportStep({ step: 'done', ok: true, detail: '', ms: Date.now() - t0 });
  process.exit(allOk ? 0 : 1);
}

// =========================================================================================
// Which part this process plays (last, so that every declaration above is initialised)
// =========================================================================================

if (process.env.SNAPBACK_APPLIANCE_GUEST === 'scenario') {
  await guestScenario();
} else {
  hostTests();
}
