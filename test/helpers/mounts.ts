/**
 * Real small filesystems for the tests that need one (a disk that fills up, blocks shared by
 * reflink, SEEK_DATA on several filesystems): a tmpfs of a given size, or a filesystem made by
 * mkfs in a sparse image file and loop-mounted. Mounting needs root; the suite runs as root (as
 * the gadget and VM tests need). Every mount is undone by `unmountAll()`, newest first.
 */
import { closeSync, ftruncateSync, mkdirSync, openSync, statfsSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

/** The bytes an unprivileged writer may still use on the filesystem that holds `path`. */
export function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

/** Fills the filesystem at `at` to its last block with one file (`at`/filler); returns its path. */
export function fillUp(at: string): string {
  const p = join(at, 'filler');
  const fd = openSync(p, 'w');
  const block = Buffer.alloc(4096, 0xaa);
  try {
    for (;;) writeSync(fd, block);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return p;
}

export class Mounts {
  private readonly mounted: string[] = [];

  /** Mounts a tmpfs of `size` (mount's syntax: '48m') at `at` (made if missing); returns `at`. */
  tmpfs(at: string, size: string): string {
    mkdirSync(at, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', at]);
    this.mounted.push(at);
    return at;
  }

  /**
   * Makes a filesystem with `mkfs` (the command and its options, the image appended) in a sparse
   * file `image` of `bytes`, and loop-mounts it at `at` (made if missing); returns `at`.
   */
  loop(image: string, at: string, mkfs: readonly string[], bytes: number): string {
    const fd = openSync(image, 'w');
    try {
      ftruncateSync(fd, bytes);
    } finally {
      closeSync(fd);
    }
    execFileSync(mkfs[0]!, [...mkfs.slice(1), image], { stdio: 'pipe' });
    mkdirSync(at, { recursive: true });
    execFileSync('mount', ['-o', 'loop', image, at], { stdio: 'pipe' });
    this.mounted.push(at);
    return at;
  }

  /** Unmounts everything this mounted, newest first. */
  unmountAll(): void {
    for (const at of this.mounted.splice(0).reverse()) execFileSync('umount', [at]);
  }
}
