/**
 * The appliance's web UI and the console's have one shell: the console serves the appliance web
 * UI's page frame, login page, styles and shell modules (login check, routing, live stream, API
 * client with CSRF) as they are, and adds only its own pages. Read from the build
 * (dist/web-ui/public, dist/console/web/public) and from the browser sources.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const APPLIANCE = join(ROOT, 'dist', 'web-ui', 'public');
const CONSOLE = join(ROOT, 'dist', 'console', 'web', 'public');

/** An index page without what names its front end: title, brand, script, its own stylesheets. */
function frameOf(html: string, name: string): string {
  return html
    .replaceAll(name, 'NAME')
    .replace(/<script type="module" src="[^"]*"><\/script>/, '<script>')
    .split('\n')
    .filter((l) => !/<link rel="stylesheet"/.test(l) || l.includes('/assets/app.css'))
    .join('\n');
}

describe('web UI shell: the appliance and the console share one', () => {
  it('both index pages are the one page frame, differing only in the name, the script and an added stylesheet', () => {
    const appliance = readFileSync(join(APPLIANCE, 'index.html'), 'utf8');
    const consoleHtml = readFileSync(join(CONSOLE, 'index.html'), 'utf8');
    assert.match(consoleHtml, /<title>Snapback console<\/title>/);
    assert.match(consoleHtml, /src="\/assets\/js\/console-app\.js"/);
    assert.equal(frameOf(consoleHtml, 'Snapback console'), frameOf(appliance, 'Snapback'));
  });

  it("the console serves the appliance web UI's shell, live stream client, API client, login page and styles unchanged", () => {
    for (const f of ['assets/js/shell.js', 'assets/js/live-stream.js', 'assets/js/api.js', 'assets/js/dom.js', 'assets/js/login.js', 'login.html', 'assets/app.css', 'assets/icon.svg']) {
      assert.ok(readFileSync(join(CONSOLE, f)).equals(readFileSync(join(APPLIANCE, f))), `${f} differs between the console and the appliance`);
    }
    for (const app of [join(APPLIANCE, 'assets/js/app.js'), join(CONSOLE, 'assets/js/console-app.js')]) {
      assert.match(readFileSync(app, 'utf8'), /import \{ startShell \} from '\.\/shell\.js'/, `${app} starts the shared shell`);
    }
  });

  it('only the shell checks the login and routes, and only the shared client opens the live stream', () => {
    const sources = ['web-ui/src', 'console/web/src'].flatMap((d) =>
      readdirSync(join(ROOT, d), { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile() && e.name.endsWith('.ts'))
        .map((e) => join(e.parentPath, e.name).slice(ROOT.length + 1)),
    );
    const where = (re: RegExp): string[] => sources.filter((f) => re.test(readFileSync(join(ROOT, f), 'utf8'))).sort();
    assert.deepEqual(where(/new EventSource\(/), ['web-ui/src/live-stream.ts']);
    assert.deepEqual(where(/'hashchange'/), ['web-ui/src/shell.ts']);
    assert.deepEqual(where(/setUnauthenticatedHandler\(/), ['web-ui/src/api.ts', 'web-ui/src/shell.ts']);
  });
});
