/**
 * An appliance's install leaves out the console's SQLite module: better-sqlite3 is an optional
 * dependency (a native module compiled by node-gyp), and the Raspberry Pi image installs with
 * `npm ci --omit=dev --omit=optional`. The built CLI runs here from an install without it: a
 * node_modules that holds every other package (links to this checkout's), with the build and
 * package.json linked in beside it and Node told to keep the links' paths, so that a package
 * resolves only from that install. The daemon serves a disk to a real NBD client, and a console
 * command says what to install instead of failing on a missing module.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exited, initState, nbdUri, tool } from '../helpers/cli.js';
import { patternBytes } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SIZE = 4 << 20;

/** The pi-gen stage's install command, as the image runs it. */
function imageInstallCommand(): string {
  const script = readFileSync(join(ROOT, 'pi-gen', 'stage-snapback', '02-snapback', '01-run-chroot.sh'), 'utf8');
  const line = script.split('\n').find((l) => /^npm ci\b/.test(l.trim()));
  assert.ok(line, '01-run-chroot.sh runs npm ci');
  return line.trim();
}

describe('an appliance installed without the console’s optional SQLite module', function () {
  this.timeout(120_000);
  let dir: string;
  let install: string;

  /** Runs the CLI of the install without better-sqlite3. */
  const args = (cli: string[]): string[] => ['--preserve-symlinks', '--preserve-symlinks-main', join(install, 'dist', 'appliance', 'cli', 'main.js'), ...cli];
  const run = (cli: string[]) => {
    const r = spawnSync(process.execPath, args(cli), { encoding: 'utf8', env: { ...process.env, NODE_ENV: 'test' }, timeout: 60_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-no-sqlite-'));
    install = join(dir, 'install');
    mkdirSync(join(install, 'node_modules'), { recursive: true });
    for (const f of ['dist', 'package.json', 'gadget-config']) symlinkSync(join(ROOT, f), join(install, f));
    const real = join(ROOT, 'node_modules');
    for (const name of readdirSync(real)) {
      if (name === 'better-sqlite3' || name === '.bin' || name.startsWith('.')) continue;
      if (name.startsWith('@')) {
        mkdirSync(join(install, 'node_modules', name));
        for (const sub of readdirSync(join(real, name))) symlinkSync(join(real, name, sub), join(install, 'node_modules', name, sub));
      } else symlinkSync(join(real, name), join(install, 'node_modules', name));
    }
    assert.ok(existsSync(join(real, 'better-sqlite3')), 'this checkout has better-sqlite3 (npm ci installs optional dependencies)');
    assert.ok(!existsSync(join(install, 'node_modules', 'better-sqlite3')));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the Raspberry Pi image installs without optional dependencies', () => {
    assert.match(imageInstallCommand(), /--omit=optional\b/);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; optionalDependencies?: Record<string, string> };
    assert.equal(pkg.dependencies['better-sqlite3'], undefined, 'not a dependency every install compiles');
    assert.ok(pkg.optionalDependencies?.['better-sqlite3'], 'an optional dependency');
  });

  it('the appliance runs: the CLI starts, and the daemon serves the disk to a real NBD client', async () => {
    assert.equal(run(['--version']).code, 0, run(['--version']).stderr);
    const { state } = initState(dir, patternBytes(SIZE, 3));
    const child = spawn(process.execPath, args(['serve', '--state-dir', state, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off']), {
      env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the daemon to serve', () => {
        if (child.exitCode !== null) throw new Error(`snapback serve exited ${child.exitCode}: ${out}`);
        return /serving NBD/.test(out) && existsSync(join(state, 'control.sock'));
      }, 30_000, 50);
      const r = tool('nbdinfo', ['--size', nbdUri(state)]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(Number(r.stdout.trim()), SIZE);
    } finally {
      child.kill('SIGTERM');
      await exited(child);
    }
  });

  it('a console command says what to install', () => {
    const r = run(['console', 'token', 'create', '--data-dir', join(dir, 'console'), '--name', 'ci']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the console needs the optional package better-sqlite3 .*npm install better-sqlite3/);
    assert.doesNotMatch(r.stderr, /ERR_MODULE_NOT_FOUND|Cannot find package/);
  });
});
