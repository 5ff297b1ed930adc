/**
 * Builds the web UI into dist/web-ui/public (and the console's, console/web, into dist/console/web/public, below):
 * - web-ui/static (the login page, CSS, icon) is copied as it is;
 * - index.html is the page frame (web-ui/page-frame.html) with the front end's name and script;
 * - web-ui/src (TypeScript for the browser, DOM lib) is compiled by tsc with web-ui/tsconfig.json
 *   into public/assets/js as plain ES modules. It imports the API's wire types from
 *   appliance/api (type-only imports, erased from the output) through a project reference:
 *   `tsc -b` first emits that project's declarations (dist/api-types);
 * - the few wire-contract modules the browser runs (web-ui/tsconfig.wire.json: the region map's
 *   decoder, which the daemon's tests use too) are compiled into public/assets/js/api.
 * No bundler and nothing fetched from the internet: the appliance is offline.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url)); // dist/web-ui
const root = join(here, '..', '..');
const out = join(here, 'public');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
cpSync(join(root, 'web-ui', 'static'), out, { recursive: true });

/** Writes a front end's index.html: the one page frame with its name, script and extra stylesheets. */
function writeFrame(dir: string, o: { name: string; script: string; stylesheets?: string[] }): void {
  const esc = (s: string): string => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const html = readFileSync(join(root, 'web-ui', 'page-frame.html'), 'utf8')
    .replaceAll('{{name}}', esc(o.name))
    .replaceAll('{{script}}', esc(o.script))
    .replace('{{stylesheets}}', (o.stylesheets ?? []).map((s) => `<link rel="stylesheet" href="/assets/${esc(s)}">\n`).join(''));
  writeFileSync(join(dir, 'index.html'), html);
}
writeFrame(out, { name: 'Snapback', script: 'app.js' });

const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
for (const args of [['-b', '--force', join(root, 'web-ui', 'tsconfig.json')], ['-p', join(root, 'web-ui', 'tsconfig.wire.json')]]) {
  const r = spawnSync(process.execPath, [tsc, ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    process.exitCode = r.status ?? 1;
    throw new Error(`web-ui: tsc ${args.join(' ')} failed`);
  }
}

// The console's web UI (console/web) into dist/console/web/public: the appliance's login page,
// styles, icon, page frame and shell (shell.js, api.js, dom.js, live-stream.js, …) with the
// console's own pages beside them. Its modules import those blocks as './shell.js' (rootDirs in
// its tsconfig).
const consoleOut = join(root, 'dist', 'console', 'web', 'public');
const consoleJs = join(root, 'dist', 'console', 'web', 'js');
rmSync(consoleOut, { recursive: true, force: true });
rmSync(consoleJs, { recursive: true, force: true });
mkdirSync(join(consoleOut, 'assets', 'js'), { recursive: true });
for (const f of ['login.html', 'assets/app.css', 'assets/icon.svg']) cpSync(join(out, f), join(consoleOut, f));
cpSync(join(root, 'console', 'web', 'static'), consoleOut, { recursive: true });
writeFrame(consoleOut, { name: 'Snapback console', script: 'console-app.js', stylesheets: ['console.css'] });
const rc = spawnSync(process.execPath, [tsc, '-b', '--force', join(root, 'console', 'web', 'tsconfig.json')], { stdio: 'inherit' });
if (rc.status !== 0) {
  process.exitCode = rc.status ?? 1;
  throw new Error('console web UI: tsc failed');
}
// The appliance web UI's modules the console's import (tsc emitted them beside its own), then its own.
cpSync(join(consoleJs, 'web-ui', 'src'), join(consoleOut, 'assets', 'js'), { recursive: true });
cpSync(join(consoleJs, 'console', 'web', 'src'), join(consoleOut, 'assets', 'js'), { recursive: true });
// The login page's script, which no console module imports.
cpSync(join(out, 'assets', 'js', 'login.js'), join(consoleOut, 'assets', 'js', 'login.js'));
