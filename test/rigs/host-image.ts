/**
 * The host-boot rig's model image: a small disk a PC can boot from, built at test time from
 * Debian's packages. Nothing is downloaded here but Debian's kernel, through
 * test/rigs/debian-kernel.ts; everything else comes from packages installed on the machine.
 *
 * Layout of the image (sizes in MiB are options):
 *
 *   sector 0          syslinux's MBR boot code (syslinux-common), a DOS partition table with a
 *                     fixed disk identifier
 *   partition 1       FAT16, bootable, starting at 1 MiB: syslinux (ldlinux.sys, ldlinux.c32),
 *                     syslinux.cfg, Debian's vmlinuz, our initramfs, and the known file set
 *                     under /data (text, binary, nested, empty, multi-region files)
 *   partition 2       type 0xda ("non-FS data"), the rest of the disk, filled with a
 *                     deterministic pseudo-random pattern, so that raw writes there can never
 *                     go unnoticed (no region of it is zero); or, with `dataPartition: 'fat'`,
 *                     type 0x0e holding an empty FAT16 (label SNAPDATA) for file scenarios
 *
 * The initramfs holds busybox-static, the kernel modules a PC needs to see a USB stick
 * (xhci, usb-storage, sd_mod, vfat, …) and /init. /init loads the modules, waits for the disk,
 * reads the boot's *scenario* — a shell script — from QEMU's fw_cfg (`opt/snapback/scenario`),
 * runs it with the control channel (the second serial port, /dev/ttyS1) as its stdin and
 * stdout, and powers the machine off. The scenario is thus chosen per boot without touching
 * the model, and the guest's only disk is the one Snapback serves.
 *
 * Control-channel protocol: the guest writes lines `@@ <key> <value…>`; the host may write
 * lines to the guest (see /lib/snapback.sh's `wait_host`). /init always reports `@@ init`,
 * `@@ disk` (or `@@ fail …`) and `@@ exit <status>`, each with the guest's uptime.
 */
import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { ensureDebianKernel, type DebianKernel } from './debian-kernel.js';

const execFileP = promisify(execFile);

const MiB = 1024 * 1024;
const SECTOR = 512;

/** Modules the guest loads, in this order (their dependencies come along through modprobe). */
export const GUEST_MODULES: readonly string[] = [
  // crc-t10dif and crc64-rocksoft ask the crypto API for an implementation through
  // request_module(), which needs aliases we do not generate: load the generic ones first.
  'crct10dif_generic',
  'crc64_rocksoft_generic',
  'qemu_fw_cfg',
  'xhci_pci',
  'usb_storage',
  'sd_mod',
  'vfat',
  'nls_cp437',
  'nls_ascii',
];

/** A tool the rig runs, and the Debian package that provides it. */
interface Tool {
  what: string;
  pkg: string;
  check: () => Promise<boolean>;
}

function onPath(cmd: string): () => Promise<boolean> {
  return async () => {
    for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
      if (dir && existsSync(path.join(dir, cmd))) return true;
    }
    // sbin directories are not always on a test runner's PATH
    return ['/usr/sbin', '/sbin'].some((d) => existsSync(path.join(d, cmd)));
  };
}

const SYSLINUX_MBR = '/usr/lib/syslinux/mbr/mbr.bin';
const BUSYBOX = '/bin/busybox';

const IMAGE_TOOLS: readonly Tool[] = [
  { what: 'syslinux', pkg: 'syslinux', check: onPath('syslinux') },
  { what: SYSLINUX_MBR, pkg: 'syslinux-common', check: async () => existsSync(SYSLINUX_MBR) },
  { what: 'mcopy', pkg: 'mtools', check: onPath('mcopy') },
  { what: 'mkfs.vfat', pkg: 'dosfstools', check: onPath('mkfs.vfat') },
  { what: 'sfdisk', pkg: 'fdisk', check: onPath('sfdisk') },
  { what: 'busybox (static)', pkg: 'busybox-static', check: isStaticBusybox },
  { what: 'dpkg-deb', pkg: 'dpkg', check: onPath('dpkg-deb') },
];

