/**
 * The appliance's software as the Raspberry Pi image installs it, booted for real: Debian's
 * kernel in QEMU (test/rigs/kernel-vm.ts) with systemd as PID 1, `dummy_hcd` as the Pi's USB
 * device port and the computer's USB host at once, and the pi-gen stage's own install steps
 * run against the guest's root before systemd starts.
 *
 * Before PID 1 starts, the initramfs (as root, in the finished guest root):
 *  1. gives the guest a network address that is not loopback, APPLIANCE_ADDRESS on a dummy
 *     interface (traffic to it never leaves the guest);
 *  2. makes what Raspberry Pi OS has and the stage edits (/boot/firmware/config.txt);
 *  3. runs the sub-stage pi-gen/stage-snapback/02-snapback as pi-gen's run_sub_stage does:
 *     for each prefix 00…99, `NN-run.sh` with ROOTFS_DIR and STAGE_DIR set (here inside the
 *     guest root, so ROOTFS_DIR=/), then `NN-run-chroot.sh` through `bash -e` in the chroot.
 *     Any other kind of sub-stage file (packages, patches, debconf) fails the boot: the rig
 *     cannot install packages, and a test must not pass by silently skipping a step;
 *  4. puts in place the appliance's data as an administrator leaves it after README's Pi
 *     steps: a state directory made by `snapback init` (on the host, where node is fast: see
 *     prepareApplianceState) is copied to /var/lib/snapback, and the model and working disk
 *     it names to the same absolute paths as on the host.
 * Then systemd boots multi-user.target, which starts snapback.service if the stage enabled it,
 * and runs the caller's command (rig-command.service) to drive and observe the appliance.
 *
 * Node comes from this machine (its /usr/bin/node, as the distribution's `nodejs` would be on
 * the image). The one stand-in is npm: tests reach no registry, so inside the guest `npm ci
 * --omit=dev` (and `--omit=optional`) links the packages that install would put there, as
 * package-lock.json lists them, from the repository's own node_modules (after checking the lock
 * file is the repository's), and copies the native I/O addon its install script would build
 * from the repository's build of it, `npm pack NAME@VERSION` packs that package from the same
 * node_modules (the version checked), and `npm cache clean` has nothing to do; any other npm
 * command fails loudly.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { repoRoot } from './debian-kernel.js';
import { runKernelVm, type KernelVmResult } from './kernel-vm.js';

const execFileP = promisify(execFile);

/** The appliance's address inside the guest (TEST-NET-1: documentation only, never routed). */
const APPLIANCE_ADDRESS = '192.0.2.1';
/** The pi-gen stage's sub-stage that installs Snapback. */
const SNAPBACK_SUBSTAGE = path.join('pi-gen', 'stage-snapback', '02-snapback');
/** Where the appliance keeps its state (the unit's --state-dir). */
const STATE_DIR = '/var/lib/snapback';

/** The modules the appliance needs in the guest besides the rig's own. */
const APPLIANCE_MODULES = ['dummy_hcd', 'libcomposite', 'usb_f_mass_storage', 'nbd', 'usb_storage', 'sd_mod', 'dummy'];

export interface ApplianceVmOptions {
  /** Command run inside the booted guest as rig-command.service (cwd: the repository). */
  command: string[];
  env?: Record<string, string>;
  /** What prepareApplianceState() made. */
  state: ApplianceState;
  /** systemd drop-ins for snapback.service: file name → contents (e.g. a longer TimeoutStartSec for an emulated guest). */
  unitDropIns?: Record<string, string>;
  /** Host directory that appears as /results. */
  resultsDir?: string;
  memoryMb?: number;
  timeoutMs?: number;
  /** Extra kernel command-line arguments (e.g. systemd.journald.forward_to_console=1). */
  kernelArgs?: string[];
  onConsoleLine?: (line: string) => void;
}

const GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const NPM_SHIM_DIR = '/.rig/npm';
const PREP_SHARE = '/.rig/prep';

