/**
 * Debian's own kernel for the QEMU rigs (test/rigs/kernel-vm.ts and the host-boot rig).
 *
 * The machine running the tests has no configfs, no USB gadget and no nbd of its own, and it
 * loads no modules; the rigs boot Debian's stock kernel in QEMU instead. This module fetches
 * the kernel package that Debian's `linux-image-amd64` currently points at with
 * `apt-get download`, and keeps, under test/.cache/debian-kernel/ (gitignored):
 *
 *   debs/<package>_<version>_amd64.deb            the downloaded package (≈ 70 MB), kept so
 *                                                 that asking for more modules needs no network
 *   <package>_<version>/vmlinuz                   the kernel image
 *   <package>_<version>/lib/modules/<kver>/…      only the modules asked for and their
 *                                                 dependencies (≈ 13 MB), with modules.dep made
 *                                                 by `busybox depmod` (there is no kmod here)
 *   <package>_<version>/kernel.json               the manifest; written last, so it marks a
 *                                                 complete entry
 *
 * The API below is stable: other rigs depend on it.
 *
 * Offline use: set SNAPBACK_KERNEL_DEB to a local linux-image-*.deb; SNAPBACK_KERNEL_PACKAGE
 * names another package (e.g. linux-image-6.1.0-56-amd64) than linux-image-amd64's dependency.
 * If no kernel can be had, ensureDebianKernel() rejects with an error that says why and what
 * to do; it never pretends.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withDirLock } from './dir-lock.js';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** What ensureDebianKernel() gives back. All paths are absolute. */
export interface DebianKernel {
  /** The kernel image, for `qemu-system-x86_64 -kernel`. */
  vmlinuz: string;
  /** The kernel release (`uname -r` inside the guest), e.g. "6.1.0-56-amd64". */
  version: string;
  /**
   * A root directory that holds `lib/modules/<version>/` (modules + modules.dep): copy it into
   * an initramfs as is, or pass it to `busybox depmod -b`.
   */
  modulesRoot: string;
  /** `<modulesRoot>/lib/modules/<version>`: the directory `modprobe` reads. */
  modulesDir: string;
  /** The Debian package it came from, and the package's version. */
  package: string;
  packageVersion: string;
  /** Every module present (normalised names: '-' → '_'), dependencies included. */
  modules: string[];
  /** Of the modules asked for, those that are built into this kernel (nothing to load). */
  builtin: string[];
}

export interface EnsureDebianKernelOptions {
  /** Modules wanted besides DEFAULT_KERNEL_MODULES (names with '-' or '_'). */
  modules?: readonly string[];
  /** Overrides the cache directory (default: <repo>/test/.cache/debian-kernel). */
  cacheDir?: string;
}

/**
 * The modules every cached kernel carries: the gadget rig's (dummy_hcd … nbd), what a QEMU
 * guest needs to reach the host's files (virtio, 9p, overlay), and what a host-boot rig is
 * likely to use (virtio disks and network, USB host controllers, common filesystems).
 */
export const DEFAULT_KERNEL_MODULES: readonly string[] = [
  // the USB gadget and its host side, the kernel nbd client
  'dummy_hcd', 'libcomposite', 'usb_f_mass_storage', 'usb_storage', 'uas', 'sd_mod', 'sr_mod', 'nbd',
  // a QEMU guest reaching the host
  'virtio_pci', 'virtio_blk', 'virtio_scsi', 'virtio_net', 'virtio_console', 'virtio_rng',
  '9pnet_virtio', '9p', 'overlay',
  // host-side controllers and filesystems
  'xhci_pci', 'ehci_pci', 'ext4', 'vfat', 'nls_cp437', 'nls_iso8859_1', 'nls_utf8', 'nls_ascii', 'loop', 'squashfs', 'isofs',
  // the appliance VM's dummy network device; the host-boot guest's fw_cfg and crc helpers
  'dummy', 'qemu_fw_cfg', 'crct10dif_generic', 'crc64_rocksoft_generic',
];

export function normaliseModuleName(name: string): string {
  return name.replace(/-/g, '_').replace(/\.ko(\.[a-z]+)?$/, '');
}

/** The repository root: the nearest ancestor of this file holding package.json. */
export function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('debian-kernel: cannot find the repository root (package.json) above ' + import.meta.url);
    dir = up;
  }
}

export function defaultKernelCacheDir(): string {
  return path.join(repoRoot(), 'test', '.cache', 'debian-kernel');
}

const inFlight = new Map<string, Promise<DebianKernel>>();