async function isStaticBusybox(): Promise<boolean> {
  if (!existsSync(BUSYBOX)) return false;
  // A dynamically linked busybox (package `busybox`) has a PT_INTERP program header.
  const elf = await fs.readFile(BUSYBOX);
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > elf.length) return false;
    if (elf.readUInt32LE(at) === 3 /* PT_INTERP */) return false;
  }
  return true;
}

/** Fails, naming the Debian packages to install, unless every tool the image needs is here. */
export async function requireImageTools(): Promise<void> {
  const missing: Tool[] = [];
  for (const t of IMAGE_TOOLS) if (!(await t.check())) missing.push(t);
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((t) => t.pkg))];
    throw new Error(
      `host-image: missing ${missing.map((t) => t.what).join(', ')}; install the Debian package(s): ${pkgs.join(' ')} ` +
        '(test/setup/install-test-tools.sh does)',
    );
  }
}

async function run(cmd: string, args: readonly string[], opts: { cwd?: string; input?: string } = {}): Promise<string> {
  const env = { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin`, MTOOLS_SKIP_CHECK: '1' };
  try {
    if (opts.input === undefined) {
      const { stdout } = await execFileP(cmd, [...args], { cwd: opts.cwd, env, maxBuffer: 64 << 20 });
      return stdout;
    }
    return await new Promise<string>((resolve, reject) => {
      const child = execFile(cmd, [...args], { cwd: opts.cwd, env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) reject(Object.assign(err, { stderr }));
        else resolve(stdout);
      });
      child.stdin?.end(opts.input);
    });
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`host-image: ${cmd} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// Deterministic content

/** `length` pseudo-random bytes that depend only on `seed` (AES-128-CTR over zeroes). */
export function patternBytes(seed: string, length: number): Buffer {
  const key = createHash('sha256').update('snapback-host-image:' + seed).digest();
  const cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

/** The known file set on the model's FAT (besides the boot files), path → content. */
function knownFiles(): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  files.set('README.TXT', Buffer.from('Snapback host-boot rig model image.\nEvery byte of this disk is known.\n'));
  const lines: string[] = [];
  for (let i = 0; i < 2000; i++) lines.push(`line ${i}: the quick brown fox jumps over the lazy dog`);
  files.set('data/alpha.txt', Buffer.from(lines.join('\n') + '\n'));
  files.set('data/blob.bin', patternBytes('blob', 300 * 1024 + 123));
  files.set('data/big.bin', patternBytes('big', 4 * MiB));
  files.set('data/empty.txt', Buffer.alloc(0));
  files.set('data/nested/deep/notes.txt', Buffer.from('nested notes\n'));
  files.set('data/victim.txt', Buffer.from('this file is deleted by the scenarios\n'));
  return files;
}

// ---------------------------------------------------------------------------------------------
// initramfs: a newc cpio archive, gzip-compressed

interface CpioEntry {
  name: string; // without leading '/'
  mode: number; // including the file type bits
  data: Buffer;
}

function cpioHeader(ino: number, e: CpioEntry): Buffer {
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  const nameSize = Buffer.byteLength(e.name) + 1;
  const fields = [
    ino, e.mode, 0 /* uid */, 0 /* gid */, 1 /* nlink */, 0 /* mtime */, e.data.length,
    0, 0, 0, 0 /* dev, rdev major/minor */, nameSize, 0 /* check */,
  ];
  return Buffer.from('070701' + fields.map(hex).join('') + e.name + '\0');
}

function pad4(n: number): Buffer {
  return Buffer.alloc((4 - (n % 4)) % 4);
}

export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  const push = (b: Buffer): void => {
    parts.push(b);
    off += b.length;
  };
  let ino = 1;
  for (const e of [...entries, { name: 'TRAILER!!!', mode: 0, data: Buffer.alloc(0) }]) {
    push(cpioHeader(ino++, e));
    push(pad4(off));
    push(e.data);
    push(pad4(off));
  }
  return Buffer.concat(parts);
}

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** /init: everything before and after the per-boot scenario. */
const INIT_SCRIPT = `#!/bin/busybox sh
# Snapback host-boot rig: PID 1 of the guest. The scenario comes from QEMU's fw_cfg; the guest
# never writes its disk except where the scenario says so.
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
. /lib/snapback.sh
echo "snapback-init: up at $(now)"
for m in ${GUEST_MODULES.join(' ')}; do
  if [ "$m" = usb_storage ]; then modprobe usb_storage delay_use=0; else modprobe "$m"; fi || echo "snapback-init: modprobe $m failed"
done
stty -F /dev/ttyS1 raw -echo 2>/dev/null
exec 3>/dev/ttyS1
echo "@@ init $(now)" >&3
i=0
while [ ! -b /dev/sda ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
if [ -b /dev/sda ]; then
  # the partitions' nodes follow the disk's; a disk without a partition table has none
  i=0
  while [ ! -b /dev/sda1 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
  echo "@@ disk $(now) $(cat /sys/block/sda/size)" >&3
  S=/sys/firmware/qemu_fw_cfg/by_name/opt/snapback/scenario/raw
  if [ -r $S ]; then
    cat $S > /tmp/scenario.sh
    # -e: a failing command ends the scenario with a non-zero status
    sh -e -c '. /lib/snapback.sh; . /tmp/scenario.sh' </dev/ttyS1 >&3 2>&1
    echo "@@ exit $? $(now)" >&3
  else
    echo "@@ fail no scenario in fw_cfg" >&3
  fi
else
  echo "@@ fail no /dev/sda after 20 s" >&3
  cat /proc/partitions >&3
fi
sync
echo "@@ poweroff $(now)" >&3
poweroff -f
`;

/** /lib/snapback.sh: helpers for scenario scripts (sourced by /init, inherited by scenarios). */
const GUEST_LIB = `# Helpers for scenario scripts. stdout is the control channel.
now() { cut -d' ' -f1 /proc/uptime; }
# mark KEY [VALUE...]: tell the host something
mark() { echo "@@ $* $(now)"; }
# fail MESSAGE: tell the host, stop the scenario
fail() { echo "@@ fail $*"; exit 1; }
# wait_host WORD: ask the host to send WORD, wait for it
wait_host() {
  echo "@@ wait $1"
  while read -r line; do [ "$line" = "$1" ] && return 0; done
  fail "control channel closed while waiting for $1"
}
# drop the page cache, so that reads go to the disk
dropcache() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# disk_sha [DEV]: sha256 of the whole device, read from the disk
disk_sha() { dropcache; dd if=\${1:-/dev/sda} bs=1M 2>/dev/null | sha256sum | cut -d' ' -f1; }
# range_sha OFFSET_MIB COUNT_MIB: sha256 of a range of /dev/sda
range_sha() { dd if=/dev/sda bs=1M skip=$1 count=$2 2>/dev/null | sha256sum | cut -d' ' -f1; }
# report_files DIR: one "@@ file SHA256 PATH" line per regular file, "@@ dir PATH" per directory
report_files() {
  ( cd "$1" && find . -type d | sort | while read -r d; do echo "@@ dir \${d#./}"; done
    find . -type f | sort | while read -r f; do echo "@@ file $(sha256sum "$f" | cut -d' ' -f1) \${f#./}"; done )
}
`;

async function buildInitramfs(kernel: DebianKernel): Promise<Buffer> {
  const entries: CpioEntry[] = [];
  const dirs = new Set<string>();
  const addDir = (d: string): void => {
    if (d === '.' || d === '' || dirs.has(d)) return;
    addDir(path.posix.dirname(d));
    dirs.add(d);
    entries.push({ name: d, mode: S_IFDIR | 0o755, data: Buffer.alloc(0) });
  };
  const addFile = (name: string, data: Buffer, perm = 0o644): void => {
    addDir(path.posix.dirname(name));
    entries.push({ name, mode: S_IFREG | perm, data });
  };
  for (const d of ['bin', 'sbin', 'dev', 'proc', 'sys', 'tmp', 'mnt', 'lib', 'usr/bin', 'usr/sbin']) addDir(d);
  addFile('bin/busybox', await fs.readFile(BUSYBOX), 0o755);
  entries.push({ name: 'bin/sh', mode: S_IFLNK | 0o777, data: Buffer.from('busybox') });
  addFile('init', Buffer.from(INIT_SCRIPT), 0o755);
  addFile('lib/snapback.sh', Buffer.from(GUEST_LIB));

  // The closure of GUEST_MODULES under modules.dep; modules.dep itself restricted to it.
  const modDir = kernel.modulesDir;
  const depText = await fs.readFile(path.join(modDir, 'modules.dep'), 'utf8');
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of depText.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const rel = line.slice(0, colon).trim();
    deps.set(rel, line.slice(colon + 1).trim().split(/\s+/).filter(Boolean));
    byName.set(path.basename(rel).replace(/\.ko(\.[a-z]+)?$/, '').replace(/-/g, '_'), rel);
  }
  const keep = new Set<string>();
  const missing: string[] = [];
  for (const m of GUEST_MODULES) {
    const rel = byName.get(m);
    if (!rel) {
      if (!kernel.builtin.includes(m)) missing.push(m);
      continue;
    }
    const todo = [rel];
    while (todo.length > 0) {
      const r = todo.pop()!;
      if (keep.has(r)) continue;
      keep.add(r);
      todo.push(...(deps.get(r) ?? []));
    }
  }
  if (missing.length > 0) {
    throw new Error(`host-image: Debian's kernel ${kernel.version} (cache ${modDir}) lacks module(s) ${missing.join(', ')}`);
  }
  const base = `lib/modules/${kernel.version}`;
  const depLines: string[] = [];
  for (const rel of [...keep].sort()) {
    addFile(`${base}/${rel}`, await fs.readFile(path.join(modDir, rel)));
    depLines.push(`${rel}: ${(deps.get(rel) ?? []).join(' ')}`.trimEnd());
  }
  addFile(`${base}/modules.dep`, Buffer.from(depLines.join('\n') + '\n'));
  for (const f of ['modules.builtin', 'modules.order']) {
    if (existsSync(path.join(modDir, f))) addFile(`${base}/${f}`, await fs.readFile(path.join(modDir, f)));
  }
  return gzipSync(cpioNewc(entries), { level: 6 });
}