/** The appliance's data, made on the host: a directory holding the model, the working disk and the state directory. */
export interface ApplianceState {
  /** A fresh directory under /var/tmp (the guest's systemd empties /tmp at boot, so not there). */
  dir: string;
  /** The model image (its manifest beside it), registered in the state's model library where it lies. */
  modelImage: string;
  /** The working disk, as snapback.json names it. */
  disk: string;
}

/**
 * Makes the model's manifest and an initialised state directory with the project's CLI on the
 * host (`snapback model manifest`, `snapback init`: README's Pi steps 3). The guest copies the
 * model and disk to the same absolute paths, and the state directory to /var/lib/snapback.
 */
export async function prepareApplianceState(model: Buffer): Promise<ApplianceState> {
  const cli = path.join(repoRoot(), 'dist', 'appliance', 'cli', 'main.js');
  if (!existsSync(cli)) throw new Error('appliance-vm: build the project first (npm run build)');
  const dir = await fs.mkdtemp('/var/tmp/snapback-appliance-');
  const modelImage = path.join(dir, 'model.img');
  const disk = path.join(dir, 'disk.img');
  await fs.writeFile(modelImage, model);
  await execFileP(process.execPath, [cli, 'model', 'manifest', modelImage], { env: { ...process.env, NODE_ENV: 'test' } });
  await execFileP(process.execPath, [cli, 'init', '--state-dir', path.join(dir, 'state'), '--model', modelImage, '--disk', disk], {
    env: { ...process.env, NODE_ENV: 'test' },
  });
  return { dir, modelImage, disk };
}

export function runApplianceVm(opts: ApplianceVmOptions): Promise<KernelVmResult> {
  const repo = repoRoot();
  for (const f of [opts.state.modelImage, `${opts.state.modelImage}.manifest.json`, opts.state.disk, path.join(opts.state.dir, 'state', 'snapback.json')]) {
    if (!existsSync(f)) throw new Error(`appliance-vm: ${f} is missing (prepareApplianceState makes it)`);
  }
  return runKernelVm({
    pid1: 'systemd',
    modules: APPLIANCE_MODULES,
    command: opts.command,
    env: opts.env,
    shares: [{ hostPath: opts.state.dir, guestPath: PREP_SHARE, readOnly: true }],
    prepareRoot: prepareRootScript(repo, opts.state, opts.unitDropIns ?? {}),
    resultsDir: opts.resultsDir,
    memoryMb: opts.memoryMb ?? 768,
    timeoutMs: opts.timeoutMs,
    kernelArgs: opts.kernelArgs,
    onConsoleLine: opts.onConsoleLine,
  });
}

function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The sub-stage's steps in pi-gen's order, as shell lines for the initramfs (busybox sh, -e). */
function subStageSteps(repo: string): string[] {
  const dir = path.join(repo, SNAPBACK_SUBSTAGE);
  const stageDir = path.dirname(dir);
  const files = readdirSync(dir).filter((f) => /^\d\d-/.test(f));
  const steps: string[] = [];
  for (let i = 0; i < 100; i++) {
    const nn = String(i).padStart(2, '0');
    for (const f of files.filter((x) => x.startsWith(`${nn}-`))) {
      if (f !== `${nn}-run.sh` && f !== `${nn}-run-chroot.sh`) {
        throw new Error(`appliance-vm: ${path.join(dir, f)}: the rig runs only NN-run.sh and NN-run-chroot.sh steps (no packages, patches or debconf)`);
      }
    }
    const run = path.join(dir, `${nn}-run.sh`);
    // pi-gen runs NN-run.sh only when it is executable.
    if (existsSync(run) && (statSync(run).mode & 0o111) !== 0) {
      steps.push(
        `echo "[appliance-vm] $(cut -d" " -f1 /newroot/proc/uptime)s: pi-gen step ${nn}-run.sh"`,
        `chroot /newroot /usr/bin/env -i PATH=${GUEST_PATH} HOME=/root ROOTFS_DIR=/ STAGE_DIR=${shQuote(stageDir)} ` +
          `/bin/sh -c ${shQuote(`cd ${shQuote(dir)} && ./${nn}-run.sh`)}`,
      );
    }
    const chrootStep = path.join(dir, `${nn}-run-chroot.sh`);
    if (existsSync(chrootStep)) {
      // pi-gen's on_chroot: `bash -e` in the image's root, the script on its standard input.
      steps.push(
        `echo "[appliance-vm] $(cut -d" " -f1 /newroot/proc/uptime)s: pi-gen step ${nn}-run-chroot.sh (in the chroot)"`,
        `chroot /newroot /usr/bin/env -i PATH=${NPM_SHIM_DIR}:${GUEST_PATH} HOME=/root /bin/bash -e < /newroot${chrootStep}`,
      );
    }
  }
  if (steps.length === 0) throw new Error(`appliance-vm: ${dir} has no steps pi-gen would run`);
  return steps;
}

