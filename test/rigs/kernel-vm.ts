/**
 * Boots Debian's kernel (test/rigs/debian-kernel.ts) in QEMU and runs one command inside it,
 * with this machine's programs (node, nbd-client, nbdkit, busybox) available as they are.
 *
 * Why: the machine running the tests has no configfs, USB gadget or nbd and loads no modules;
 * a guest with Debian's stock kernel has all of them, and `dummy_hcd` gives it both sides of
 * a USB cable.
 *
 * What the guest sees (only what the rig needs is exported, and only /results is writable):
 *   /usr                   the host's /usr over virtio-9p, read-only, under a tmpfs overlay
 *                          (writes stay in the guest); /bin /sbin /lib /lib64 link into it as
 *                          on Debian 12; the kernel's modules are copied to /usr/lib/modules
 *   <repo>                 the repository (same absolute path as on the host), read-only
 *   /results               a fresh host directory, read-write: the command's results
 *   /etc                   a minimal one made by the rig (passwd, group, hosts, ld.so.cache)
 *   / /tmp /run /var       tmpfs
 *   /proc /sys /dev /sys/kernel/config   mounted; devtmpfs makes device nodes
 * The initramfs (busybox + modules) loads `modules` in order, builds that root, switch_roots
 * into it and runs `command` (cwd: the repository) with `env`; the command's exit status is
 * written to /results/.exit-status, then the guest powers off.
 *
 * With `pid1: 'systemd'` the host's systemd boots the new root instead (multi-user.target, a
 * machine id in /etc, a few units masked) and runs `command` as rig-command.service;
 * `prepareRoot` lets the caller install software into the root before PID 1 starts
 * (test/rigs/appliance-vm.ts runs the pi-gen stage that way).
 */
import { spawn, execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ensureDebianKernel, repoRoot, type DebianKernel } from './debian-kernel.js';
import { withKernelVmSlot } from './vm-slot.js';

const execFileP = promisify(execFile);

export interface KernelVmShare {
  hostPath: string;
  guestPath: string;
  readOnly: boolean;
}

export interface KernelVmOptions {
  /** Command and arguments run inside the guest after switch_root (cwd: the repository). */
  command: string[];
  /** Modules loaded (busybox modprobe, in this order) before the command runs. */
  modules?: string[];
  /** Environment for the command (PATH, HOME, RIG_RESULTS=/results are set by the rig). */
  env?: Record<string, string>;
  /** Extra host directories to export (read-only unless said otherwise). */
  shares?: KernelVmShare[];
  /** Defaults to ensureDebianKernel(). */
  kernel?: DebianKernel;
  /** Host directory that appears as /results; default: a fresh temporary directory. */
  resultsDir?: string;
  memoryMb?: number;
  cpus?: number;
  /** The guest is killed after this long (a guard against a hung guest, not a timing assertion). */
  timeoutMs?: number;
  /** Extra kernel command-line arguments. */
  kernelArgs?: string[];
  /** Called with every line the guest prints on its serial console. */
  onConsoleLine?: (line: string) => void;
  /**
   * What runs as PID 1 in the new root. 'shell' (default): a shell runs `command` and powers
   * off. 'systemd': the host's /lib/systemd/systemd boots the guest (multi-user.target) and runs
   * `command` as the unit rig-command.service, which powers the guest off when it ends.
   */
  pid1?: 'shell' | 'systemd';
  /**
   * Shell lines the initramfs runs once the new root is complete (/proc, /sys and /dev are
   * mounted in it, the shares too) and before PID 1 starts, e.g. `chroot /newroot …` to install
   * software into the guest's root. A failing line stops the boot with its message.
   */
  prepareRoot?: string;
}

export interface KernelVmResult {
  /** The command's exit status inside the guest; null when the guest never reported one. */
  exitStatus: number | null;
  /** Everything the guest printed on its serial console (kernel, init, the command). */
  console: string;
  /** The host directory that was /results inside the guest. */
  resultsDir: string;
  timedOut: boolean;
  /** QEMU's own exit code / signal. */
  qemuExit: { code: number | null; signal: NodeJS.Signals | null };
  durationMs: number;
}

const COMMAND_MARK = '[rig] running:';
const PREPARE_FAILED = '[rig-init] FAILED: preparing the root';

/** The modules the rig itself needs to reach the host's files. */
const RIG_MODULES = ['virtio_pci', 'virtio_rng', '9pnet_virtio', '9p', 'overlay'];