/**
 * Returns Debian's kernel with (at least) DEFAULT_KERNEL_MODULES and `opts.modules`, fetching
 * and extracting it the first time. Concurrent calls in one process share the work; test files
 * running in parallel processes take the cache's lock, so one builds and the others read its
 * entry; entries are published with an atomic rename, so a crash leaves no half entry behind.
 * DEFAULT_KERNEL_MODULES covers every rig, so the first entry serves them all and no process
 * ever replaces an entry another one is using.
 */
export function ensureDebianKernel(opts: EnsureDebianKernelOptions = {}): Promise<DebianKernel> {
  const wanted = [...new Set([...DEFAULT_KERNEL_MODULES, ...(opts.modules ?? [])].map(normaliseModuleName))].sort();
  const cacheDir = opts.cacheDir ?? defaultKernelCacheDir();
  const key = cacheDir + '\0' + wanted.join(',');
  let p = inFlight.get(key);
  if (!p) {
    p = withCacheLock(cacheDir, () => ensure(cacheDir, wanted)).catch((err: unknown) => {
      inFlight.delete(key);
      throw err;
    });
    inFlight.set(key, p);
  }
  return p;
}

/** Runs `fn` holding the cache directory's lock (`.lock`, test/rigs/dir-lock.ts). */
async function withCacheLock<T>(cacheDir: string, fn: () => Promise<T>): Promise<T> {
  await fs.mkdir(cacheDir, { recursive: true });
  return withDirLock(path.join(cacheDir, '.lock'), 250, fn);
}

interface Manifest {
  package: string;
  packageVersion: string;
  version: string;
  modules: string[];
  builtin: string[];
  requested: string[];
}

async function ensure(cacheDir: string, wanted: string[]): Promise<DebianKernel> {
  await fs.mkdir(path.join(cacheDir, 'debs'), { recursive: true });
  const target = await resolveTarget(cacheDir);

  // A complete cached entry that already has every module asked for: done, no network.
  if (target.cached) {
    const have = await readEntry(cacheDir, target.cached);
    if (have && wanted.every((m) => have.modules.includes(m) || have.builtin.includes(m))) return publicView(have);
  }

  let deb = target.deb;
  if (!deb) {
    if (!target.pkg) throw new Error(`debian-kernel: cache entry ${target.cached ?? '?'} lacks modules and apt names no package to fetch`);
    deb = await downloadDeb(cacheDir, target.pkg);
  }
  const info = await debInfo(deb);
  const entryName = `${info.pkg}_${info.version}`;
  // Keep whatever modules an earlier entry carried, so entries only ever grow.
  const previous = await readEntry(cacheDir, entryName);
  const requested = [...new Set([...wanted, ...(previous?.requestedModules ?? [])])].sort();
  await buildEntry(cacheDir, entryName, deb, info, requested);
  const built = await readEntry(cacheDir, entryName);
  if (!built) throw new Error(`debian-kernel: built ${entryName} but cannot read it back`);
  return publicView(built);
}

function publicView(entry: DebianKernel & { requestedModules: string[] }): DebianKernel {
  const { requestedModules: _unused, ...kernel } = entry;
  return kernel;
}

interface Target {
  /** A cache entry name that may already serve the request. */
  cached?: string;
  /** A local .deb to use (SNAPBACK_KERNEL_DEB or one already downloaded). */
  deb?: string;
  /** A package to download. */
  pkg?: string;
}

async function resolveTarget(cacheDir: string): Promise<Target> {
  const localDeb = process.env.SNAPBACK_KERNEL_DEB;
  if (localDeb) {
    if (!existsSync(localDeb)) throw new Error(`debian-kernel: SNAPBACK_KERNEL_DEB=${localDeb} does not exist`);
    const info = await debInfo(localDeb);
    return { cached: `${info.pkg}_${info.version}`, deb: localDeb };
  }
  let pkg = process.env.SNAPBACK_KERNEL_PACKAGE;
  let aptError: string | undefined;
  if (!pkg) {
    try {
      pkg = await currentKernelPackage();
    } catch (err) {
      aptError = err instanceof Error ? err.message : String(err);
    }
  }
  if (pkg) {
    const version = await candidateVersion(pkg).catch(() => undefined);
    if (version) {
      const name = `${pkg}_${version}`;
      const deb = path.join(cacheDir, 'debs', `${name}_amd64.deb`);
      return existsSync(deb) ? { cached: name, deb } : { cached: name, pkg };
    }
    return { pkg };
  }
  // apt knows nothing (no package lists): fall back to the newest complete cache entry.
  const entries = (await fs.readdir(cacheDir)).filter((n) => existsSync(path.join(cacheDir, n, 'kernel.json'))).sort();
  const newest = entries.at(-1);
  if (newest) {
    const deb = path.join(cacheDir, 'debs', `${newest}_amd64.deb`);
    return existsSync(deb) ? { cached: newest, deb } : { cached: newest };
  }
  throw new Error(
    `debian-kernel: cannot tell which kernel package to fetch (${aptError ?? 'apt-cache found nothing'}); ` +
      'run `apt-get update` on a Debian 12 machine, or set SNAPBACK_KERNEL_DEB to a linux-image-6.1.0-*-amd64 .deb',
  );
}