/** The packages `npm ci --omit=dev` (with `omitOptional`: and `--omit=optional`) installs at the top of node_modules, from package-lock.json. */
function productionPackages(repo: string, omitOptional: boolean): string[] {
  const lock = JSON.parse(readFileSync(path.join(repo, 'package-lock.json'), 'utf8')) as { packages?: Record<string, { dev?: boolean; optional?: boolean }> };
  const out: string[] = [];
  for (const [key, entry] of Object.entries(lock.packages ?? {})) {
    if (!key.startsWith('node_modules/') || entry.dev || (omitOptional && entry.optional)) continue;
    const name = key.slice('node_modules/'.length);
    // Nested copies live inside their parent's directory, which is linked whole.
    if (name.includes('/node_modules/')) continue;
    if (!existsSync(path.join(repo, 'node_modules', name))) throw new Error(`appliance-vm: ${name} is in package-lock.json but not in node_modules: run npm ci`);
    out.push(name);
  }
  if (out.length === 0) throw new Error('appliance-vm: package-lock.json lists no production packages');
  return out;
}

function npmShim(repo: string): string {
  const modules = path.join(repo, 'node_modules');
  const addon = path.join(repo, 'appliance', 'native', 'build', 'Release', 'snapback_io.node');
  if (!existsSync(addon)) throw new Error(`appliance-vm: ${addon} is missing: run npm ci (or npm run build:native)`);
  /** The shell lines of one `npm ci`: the lock file checked, then the packages linked. */
  const install = (omitOptional: boolean): string => {
    const pkgs = productionPackages(repo, omitOptional);
    // One `ln` per directory of links (forks are slow under emulation): unscoped packages, then one per @scope.
    const byDir = new Map<string, string[]>();
    for (const p of pkgs) {
      const dir = p.includes('/') ? p.slice(0, p.indexOf('/')) : '';
      byDir.set(dir, [...(byDir.get(dir) ?? []), p]);
    }
    const links = [...byDir.entries()]
      .map(([dir, names]) => {
        const dest = dir ? `node_modules/${dir}/` : 'node_modules/';
        return `${dir ? `\tmkdir -p ${shQuote(dest)}\n` : ''}\tln -s ${names.map((n) => shQuote(path.join(modules, n))).join(' ')} ${shQuote(dest)}`;
      })
      .join('\n');
    return `\tcmp -s package-lock.json ${shQuote(path.join(repo, 'package-lock.json'))} || { echo "rig npm: $PWD/package-lock.json is not the repository's" >&2; exit 1; }
\trm -rf node_modules
\tmkdir node_modules
${links}
\techo "rig npm: ${pkgs.length} production packages${omitOptional ? ' (no optional ones)' : ''} linked from the repository's node_modules"
\t# npm ci runs the project's install script, which builds the native I/O addon (same architecture here)
\t[ -f appliance/native/binding.gyp ] || { echo "rig npm: appliance/native/binding.gyp is not in $PWD" >&2; exit 1; }
\tmkdir -p appliance/native/build/Release
\tcp ${shQuote(addon)} appliance/native/build/Release/
\techo "rig npm: the native I/O addon copied from the repository's build"`;
  };
  return `#!/bin/sh
# Test rig: npm inside the guest, where no registry can be reached (see test/rigs/appliance-vm.ts).
set -e
case "$*" in
"ci --omit=dev --omit=optional"*)
${install(true)}
	;;
"ci --omit=dev"*)
${install(false)}
	;;
"pack --silent --pack-destination "*)
	# one package of the repository's node_modules, as the registry's tarball of that version
	dest=$4
	name=\${5%@*}
	version=\${5##*@}
	dir=${shQuote(modules)}/$name
	[ -d "$dir" ] || { echo "rig npm: $name is not in the repository's node_modules" >&2; exit 1; }
	[ "$(node -p "require('$dir/package.json').version")" = "$version" ] || { echo "rig npm: the repository's $name is not version $version" >&2; exit 1; }
	file=$(echo "$name" | sed 's,^@,,; s,/,-,')-$version.tgz
	tar -czf "$dest/$file" -C "$(dirname "$dir")" --transform "s,^$(basename "$dir"),package," "$(basename "$dir")"
	echo "$file"
	;;
"cache clean"*) ;;
*)
	echo "rig npm: cannot stand in for: npm $*" >&2
	exit 1
	;;
esac
`;
}