// ---------------------------------------------------------------------------------------------
// The disk

export interface Extent {
  /** Byte offset on the disk. */
  start: number;
  /** Length in bytes. */
  size: number;
}

export interface ModelFile {
  /** Path on the FAT, relative to its root, '/'-separated, as Linux's vfat shows it. */
  path: string;
  size: number;
  sha256: string;
}

export interface HostImage {
  /** The image file. Treat it as read-only: it is the model. */
  path: string;
  size: number;
  /** sha256 of the whole image. */
  sha256: string;
  /** The FAT partition (boot files and the known file set). */
  bootPartition: Extent;
  /** The raw data partition (pseudo-random pattern). */
  dataPartition: Extent;
  /** Every regular file on the FAT (ldlinux.sys included), sorted by path. */
  files: ModelFile[];
  /** Every directory on the FAT, sorted, without the root. */
  dirs: string[];
  /** The known files the scenarios play with (a subset of `files`). */
  knownFiles: string[];
  kernel: DebianKernel;
  /** How long building took (ms), kernel fetch included. */
  buildMs: number;
}

export interface HostImageOptions {
  /** Directory to build in (a test's temp dir); the image is `<dir>/<name>.img`. */
  dir: string;
  name?: string;
  /** Size of the whole disk in MiB (≥ 48). Default 64. */
  sizeMiB?: number;
  /** Size of the FAT partition in MiB (≥ 32, FAT16). Default 40. */
  bootPartitionMiB?: number;
  /** A kernel to use instead of ensureDebianKernel()'s. */
  kernel?: DebianKernel;
  /** Extra text for syslinux's APPEND line. */
  kernelArgs?: string;
  /** Partition 2: the raw pattern (default), or an empty FAT16 the guest can keep files on. */
  dataPartition?: 'raw' | 'fat';
}

