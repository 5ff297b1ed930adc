/**
 * `npm run bench` (node dist/bench/run.js): the storage benchmark (bench/storage.ts) on tmpfs,
 * a smaller run of it on the disk-backed filesystem of os.tmpdir() for the cost of fsync, then
 * the NBD benchmark (bench/nbd-peers.ts) if it is there, serving the protected disk.
 *
 * Writes bench/results/<ISO date>.json and bench/results/latest.json, and a Markdown summary to
 * stdout and bench/results/latest.md. Progress goes to stderr.
 *
 *   node dist/bench/run.js [--no-ext4] [--no-nbd] [--no-study] [--quick] [--dir DIR]
 *
 * Why tmpfs for the main figures: on this kernel, buffered overwrites of an ext4 file vary by
 * up to 10x from one run to the next (writeback and journal timing), which swamps the
 * differences being measured; tmpfs is steady, so the ratios are the engine's own overhead.
 * The ext4 run is reported for what tmpfs hides: the cost of the write log's fdatasync.
 */
import { existsSync, mkdirSync, writeFileSync, statfsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tmpdir } from 'node:os';
import { parseArgs } from 'node:util';

// Library code logs through pino to stdout; stdout here is the Markdown summary.
process.env.LOG_LEVEL ??= 'warn';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const repoRoot = resolve(here, '..', '..');
const resultsDir = join(repoRoot, 'bench', 'results');

function isTmpfs(path: string): boolean {
  try {
    return statfsSync(path).type === 0x01021994;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'no-ext4': { type: 'boolean', default: false },
      'no-nbd': { type: 'boolean', default: false },
      'no-study': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      dir: { type: 'string' },
    },
  });
  const storage = await import('./storage.js');
  const started = new Date();
  const stamp = started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  const tag = `snapback-bench-${process.pid}`;
  const quick = values.quick === true;

  const mainDir = values.dir ? resolve(values.dir, tag) : isTmpfs('/dev/shm') ? join('/dev/shm', tag) : join(tmpdir(), tag);
  const tmpfs = await storage.runStorageBench({
    dir: mainDir,
    label: isTmpfs(dirname(mainDir)) ? 'tmpfs (/dev/shm)' : dirname(mainDir),
    ...(quick ? { diskBytes: 256 << 20, trials: 3, sessionEndCounts: [1e3, 1e5], studyRegionSizes: [] } : {}),
    ...(values['no-study'] ? { studyRegionSizes: [] } : {}),
  });

  let disk: Awaited<ReturnType<typeof storage.runStorageBench>> | null = null;
  const diskDir = join(tmpdir(), tag);
  if (!values['no-ext4'] && !isTmpfs(tmpdir())) {
    try {
      disk = await storage.runStorageBench({
        dir: diskDir,
        label: `${tmpdir()} (fsync cost)`,
        diskBytes: 256 << 20,
        studyRegionSizes: [],
        trials: 3,
        sessionEndCounts: quick ? [1e3] : [1e3, 1e5, 1e6],
      });
    } catch (err) {
      process.stderr.write(`disk-backed run failed: ${(err as Error).stack ?? String(err)}\n`);
    }
  }

  // hashing per core and the manifest of a 1 TiB model (bench/model.ts); its restore rows are
  // the storage bench's above
  let model: Awaited<ReturnType<typeof import('./model.js').runModelBench>> | null = null;
  try {
    const mb = await import('./model.js');
    model = await mb.runModelBench({ dir: dirname(mainDir), ...(quick ? { hashBytes: 128 << 20, regions: 1 << 18 } : {}) });
  } catch (err) {
    process.stderr.write(`model bench failed: ${(err as Error).stack ?? String(err)}\n`);
  }

  // The NBD benchmark is another module's (bench/nbd-peers.ts); it runs if it is there. Our
  // server runs in a child process, so the protected disk goes by module: storage.js exports
  // makeDevice(imagePath).
  let nbd: unknown = null;
  let nbdMarkdown = '';
  const peers = join(here, 'nbd-peers.js');
  if (!values['no-nbd'] && existsSync(peers)) {
    const mod = (await import(pathToFileURL(peers).href)) as { runNbdBench?: unknown };
    if (typeof mod.runNbdBench === 'function') {
      const runNbdBench = mod.runNbdBench as (opts: Record<string, unknown>) => Promise<{ markdown?: string }>;
      process.stderr.write('nbd bench (bench/nbd-peers.ts), our server serving the protected disk\n');
      try {
        const r = await runNbdBench({
          makeDevice: storage.makeDevice,
          deviceModule: join(here, 'storage.js'),
          ...(quick ? { rounds: 1, imageBytes: 256 << 20, fioSeconds: 2 } : {}),
        });
        nbd = r;
        nbdMarkdown = typeof r.markdown === 'string' ? r.markdown : '';
      } catch (err) {
        process.stderr.write(`nbd bench failed: ${(err as Error).stack ?? String(err)}\n`);
        nbd = { error: (err as Error).message };
      }
    }
  }

  // nbd carries its own Markdown; the JSON keeps it once, in latest.md
  const nbdJson = nbd && typeof nbd === 'object' && 'markdown' in nbd ? { ...(nbd as Record<string, unknown>), markdown: undefined } : nbd;
  const result = { startedAt: started.toISOString(), durationS: Math.round((Date.now() - started.getTime()) / 100) / 10, storage: { tmpfs, disk }, model, nbd: nbdJson };
  const lines: string[] = [`## Snapback benchmark, ${started.toISOString()}`, '', `Node ${process.version}, ${tmpfs.env.cpus} × ${tmpfs.env.cpu}, kernel ${tmpfs.env.kernel}; ${result.durationS} s in all.`, ''];
  lines.push(storage.storageMarkdown(tmpfs));
  if (disk) lines.push(storage.storageMarkdown(disk));
  if (model) lines.push((await import('./model.js')).modelMarkdown(model));
  if (nbdMarkdown) lines.push(nbdMarkdown);
  const markdown = lines.join('\n');

  mkdirSync(resultsDir, { recursive: true });
  const json = `${JSON.stringify(result, null, 2)}\n`;
  writeFileSync(join(resultsDir, `${stamp}.json`), json);
  writeFileSync(join(resultsDir, 'latest.json'), json);
  writeFileSync(join(resultsDir, 'latest.md'), markdown);
  process.stdout.write(markdown);
  const missed = [tmpfs, ...(disk ? [disk] : [])].flatMap((r) => r.comparisons.filter((c) => c.pass === false).map((c) => `${r.label}: ${c.id}`));
  if (missed.length) process.stderr.write(`targets missed: ${missed.join(', ')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
