/**
 * A newcomer can read docs/architecture.md and find every part where it says: every repository
 * path and source file it names exists, every test it gives as an example exists, every folder
 * of the appliance, the console and the web UI (at every depth) is named in it, and every link to a
 * document (with its section, where one is given) from the docs, the README or a source comment
 * leads somewhere.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const DOC = 'docs/architecture.md';
const TOP = ['appliance', 'console', 'test', 'web-ui', 'bench', 'docs', 'pi-gen', 'gadget-config'];

/** The folders whose every subfolder the document names. */
const DESCRIBED = ['appliance', 'console', 'web-ui'];

const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8');

/** Every file git tracks (or would: untracked and not ignored) that is still in the work tree. */
function repositoryFiles(): string[] {
  return execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\0')
    .filter((f) => f !== '' && existsSync(join(ROOT, f)));
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens. */
function anchorsOf(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6}\s+(.+)$/gm)) out.add(m[1]!.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-'));
  return out;
}

/** A path, or a glob with `*` in its last part, that names something in the repository. */
function existsInRepo(path: string): boolean {
  const clean = path.replace(/\/$/, '');
  if (!clean.includes('*')) return existsSync(join(ROOT, clean));
  const dir = dirname(clean);
  const re = new RegExp(`^${clean.slice(dir.length + 1).replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
  return existsSync(join(ROOT, dir)) && readdirSync(join(ROOT, dir)).some((f) => re.test(f));
}

describe('the architecture document', () => {
  const doc = read(DOC);

  it('every repository path it names exists', () => {
    const named = [...doc.matchAll(/`([^`\s]+)`/g)].map((m) => m[1]!).filter((p) => TOP.some((t) => p.startsWith(`${t}/`)));
    assert.ok(named.length > 30, `it names paths (${named.length})`);
    assert.deepEqual(named.filter((p) => !existsInRepo(p)), []);
  });

  it('every source file it names by its name alone (`engine.ts`, `storage/engine.ts`) is a file of the repository', () => {
    const files = repositoryFiles();
    const named = [...doc.matchAll(/`([^`\s]+\.ts)`/g)].map((m) => m[1]!).filter((p) => !TOP.some((t) => p.startsWith(`${t}/`)));
    assert.ok(named.length > 10, `it names source files (${named.length})`);
    assert.deepEqual(named.filter((n) => !files.some((f) => f === n || f.endsWith(`/${n}`))), []);
  });

  it('every test it gives as an example is a test of the folder it names', () => {
    const rows = [...doc.matchAll(/^\| `(test\/[\w-]+\/)` \|[^|]*\|([^|]*)\|$/gm)];
    assert.ok(rows.length >= 3, `the test table has rows (${rows.length})`);
    const missing: string[] = [];
    for (const [, folder, examples] of rows) for (const m of examples!.matchAll(/`([\w-]+)`/g)) if (!existsSync(join(ROOT, `${folder!}${m[1]!}.test.ts`))) missing.push(`${folder!}${m[1]!}.test.ts`);
    assert.deepEqual(missing, []);
  });

  it('names every folder of the appliance, the console and the web UI (at every depth), and of the repository', () => {
    const dirs = new Set<string>();
    for (const f of repositoryFiles()) for (let d = dirname(f); d !== '.'; d = dirname(d)) if (DESCRIBED.some((t) => d.startsWith(`${t}/`))) dirs.add(`${d}/`);
    assert.ok(dirs.has('appliance/storage/') && dirs.has('console/server/') && dirs.has('web-ui/src/'), `the folder walk finds the code: ${[...dirs].join(' ')}`);
    const folders = [...[...dirs].sort(), ...TOP.map((t) => `${t}/`)];
    assert.deepEqual(folders.filter((f) => !doc.includes(`\`${f}`)), []);
  });

  it('every link to a document, and every section cited from a document or a source comment, exists', () => {
    const files = repositoryFiles().filter((f) => /\.(md|ts|sh|json)$/.test(f));
    const broken: string[] = [];
    for (const file of files) {
      const text = read(file);
      const targets: string[] = [];
      // Markdown links to local documents, relative to the linking file.
      if (file.endsWith('.md')) for (const m of text.matchAll(/\]\(([^)\s]+\.md)(#[^)\s]*)?\)/g)) if (!/^[a-z]+:/.test(m[1]!)) targets.push(normalize(join(dirname(file), m[1]!)) + (m[2] ?? ''));
      // Citations in code and prose: a file in docs/ with an optional #section, from the repository root.
      for (const m of text.matchAll(/\b(docs\/[\w-]+\.md)(#[\w-]+)?/g)) targets.push(m[1]! + (m[2] ?? ''));
      for (const t of targets) {
        const [path, anchor] = t.split('#') as [string, string | undefined];
        if (!existsSync(join(ROOT, path))) broken.push(`${file}: ${t} (no such file)`);
        else if (anchor && !anchorsOf(read(path)).has(anchor)) broken.push(`${file}: ${t} (no such section)`);
      }
    }
    assert.deepEqual([...new Set(broken)], []);
  });
});