const DISK_ID = '0x534e4150'; // "SNAP"

/** The kernel the guest runs: Debian's, with the modules /init loads. */
export function guestKernel(): Promise<DebianKernel> {
  return ensureDebianKernel({ modules: [...GUEST_MODULES] });
}

/** Builds the model image. Deterministic content apart from FAT timestamps. */
export async function buildHostImage(opts: HostImageOptions): Promise<HostImage> {
  const t0 = Date.now();
  await requireImageTools();
  const sizeMiB = opts.sizeMiB ?? 64;
  const bootMiB = opts.bootPartitionMiB ?? 40;
  if (!Number.isInteger(sizeMiB) || !Number.isInteger(bootMiB) || bootMiB < 32 || sizeMiB < bootMiB + 8) {
    throw new Error(`host-image: bad sizes (disk ${sizeMiB} MiB, FAT ${bootMiB} MiB): need FAT ≥ 32 MiB and disk ≥ FAT + 8 MiB`);
  }
  const kernel = opts.kernel ?? (await guestKernel());
  const name = opts.name ?? 'model';
  const work = path.join(opts.dir, `${name}.build`);
  await fs.rm(work, { recursive: true, force: true });
  await fs.mkdir(work, { recursive: true });

  const boot: Extent = { start: MiB, size: bootMiB * MiB };
  const data: Extent = { start: boot.start + boot.size, size: sizeMiB * MiB - boot.start - boot.size };

  // 1. The FAT partition, as a file of its own.
  const part = path.join(work, 'boot.part');
  await fs.writeFile(part, Buffer.alloc(0));
  await fs.truncate(part, boot.size);
  // -h: hidden sectors = where the partition starts (syslinux's boot sector relies on it)
  await run('mkfs.vfat', ['-F', '16', '-h', String(boot.start / SECTOR), '-n', 'SNAPBACK', '-i', '5a4b0001', part]);
  const stage = path.join(work, 'stage');
  await fs.mkdir(stage);
  await fs.writeFile(path.join(stage, 'syslinux.cfg'), [
    'DEFAULT snapback',
    'PROMPT 0',
    'TIMEOUT 0',
    'LABEL snapback',
    '  KERNEL /vmlinuz',
    '  INITRD /initrd.img',
    // no_timer_check: under TCG on a loaded machine the kernel's IO-APIC timer check sometimes
    // fails and panics ("IO-APIC + timer doesn't work!"), as in kernel-vm.ts
    `  APPEND console=ttyS0 panic=-1 quiet loglevel=3 no_timer_check ${opts.kernelArgs ?? ''}`.trimEnd(),
    '',
  ].join('\n'));
  await fs.copyFile(kernel.vmlinuz, path.join(stage, 'vmlinuz'));
  await fs.writeFile(path.join(stage, 'initrd.img'), await buildInitramfs(kernel));
  const known = knownFiles();
  for (const [rel, content] of known) {
    await fs.mkdir(path.join(stage, path.dirname(rel)), { recursive: true });
    await fs.writeFile(path.join(stage, rel), content);
  }
  for (const entry of await fs.readdir(stage)) {
    await run('mcopy', ['-s', '-m', '-i', part, path.join(stage, entry), '::/']);
  }
  await run('syslinux', ['--install', part]);

  // 2. The disk: partition table, boot code, the FAT, the pattern.
  const img = path.join(opts.dir, `${name}.img`);
  await fs.rm(img, { force: true });
  const fh = await fs.open(img, 'w+');
  try {
    await fh.truncate(sizeMiB * MiB);
  } finally {
    await fh.close();
  }
  await run('sfdisk', ['--quiet', '--no-reread', '--no-tell-kernel', img], {
    input: [
      'label: dos',
      `label-id: ${DISK_ID}`,
      `start=${boot.start / SECTOR}, size=${boot.size / SECTOR}, type=6, bootable`,
      `start=${data.start / SECTOR}, size=${data.size / SECTOR}, type=${opts.dataPartition === 'fat' ? 'e' : 'da'}`,
      '',
    ].join('\n'),
  });
  const out = await fs.open(img, 'r+');
  try {
    const mbr = await fs.readFile(SYSLINUX_MBR);
    if (mbr.length > 440) throw new Error(`host-image: ${SYSLINUX_MBR} is ${mbr.length} bytes, expected ≤ 440`);
    await out.write(mbr, 0, mbr.length, 0);
    await out.write(await fs.readFile(part), 0, boot.size, boot.start);
    if (opts.dataPartition === 'fat') {
      const dataPart = path.join(work, 'data.part');
      await fs.writeFile(dataPart, Buffer.alloc(0));
      await fs.truncate(dataPart, data.size);
      await run('mkfs.vfat', ['-F', '16', '-h', String(data.start / SECTOR), '-n', 'SNAPDATA', '-i', '5a4b0002', dataPart]);
      await out.write(await fs.readFile(dataPart), 0, data.size, data.start);
    } else {
      const chunk = 16 * MiB;
      const pattern = patternBytes('data-partition', data.size);
      for (let off = 0; off < data.size; off += chunk) {
        const n = Math.min(chunk, data.size - off);
        await out.write(pattern, off, n, data.start + off);
      }
    }
    await out.sync();
  } finally {
    await out.close();
  }
  await fs.chmod(img, 0o444);

  // 3. What is on it, read back from the image (not from what we meant to put there).
  const listing = await listFat(img, boot.start, work);
  const bytes = await fs.readFile(img);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  await fs.rm(work, { recursive: true, force: true });
  return {
    path: img,
    size: bytes.length,
    sha256,
    bootPartition: boot,
    dataPartition: data,
    files: listing.files,
    dirs: listing.dirs,
    knownFiles: [...known.keys()].sort(),
    kernel,
    buildMs: Date.now() - t0,
  };
}

