/**
 * The benchmark's result files. Each part of the benchmark (storage, nbd, …) writes its own
 * results; `latest.md` and `latest.json` are assembled from every part's latest results, so a
 * run of one part refreshes its section and keeps the others' last figures:
 *
 *   bench/results/parts/<part>.json   the part's latest results (any JSON; `startedAt` if it has one)
 *   bench/results/parts/<part>.md     the part's Markdown section (starts with a "### " heading)
 *   bench/results/<ISO date>-<part>.json   every run of a part, kept
 *   bench/results/<ISO date>-<part>-partial.json   a run of some of a part's workloads (`--only`):
 *                                     kept, but it replaces neither the part's results nor latest.*
 *   bench/results/latest.md           "## Snapback benchmark" + every part's section, in PART_ORDER
 *   bench/results/latest.json         { assembledAt, parts: { <part>: <its JSON>, … } }
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
export const RESULTS_DIR = join(resolve(here, '..', '..'), 'bench', 'results');

/** Sections of latest.md come in this order; parts not named here follow, alphabetically. */
export const PART_ORDER = ['storage', 'model', 'models', 'memory', 'nbd', 'fleet'];

/** Writes one part's results and re-assembles latest.md/latest.json. Returns latest.md's text. */
export function writePartResults(part: string, json: unknown, markdown: string, dir = RESULTS_DIR): string {
  const text = writeRunRecord(part, json, dir);
  const partsDir = join(dir, 'parts');
  mkdirSync(partsDir, { recursive: true });
  writeFileSync(join(partsDir, `${part}.json`), text);
  writeFileSync(join(partsDir, `${part}.md`), markdown.endsWith('\n') ? markdown : `${markdown}\n`);
  return assembleLatest(dir);
}

/**
 * Keeps the record of a partial run of a part (some of its workloads): the dated file only, so
 * that the part's last full figures stay in latest.md. Returns the Markdown to print, which says so.
 */
export function writePartialRun(part: string, json: unknown, markdown: string, dir = RESULTS_DIR): string {
  writeRunRecord(`${part}-partial`, json, dir);
  return `${markdown.trimEnd()}\n\n(a partial run: kept in ${dir} as a dated -partial file; parts/${part} and latest.md keep the last full run)\n`;
}

/** Writes the dated record of one run and returns its text. */
function writeRunRecord(name: string, json: unknown, dir: string): string {
  if (!/^[a-z0-9-]+$/.test(name)) throw new Error(`bad part name "${name}"`);
  mkdirSync(dir, { recursive: true });
  const text = `${JSON.stringify(json, null, 2)}\n`;
  const stamp = new Date().toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z');
  writeFileSync(join(dir, `${stamp}-${name}.json`), text);
  return text;
}

/** Assembles latest.md and latest.json from every part's latest results. */
export function assembleLatest(dir = RESULTS_DIR): string {
  const partsDir = join(dir, 'parts');
  const names = existsSync(partsDir)
    ? [...new Set(readdirSync(partsDir).filter((f) => f.endsWith('.json') || f.endsWith('.md')).map((f) => f.replace(/\.(json|md)$/, '')))]
    : [];
  names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  const parts: Record<string, unknown> = {};
  const sections: string[] = [];
  for (const name of names) {
    const jsonPath = join(partsDir, `${name}.json`);
    const mdPath = join(partsDir, `${name}.md`);
    if (existsSync(jsonPath)) parts[name] = JSON.parse(readFileSync(jsonPath, 'utf8')) as unknown;
    if (existsSync(mdPath)) sections.push(readFileSync(mdPath, 'utf8').trimEnd());
  }
  const assembledAt = new Date().toISOString();
  const lines = [`## Snapback benchmark (assembled ${assembledAt} from the latest run of each part: ${names.join(', ') || 'none'})`, ''];
  for (const s of sections) lines.push(s, '');
  const markdown = lines.join('\n');
  writeFileSync(join(dir, 'latest.md'), markdown);
  writeFileSync(join(dir, 'latest.json'), `${JSON.stringify({ assembledAt, parts }, null, 2)}\n`);
  return markdown;
}

function rank(name: string): number {
  const i = PART_ORDER.indexOf(name);
  return i < 0 ? PART_ORDER.length : i;
}
