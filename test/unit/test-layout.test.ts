/**
 * The test tree's layout, so a newcomer finds things where they belong: test folders hold only
 * tests; fakes, harnesses and helpers live in test/helpers (rigs in test/rigs); there is one
 * way to wait for a condition (test/helpers/wait.ts) and one forwarding test device
 * (test/helpers/forwarding-device.ts) rather than copies in test files; no file imports a test
 * file (that would register its tests again in the importing process).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const TEST = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(TEST, join(e.parentPath, e.name)));
}

describe('test layout', () => {
  it('test/unit, test/integration and test/e2e hold only *.test.ts files: fakes and harnesses live in test/helpers', () => {
    const strays = ['unit', 'integration', 'e2e'].flatMap((d) => tsFiles(join(TEST, d)).map((f) => join(d, f))).filter((f) => !f.endsWith('.test.ts'));
    assert.deepEqual(strays, []);
  });

  it('one waitFor (test/helpers/wait.ts): no other file defines its own', () => {
    const copies = tsFiles(TEST).filter((f) => f !== join('helpers', 'wait.ts') && /\b(function\s+waitFor\b|(const|let)\s+waitFor\s*=)/.test(readFileSync(join(TEST, f), 'utf8')));
    assert.deepEqual(copies, []);
  });

  it('one forwarding test device (test/helpers/forwarding-device.ts): no test file implements BlockDevice itself', () => {
    const own = tsFiles(TEST).filter((f) => f.endsWith('.test.ts') && f !== join('unit', 'test-layout.test.ts') && /implements\s+BlockDevice\b/.test(readFileSync(join(TEST, f), 'utf8')));
    assert.deepEqual(own, []);
  });

  it('no file imports a *.test file: what tests share lives in test/helpers, so importing it registers no tests twice', () => {
    const importers = tsFiles(TEST).filter((f) => /\bfrom\s+['"][^'"]*\.test(\.js)?['"]|\bimport\(\s*['"][^'"]*\.test(\.js)?['"]/.test(readFileSync(join(TEST, f), 'utf8')));
    assert.deepEqual(importers, []);
  });
});
