/**
 * Builds the web UI into dist/web-ui/public (and the console's, console/web, into dist/console/web/public, below):
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

// The console's web UI (console/web) into dist/console/web/public: the appliance's login page,
// styles, icon and building blocks (api.js, dom.js, login.js) with the console's own page and
// modules beside them. Its modules import those blocks as './api.js' (rootDirs in its tsconfig).
const consoleOut = join(root, 'dist', 'console', 'web', 'public');
const consoleJs = join(root, 'dist', 'console', 'web', 'js');
rmSync(consoleOut, { recursive: true, force: true });
rmSync(consoleJs, { recursive: true, force: true });
mkdirSync(join(consoleOut, 'assets', 'js'), { recursive: true });
for (const f of ['login.html', 'assets/app.css', 'assets/icon.svg']) cpSync(join(out, f), join(consoleOut, f));
cpSync(join(root, 'console', 'web', 'static'), consoleOut, { recursive: true });
const rc = spawnSync(process.execPath, [tsc, '-b', '--force', join(root, 'console', 'web', 'tsconfig.json')], { stdio: 'inherit' });
if (rc.status !== 0) {
  process.exitCode = rc.status ?? 1;
  throw new Error('console web UI: tsc failed');
}
// The shared blocks as the appliance's build made them (the same files at run time), then the console's own.
for (const f of ['api.js', 'dom.js', 'login.js']) cpSync(join(out, 'assets', 'js', f), join(consoleOut, 'assets', 'js', f));
cpSync(join(consoleJs, 'console', 'web', 'src'), join(consoleOut, 'assets', 'js'), { recursive: true });
