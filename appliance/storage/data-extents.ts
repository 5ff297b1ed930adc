/**
 * Where a sparse image file holds data, region by region, so that hashing it reads its data and
 * skips its holes (a 64 GiB image holding a few GiB hashes in the time of those few GiB).
 *
 * Node has no lseek(SEEK_DATA / SEEK_HOLE). Perl does (sysseek), and perl-base is an essential
 * package of Debian and Raspberry Pi OS, so it is on every appliance and build machine without
 * a compiler or a native module: a few lines of it walk the file's data extents and print them.
 * SEEK_DATA/SEEK_HOLE answer on ext4, xfs, btrfs and tmpfs; a file system that cannot tell
 * holes apart answers with the whole file as data (the kernel's generic answer), and anything
 * that goes wrong — no perl, an error, an answer that does not add up — gives null, and the
 * caller reads everything. A hole reads as zeros by definition, so skipping it never changes a
 * digest.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { childLogger } from '../logger.js';

const log = childLogger('data-extents');

/**
 * Prints "DATA HOLE" per data extent of the file ARGV[0] of ARGV[1] bytes. lseek's whence 3 is
 * SEEK_DATA and 4 SEEK_HOLE; errno 6 (ENXIO) from SEEK_DATA means "no data after this offset".
 * "+ 0" turns perl's "0 but true" into 0. No modules: perl-base alone runs it.
 */
const WALK = String.raw`
my ($f, $end) = @ARGV;
open(my $fh, '<', $f) or die "open: $!\n";
my $p = 0;
while ($p < $end) {
  my $d = sysseek($fh, $p, 3);
  if (!defined $d) { last if ($! + 0) == 6; die "SEEK_DATA: $!\n"; }
  $d += 0;
  last if $d >= $end;
  my $h = sysseek($fh, $d, 4);
  die "SEEK_HOLE: $!\n" unless defined $h;
  $h += 0;
  die "no progress at $d\n" unless $h > $d;
  print "$d $h\n";
  $p = $h;
}
`;

/** Past this many runs the file is so fragmented that skipping holes saves little: read it all. */
const MAX_RUNS = 1 << 20;

/**
 * Runs of regions that hold data, as [first, end) region pairs in order: region r is in a hole
 * (all zeros) unless some run covers it. Null when the holes cannot be found (read everything).
 */
export async function dataRegionRuns(path: string, size: number, regionSize: number): Promise<Array<[number, number]> | null> {
  if (size === 0) return [];
  const count = Math.ceil(size / regionSize);
  const runs: Array<[number, number]> = [];
  let bad: string | null = null;
  let lastEnd = 0;
  const child = spawn('perl', ['-e', WALK, path, String(size)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    if (stderr.length < 1000) stderr += s;
  });
  const exited = new Promise<{ code: number | null; error: Error | null }>((resolve) => {
    child.on('error', (error) => resolve({ code: null, error }));
    child.on('close', (code) => resolve({ code, error: null }));
  });
  for await (const line of createInterface({ input: child.stdout, crlfDelay: Infinity })) {
    if (bad !== null) continue;
    const m = /^(\d+) (\d+)$/.exec(line);
    const d = m ? Number(m[1]) : NaN;
    const h = m ? Math.min(size, Number(m[2])) : NaN;
    if (!Number.isSafeInteger(d) || !Number.isSafeInteger(h) || d < lastEnd || h <= d) {
      bad = `unexpected extent "${line}"`;
      continue;
    }
    lastEnd = h;
    const first = Math.floor(d / regionSize);
    const end = Math.min(count, Math.ceil(h / regionSize));
    const last = runs[runs.length - 1];
    if (last && first <= last[1]) last[1] = Math.max(last[1], end);
    else if (runs.length >= MAX_RUNS) bad = `more than ${MAX_RUNS} runs of data`;
    else runs.push([first, end]);
  }
  const { code, error } = await exited;
  if (error || code !== 0 || bad !== null) {
    log.info({ path, why: error?.message ?? bad ?? (stderr.trim() || `perl exited with ${code}`) }, 'cannot find the holes of the image: reading all of it');
    return null;
  }
  return runs;
}