/** Copies every file out of the FAT inside `img` with mtools and hashes it. */
async function listFat(img: string, offset: number, work: string): Promise<{ files: ModelFile[]; dirs: string[] }> {
  const out = path.join(work, 'readback');
  await fs.mkdir(out);
  await run('mcopy', ['-s', '-n', '-i', `${img}@@${offset}`, '::/*', out + '/']);
  const files: ModelFile[] = [];
  const dirs: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const ent of await fs.readdir(path.join(out, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${ent.name}` : ent.name;
      if (ent.isDirectory()) {
        dirs.push(r);
        await walk(r);
      } else {
        const buf = await fs.readFile(path.join(out, r));
        files.push({ path: r, size: buf.length, sha256: createHash('sha256').update(buf).digest('hex') });
      }
    }
  };
  await walk('');
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  dirs.sort();
  return { files, dirs };
}

/** sha256 of a byte range of a file (e.g. of the model, to compare with what a guest read). */
export async function fileRangeSha256(file: string, start: number, length: number): Promise<string> {
  const h = createHash('sha256');
  const fh = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(4 * MiB);
    for (let off = 0; off < length; ) {
      const n = Math.min(buf.length, length - off);
      const { bytesRead } = await fh.read(buf, 0, n, start + off);
      if (bytesRead !== n) throw new Error(`host-image: short read of ${file} at ${start + off}`);
      h.update(buf.subarray(0, n));
      off += n;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}
