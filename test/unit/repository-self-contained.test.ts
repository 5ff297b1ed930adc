/**
 * The repository stands on its own: no file points to notes kept outside it, and comments speak
 * of the product rather than of the tracker's issue numbers. Every file git tracks (or would
 * track: untracked files that are not ignored) is read; binary files are skipped.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** What must not appear, with why. (Written so that this file does not match itself.) */
const FORBIDDEN: { pattern: RegExp; what: string }[] = [
  { pattern: /\.\.\/shared\b/, what: 'a link outside the repository' },
  { pattern: /\bshared\/notes\b/, what: 'a link outside the repository' },
  { pattern: /\bDESIGN\b/, what: 'a citation of design notes outside the repository (cite docs/architecture.md)' },
  { pattern: /\bDEVELOPERS\.md\b/, what: 'a citation of a guide outside the repository' },
  { pattern: /\bissues? #?\d+/i, what: 'an issue number (say what the code is for instead)' },
];

function repositoryFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  return out.split('\0').filter((f) => f !== '');
}

describe('the repository is self-contained', () => {
  it('no file links to or cites notes outside the repository, and no comment cites an issue number', () => {
    const files = repositoryFiles();
    assert.ok(files.includes('README.md') && files.includes('appliance/cli/program.ts'), `the file list is the repository's (${files.length} files)`);
    const found: string[] = [];
    for (const file of files) {
      let bytes: Buffer;
      try {
        bytes = readFileSync(join(ROOT, file));
      } catch {
        continue; // deleted in the work tree but not yet in git
      }
      if (bytes.includes(0)) continue; // binary (screenshots)
      const lines = bytes.toString('utf8').split('\n');
      lines.forEach((line, i) => {
        for (const { pattern, what } of FORBIDDEN) if (pattern.test(line)) found.push(`${file}:${i + 1}: ${what}: ${line.trim().slice(0, 120)}`);
      });
    }
    assert.deepEqual(found, [], `\n${found.join('\n')}`);
  });
});
