/**
 * A newcomer can read docs/architecture.md and find every part where it says: every repository
 * path it names exists, every folder of the appliance is named in it, and every link to a
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

const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8');

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

  it('names every folder of the appliance and of the repository', () => {
    const folders = [...readdirSync(join(ROOT, 'appliance'), { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `appliance/${e.name}/`), ...TOP.map((t) => `${t}/`)];
    assert.deepEqual(folders.filter((f) => !doc.includes(f)), []);
  });

  it('every link to a document, and every section cited from a document or a source comment, exists', () => {
    const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' })
      .split('\0')
      .filter((f) => /\.(md|ts|sh|json)$/.test(f) && existsSync(join(ROOT, f)));
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