/** The versioned package linux-image-amd64 depends on, e.g. linux-image-6.1.0-56-amd64. */
async function currentKernelPackage(): Promise<string> {
  const { stdout } = await execFileP('apt-cache', ['depends', 'linux-image-amd64']);
  const m = /Depends:\s*(linux-image-[0-9][^\s<>]*-amd64)\b/.exec(stdout);
  if (!m?.[1]) throw new Error('apt-cache depends linux-image-amd64 names no linux-image-*-amd64 package');
  return m[1];
}

async function candidateVersion(pkg: string): Promise<string | undefined> {
  const { stdout } = await execFileP('apt-cache', ['policy', pkg]);
  const m = /Candidate:\s*(\S+)/.exec(stdout);
  return m?.[1] && m[1] !== '(none)' ? m[1] : undefined;
}

async function downloadDeb(cacheDir: string, pkg: string): Promise<string> {
  const debsDir = path.join(cacheDir, 'debs');
  const tmp = await fs.mkdtemp(path.join(debsDir, '.dl-'));
  const attempt = async (): Promise<void> => {
    // APT::Sandbox::User=root: as root, apt would otherwise warn that _apt cannot write here.
    const args = (process.getuid?.() === 0 ? ['-o', 'APT::Sandbox::User=root'] : []).concat(['-q', 'download', pkg]);
    await execFileP('apt-get', args, { cwd: tmp, maxBuffer: 16 << 20 });
  };
  try {
    try {
      await attempt();
    } catch (first) {
      // A superseded security update disappears from the mirror: refresh the lists once.
      if (process.getuid?.() !== 0) throw first;
      await execFileP('apt-get', ['update', '-qq'], { maxBuffer: 16 << 20 });
      await attempt();
    }
    const got = (await fs.readdir(tmp)).filter((n) => n.endsWith('.deb'));
    const file = got[0];
    if (!file) throw new Error('apt-get download produced no .deb');
    const dest = path.join(debsDir, file);
    await fs.rename(path.join(tmp, file), dest);
    return dest;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(
      `debian-kernel: cannot fetch Debian's kernel package ${pkg} with apt-get download: ${msg.trim()}\n` +
        'The gadget and host-boot rigs need it (the machine running the tests has no gadget or nbd of its own). ' +
        'Check network access to the Debian mirror, or set SNAPBACK_KERNEL_DEB to a local linux-image-6.1.0-*-amd64 .deb.',
      { cause: err },
    );
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

interface DebInfo {
  pkg: string;
  version: string;
}

async function debInfo(deb: string): Promise<DebInfo> {
  const { stdout } = await execFileP('dpkg-deb', ['-f', deb, 'Package', 'Version']);
  const pkg = /^Package:\s*(\S+)/m.exec(stdout)?.[1];
  const version = /^Version:\s*(\S+)/m.exec(stdout)?.[1];
  if (!pkg || !version) throw new Error(`debian-kernel: ${deb} is not a Debian package (dpkg-deb -f: ${stdout.trim()})`);
  return { pkg, version };
}

async function readEntry(
  cacheDir: string,
  name: string,
): Promise<(DebianKernel & { requestedModules: string[] }) | undefined> {
  const dir = path.join(cacheDir, name);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(readFileSync(path.join(dir, 'kernel.json'), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
  const modulesDir = path.join(dir, 'lib', 'modules', manifest.version);
  const vmlinuz = path.join(dir, 'vmlinuz');
  if (!existsSync(vmlinuz) || !existsSync(path.join(modulesDir, 'modules.dep'))) return undefined;
  return {
    vmlinuz,
    version: manifest.version,
    modulesRoot: dir,
    modulesDir,
    package: manifest.package,
    packageVersion: manifest.packageVersion,
    modules: manifest.modules,
    builtin: manifest.builtin,
    requestedModules: manifest.requested,
  };
}

/** Extracts the package into a scratch directory, keeps vmlinuz and the module closure. */
async function buildEntry(cacheDir: string, name: string, deb: string, info: DebInfo, wanted: string[]): Promise<void> {
  const scratch = await fs.mkdtemp(path.join(cacheDir, '.extract-'));
  const staging = await fs.mkdtemp(path.join(cacheDir, '.staging-'));
  try {
    await execFileP('dpkg-deb', ['-x', deb, scratch], { maxBuffer: 16 << 20 });
    const kvers = await fs.readdir(path.join(scratch, 'lib', 'modules')).catch(() => [] as string[]);
    const kver = kvers[0];
    if (kvers.length !== 1 || !kver) throw new Error(`debian-kernel: ${deb} holds ${kvers.length} module trees, expected 1`);
    const vmlinuzSrc = path.join(scratch, 'boot', `vmlinuz-${kver}`);
    if (!existsSync(vmlinuzSrc)) throw new Error(`debian-kernel: ${deb} has no boot/vmlinuz-${kver}`);

    // depmod over the whole tree gives the dependency graph (Debian ships no modules.dep).
    await execFileP('busybox', ['depmod', '-b', scratch, kver], { maxBuffer: 16 << 20 });
    const srcModDir = path.join(scratch, 'lib', 'modules', kver);
    const graph = parseModulesDep(await fs.readFile(path.join(srcModDir, 'modules.dep'), 'utf8'));
    const builtinSet = new Set(
      (await fs.readFile(path.join(srcModDir, 'modules.builtin'), 'utf8').catch(() => ''))
        .split('\n')
        .filter(Boolean)
        .map((p) => normaliseModuleName(path.basename(p))),
    );

    const builtin: string[] = [];
    const keep = new Set<string>(); // relative paths of .ko files
    const missing: string[] = [];
    for (const mod of wanted) {
      const rel = graph.byName.get(mod);
      if (rel) {
        const todo = [rel];
        while (todo.length > 0) {
          const next = todo.pop()!;
          if (keep.has(next)) continue;
          keep.add(next);
          todo.push(...(graph.deps.get(next) ?? []));
        }
      } else if (builtinSet.has(mod)) {
        builtin.push(mod);
      } else {
        missing.push(mod);
      }
    }
    if (missing.length > 0) throw new Error(`debian-kernel: ${info.pkg} ${info.version} has no module(s) ${missing.join(', ')}`);

    const dstModDir = path.join(staging, 'lib', 'modules', kver);
    await fs.mkdir(dstModDir, { recursive: true });
    for (const rel of keep) {
      await fs.mkdir(path.dirname(path.join(dstModDir, rel)), { recursive: true });
      await fs.copyFile(path.join(srcModDir, rel), path.join(dstModDir, rel));
    }
    for (const f of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
      if (existsSync(path.join(srcModDir, f))) await fs.copyFile(path.join(srcModDir, f), path.join(dstModDir, f));
    }
    await execFileP('busybox', ['depmod', '-b', staging, kver], { maxBuffer: 16 << 20 });
    await fs.copyFile(vmlinuzSrc, path.join(staging, 'vmlinuz'));
    const manifest: Manifest = {
      package: info.pkg,
      packageVersion: info.version,
      version: kver,
      modules: [...keep].map((rel) => normaliseModuleName(path.basename(rel))).sort(),
      builtin: builtin.sort(),
      requested: wanted,
    };
    await fs.writeFile(path.join(staging, 'kernel.json'), JSON.stringify(manifest, null, 2) + '\n');

    // Publish: move any older entry aside, rename the staging directory in, drop the old one.
    const dest = path.join(cacheDir, name);
    const old = path.join(cacheDir, `.old-${name}-${process.pid}-${Date.now()}`);
    if (existsSync(dest)) await fs.rename(dest, old);
    await fs.rename(staging, dest);
    await fs.rm(old, { recursive: true, force: true });
  } finally {
    await fs.rm(scratch, { recursive: true, force: true });
    await fs.rm(staging, { recursive: true, force: true });
  }
}

interface ModGraph {
  /** normalised module name → path relative to lib/modules/<kver> */
  byName: Map<string, string>;
  /** path → the paths it needs */
  deps: Map<string, string[]>;
}

export function parseModulesDep(text: string): ModGraph {
  const byName = new Map<string, string>();
  const deps = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const mod = line.slice(0, colon).trim();
    const needs = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    byName.set(normaliseModuleName(path.basename(mod)), mod);
    deps.set(mod, needs);
  }
  return { byName, deps };
}