export async function runKernelVm(opts: KernelVmOptions): Promise<KernelVmResult> {
  const started = Date.now();
  const kernel = opts.kernel ?? (await ensureDebianKernel({ modules: opts.modules ?? [] }));
  const repo = repoRoot();
  const resultsDir = opts.resultsDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'snapback-vm-results-')));
  await fs.mkdir(resultsDir, { recursive: true });
  await fs.rm(path.join(resultsDir, '.exit-status'), { force: true });
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'snapback-vm-'));
  try {
    const shares: (KernelVmShare & { tag: string })[] = [
      { tag: 'usr', hostPath: '/usr', guestPath: '/usr', readOnly: true },
      { tag: 'repo', hostPath: repo, guestPath: repo, readOnly: true },
      { tag: 'results', hostPath: resultsDir, guestPath: '/results', readOnly: false },
      ...(opts.shares ?? []).map((s, i) => ({ ...s, tag: `extra${i}` })),
    ];
    const initrd = await buildInitramfs(work, kernel, {
      modules: [...RIG_MODULES, ...(opts.modules ?? [])],
      shares,
      command: opts.command,
      env: { ...(opts.env ?? {}) },
      cwd: repo,
      pid1: opts.pid1 ?? 'shell',
      prepareRoot: opts.prepareRoot ?? '',
    });
    const qemuArgs = [
      '-accel', 'tcg',
      '-bios', '/usr/share/qemu/qboot.rom',
      '-m', String(opts.memoryMb ?? 512),
      '-smp', String(opts.cpus ?? 2),
      '-nodefaults', '-no-user-config', '-no-reboot',
      '-display', 'none', '-monitor', 'none',
      '-chardev', 'stdio,id=con,signal=off', '-serial', 'chardev:con',
      '-device', 'virtio-rng-pci',
      '-kernel', kernel.vmlinuz,
      '-initrd', initrd,
      // no_timer_check: under TCG the kernel's IO-APIC timer check sometimes fails and panics.
      '-append', ['console=ttyS0', 'panic=-1', 'loglevel=4', 'rdinit=/init', 'no_timer_check', ...(opts.kernelArgs ?? [])].join(' '),
    ];
    for (const s of shares) {
      qemuArgs.push(
        '-virtfs',
        `local,path=${s.hostPath},mount_tag=${s.tag},security_model=none,multidevs=remap${s.readOnly ? ',readonly=on' : ''}`,
      );
    }
    // The guest runs only while this process holds the kernel-VM slot (test/rigs/vm-slot.ts).
    const run = await withKernelVmSlot(async () => {
      let run = await runQemu(qemuArgs, opts.timeoutMs ?? 300_000, opts.onConsoleLine);
      // A guest that died before the command started (a boot-time panic under emulation) is
      // booted once more; a failure of the command itself never is.
      // A failed root preparation is the caller's error, not the emulator's: not booted again.
      if (!run.timedOut && !run.console.includes(COMMAND_MARK) && !run.console.includes(PREPARE_FAILED)) {
        opts.onConsoleLine?.('[rig] the guest died before the command started; booting it once more');
        const first = run.console;
        run = await runQemu(qemuArgs, opts.timeoutMs ?? 300_000, opts.onConsoleLine);
        run.console = `${first}\n[rig] ---- second boot ----\n${run.console}`;
      }
      return run;
    });
    let exitStatus: number | null = null;
    try {
      const text = (await fs.readFile(path.join(resultsDir, '.exit-status'), 'utf8')).trim();
      exitStatus = /^\d+$/.test(text) ? Number(text) : null;
    } catch {
      exitStatus = null;
    }
    return { exitStatus, console: run.console, resultsDir, timedOut: run.timedOut, qemuExit: run.exit, durationMs: Date.now() - started };
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

function runQemu(
  args: string[],
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<{ console: string; timedOut: boolean; exit: { code: number | null; signal: NodeJS.Signals | null } }> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // A test process that exits (or is interrupted) takes its guest with it.
    const killGuest = (): void => {
      child.kill('SIGKILL');
    };
    process.once('exit', killGuest);
    const chunks: string[] = [];
    let partial = '';
    let timedOut = false;
    const feed = (text: string): void => {
      chunks.push(text);
      if (!onLine) return;
      partial += text;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        onLine(partial.slice(0, nl).replace(/\r$/, ''));
        partial = partial.slice(nl + 1);
      }
    };
    child.stdout.setEncoding('utf8').on('data', feed);
    child.stderr.setEncoding('utf8').on('data', (t: string) => feed(`[qemu] ${t}`));
    const timer = setTimeout(() => {
      timedOut = true;
      feed(`\n[rig] guest still running after ${timeoutMs} ms: killing QEMU\n`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start qemu-system-x86_64 (install qemu-system-x86): ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      process.removeListener('exit', killGuest);
      if (partial && onLine) onLine(partial);
      resolve({ console: chunks.join(''), timedOut, exit: { code, signal } });
    });
  });
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