function prepareRootScript(repo: string, state: ApplianceState, dropIns: Record<string, string>): string {
  const writeFile = (guestPath: string, text: string, mode = '644'): string => {
    const marker = 'RIG_EOF_' + Math.random().toString(36).slice(2);
    return `mkdir -p ${shQuote(path.dirname(guestPath))}\ncat > ${shQuote(guestPath)} <<'${marker}'\n${text.replace(/\n?$/, '\n')}${marker}\nchmod ${mode} ${shQuote(guestPath)}`;
  };
  const lines = [
    '# The network: a non-loopback address on a dummy interface.',
    'ip link add snapback0 type dummy',
    `ip addr add ${APPLIANCE_ADDRESS}/24 dev snapback0`,
    'ip link set snapback0 up',
    '# Services of a full OS boot that the appliance does not use and an emulated guest pays for.',
    ...['dbus.service', 'dbus.socket', 'systemd-logind.service', 'systemd-user-sessions.service'].map(
      (u) => `ln -s /dev/null /newroot/etc/systemd/system/${u}`,
    ),
    '# What Raspberry Pi OS has and the stage edits.',
    writeFile('/newroot/boot/firmware/config.txt', '# Raspberry Pi OS config.txt (as the rig makes it)\ndtparam=audio=on\ncamera_auto_detect=1\n\n[all]\n'),
    writeFile(`/newroot${NPM_SHIM_DIR}/npm`, npmShim(repo), '755'),
    "echo \"[appliance-vm] running pi-gen's stage-snapback/02-snapback against the guest's root\"",
    ...subStageSteps(repo),
    ...Object.entries(dropIns).map(([name, text]) => {
      if (!/^[\w.-]+\.conf$/.test(name)) throw new Error(`appliance-vm: bad drop-in name ${name}`);
      return writeFile(`/newroot/etc/systemd/system/snapback.service.d/${name}`, text);
    }),
    `echo "[appliance-vm] $(cut -d' ' -f1 /newroot/proc/uptime)s: the appliance's data: the state directory, the model and the disk"`,
    `mkdir -p /newroot${shQuote(state.dir)}`,
    `cp -a /newroot${PREP_SHARE}/${shQuote(path.relative(state.dir, state.modelImage))} /newroot${PREP_SHARE}/${shQuote(path.relative(state.dir, state.modelImage))}.manifest.json ` +
      `/newroot${PREP_SHARE}/${shQuote(path.relative(state.dir, state.disk))} /newroot${shQuote(state.dir)}/`,
    `cp -a /newroot${PREP_SHARE}/state/. /newroot${STATE_DIR}/`,
    `echo "[appliance-vm] $(cut -d' ' -f1 /newroot/proc/uptime)s: the root is ready; systemd boots"`,
  ];
  return lines.join('\n');
}
