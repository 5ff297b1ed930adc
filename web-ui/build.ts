/**
 * Builds the web UI into dist/web-ui/public:
 * - web-ui/static (HTML pages, CSS, icon) is copied as it is;
 * - web-ui/src (TypeScript for the browser, DOM lib) is compiled by tsc with web-ui/tsconfig.json
 *   into public/assets/js as plain ES modules. It imports the API's wire types from
 *   appliance/api (type-only imports, erased from the output) through a project reference:
 *   `tsc -b` first emits that project's declarations (dist/api-types);
 * - the few wire-contract modules the browser runs (web-ui/tsconfig.wire.json: the region map's
 *   decoder, which the daemon's tests use too) are compiled into public/assets/js/api.
 * No bundler and nothing fetched from the internet: the appliance is offline.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/web-ui
const root = join(here, '..', '..');
const out = join(here, 'public');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
cpSync(join(root, 'web-ui', 'static'), out, { recursive: true });

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
for (const args of [['-b', '--force', join(root, 'web-ui', 'tsconfig.json')], ['-p', join(root, 'web-ui', 'tsconfig.wire.json')]]) {
  const r = spawnSync(process.execPath, [tsc, ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    process.exitCode = r.status ?? 1;
    throw new Error(`web-ui: tsc ${args.join(' ')} failed`);
  }
}