interface InitramfsSpec {
  modules: string[];
  shares: (KernelVmShare & { tag: string })[];
  command: string[];
  env: Record<string, string>;
  cwd: string;
  pid1: 'shell' | 'systemd';
  prepareRoot: string;
}

async function buildInitramfs(work: string, kernel: DebianKernel, spec: InitramfsSpec): Promise<string> {
  const root = path.join(work, 'initramfs');
  for (const d of ['bin', 'dev', 'proc', 'sys', 'newroot', 'etc', 'lib/modules']) {
    await fs.mkdir(path.join(root, d), { recursive: true });
  }
  const busybox = '/usr/bin/busybox';
  if (!existsSync(busybox)) throw new Error('kernel-vm: /usr/bin/busybox is missing (install busybox-static)');
  await fs.copyFile(busybox, path.join(root, 'bin', 'busybox'));
  await fs.chmod(path.join(root, 'bin', 'busybox'), 0o755);
  await fs.cp(kernel.modulesDir, path.join(root, 'lib', 'modules', kernel.version), { recursive: true });

  // A minimal /etc for the new root.
  await fs.writeFile(path.join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
  await fs.writeFile(path.join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  await fs.writeFile(path.join(root, 'etc', 'hosts'), '127.0.0.1 localhost\n::1 localhost\n');
  if (existsSync('/etc/ld.so.cache')) await fs.copyFile('/etc/ld.so.cache', path.join(root, 'etc', 'ld.so.cache'));

  const env: Record<string, string> = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/root',
    TMPDIR: '/tmp',
    RIG_RESULTS: '/results',
    RIG_GUEST: '1',
    ...spec.env,
  };
  const envLines = Object.entries(env)
    .map(([k, v]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`kernel-vm: bad environment name ${k}`);
      return `export ${k}=${shQuote(v)}`;
    })
    .join('\n');

  const mounts = spec.shares
    .map((s) => {
      const opts = `trans=virtio,version=9p2000.L,msize=262144,cache=loose${s.readOnly ? ',ro' : ''}`;
      if (s.guestPath === '/usr') {
        // Read-only lower layer, tmpfs upper layer: writes (modules, caches) stay in the guest.
        return [
          'mkdir -p /newroot/.rig/usr-lower /newroot/.rig/usr-upper /newroot/.rig/usr-work /newroot/usr',
          `mount -t 9p -o ${opts} ${s.tag} /newroot/.rig/usr-lower || fail "mount 9p ${s.tag}"`,
          'mount -t overlay overlay -o lowerdir=/newroot/.rig/usr-lower,upperdir=/newroot/.rig/usr-upper,workdir=/newroot/.rig/usr-work /newroot/usr || fail "overlay /usr"',
        ].join('\n');
      }
      // The results share must see every write at once: no caching there.
      const o = s.readOnly ? opts : `trans=virtio,version=9p2000.L,msize=262144,cache=none`;
      return `mkdir -p /newroot${shQuote(s.guestPath)}\nmount -t 9p -o ${o} ${s.tag} /newroot${shQuote(s.guestPath)} || fail "mount 9p ${s.tag}"`;
    })
    .join('\n');

  const init = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
fail() { echo "[rig-init] FAILED: $*"; sleep 1; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "[rig-init] kernel $(uname -r), loading modules"
for m in ${spec.modules.map(shQuote).join(' ')}; do modprobe "$m" || fail "modprobe $m"; done
mount -t tmpfs -o mode=0755 rootfs /newroot || fail "tmpfs root"
${mounts}
for d in bin sbin lib lib64; do ln -s usr/$d /newroot/$d; done
mkdir -p /newroot/usr/lib/modules && cp -a /lib/modules/${kernel.version} /newroot/usr/lib/modules/ || fail "copy modules"
mkdir -p /newroot/etc /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run /newroot/var/tmp /newroot/root /newroot/mnt
chmod 1777 /newroot/tmp /newroot/var/tmp
cp -a /etc/. /newroot/etc/
cp /stage2 /newroot/.rig/stage2
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
${spec.prepareRoot ? 'echo "[rig-init] preparing the root"\nsh -e /prepare-root.sh || fail "preparing the root (prepareRoot)"\n' : ''}${
    spec.pid1 === 'systemd' ? 'exec switch_root /newroot /lib/systemd/systemd' : 'exec switch_root /newroot /bin/sh /.rig/stage2'
  }
fail "switch_root"
`;
  // Under systemd, PID 1 mounts configfs, devpts and /dev/shm and sets the hostname itself.
  const shellSetup = `if [ -d /sys/kernel/config ] && ! grep -q ' /sys/kernel/config ' /proc/mounts; then
  busybox mount -t configfs configfs /sys/kernel/config 2>/dev/null || true
fi
mkdir -p /dev/pts /dev/shm && busybox mount -t devpts devpts /dev/pts && busybox mount -t tmpfs tmpfs /dev/shm
busybox hostname snapback-vm
busybox ip link set lo up
`;
  const stage2 = `# stage 2: runs in the new root
${envLines}
${spec.pid1 === 'systemd' ? '' : shellSetup}cd ${shQuote(spec.cwd)}
echo "[rig] running: ${spec.command.map((c) => c.replace(/["\\$`]/g, '\\$&')).join(' ')}"
${spec.command.map(shQuote).join(' ')}
status=$?
echo "[rig] command exited with status $status"
echo $status > /results/.exit-status
busybox sync
busybox umount /results 2>/dev/null
busybox poweroff -f
`;
  await fs.writeFile(path.join(root, 'init'), init, { mode: 0o755 });
  await fs.writeFile(path.join(root, 'stage2'), stage2, { mode: 0o644 });
  if (spec.prepareRoot) await fs.writeFile(path.join(root, 'prepare-root.sh'), spec.prepareRoot + '\n', { mode: 0o644 });
  if (spec.pid1 === 'systemd') await writeSystemdEtc(path.join(root, 'etc'));

  const out = path.join(work, 'initramfs.cpio');
  // busybox cpio takes the file list on stdin; newc is the format the kernel unpacks.
  await execFileP('sh', ['-c', `cd ${shQuote(root)} && busybox find . | busybox cpio -o -H newc -R 0:0 > ${shQuote(out)}`], {
    maxBuffer: 16 << 20,
  });
  return out;
}

/**
 * What systemd needs in the guest's /etc besides the rig's minimal one: a machine id (so this is
 * not systemd's own "first boot"), the unit that runs the rig's command (its stage 2 script) and
 * powers the guest off, and masks for units that only slow an emulated boot (a login prompt on
 * the serial console, time synchronisation, periodic jobs).
 */
async function writeSystemdEtc(etc: string): Promise<void> {
  const units = path.join(etc, 'systemd', 'system');
  await fs.mkdir(path.join(units, 'multi-user.target.wants'), { recursive: true });
  await fs.writeFile(path.join(etc, 'machine-id'), randomBytes(16).toString('hex') + '\n');
  await fs.writeFile(path.join(etc, 'hostname'), 'snapback-vm\n');
  await fs.symlink('../usr/lib/os-release', path.join(etc, 'os-release'));
  await fs.writeFile(
    path.join(units, 'rig-command.service'),
    `[Unit]
Description=Test rig: the command under test
After=basic.target

[Service]
Type=exec
ExecStart=/bin/sh /.rig/stage2
StandardOutput=journal+console
StandardError=journal+console
`,
  );
  await fs.symlink('../rig-command.service', path.join(units, 'multi-user.target.wants', 'rig-command.service'));
  for (const unit of [
    'getty.target', 'serial-getty@ttyS0.service', 'systemd-firstboot.service', 'systemd-timesyncd.service',
    'apt-daily.timer', 'apt-daily-upgrade.timer', 'man-db.timer', 'e2scrub_all.timer', 'fstrim.timer', 'logrotate.timer',
  ]) {
    await fs.symlink('/dev/null', path.join(units, unit));
  }
}
