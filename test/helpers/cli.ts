/** Runs the built `snapback` CLI and the daemon as child processes, for integration tests. */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { stateSnapshot } from './state-snapshot.js';
import { waitFor } from './wait.js';

export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'appliance', 'cli', 'main.js');

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function snapback(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NODE_ENV: 'test', ...env }, timeout: 120_000, input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Runs `snapback ARGS --state-dir DIR`, which must succeed; returns what it printed. */
export function snapbackOk(stateDir: string, args: string[]): string {
  const r = snapback([...args, '--state-dir', stateDir]);
  if (r.code !== 0) throw new Error(`snapback ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/**
 * Runs `snapback ARGS --state-dir DIR`, which must fail with exit `code` (2: bad input) and one
 * clear line on stderr matching `msg`, and change nothing in the state directory (stateSnapshot).
 */
export function snapbackRefused(stateDir: string, args: string[], msg: RegExp, code = 1): void {
  const before = stateSnapshot(stateDir);
  const r = snapback([...args, '--state-dir', stateDir]);
  assert.equal(r.code, code, `${args.join(' ')} → ${r.code}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, msg);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  assert.equal(stateSnapshot(stateDir), before, `${args.join(' ')} changed nothing`);
}

/**
 * What most daemon and CLI tests start from, made with the CLI as an administrator would: a model
 * image of `bytes` in `dir` with its manifest (`snapback model manifest`, named `name` when given)
 * and a state directory `dir`/state over the working disk `dir`/disk.img (`snapback init`, with
 * `--region-size` when given); with `restored`, the disk then restored (`snapback restore`:
 * nothing pending). Returns the paths.
 */
export function initState(dir: string, bytes: Buffer, opts: { name?: string; regionSize?: string; restored?: boolean } = {}): { state: string; model: string; disk: string } {
  const model = join(dir, 'model.img');
  const state = join(dir, 'state');
  const disk = join(dir, 'disk.img');
  writeFileSync(model, bytes);
  const manifest = snapback(['model', 'manifest', model, ...(opts.name ? ['--name', opts.name] : [])]);
  if (manifest.code !== 0) throw new Error(`snapback model manifest: ${manifest.stderr}`);
  const init = snapback(['init', '--state-dir', state, '--model', model, '--disk', disk, ...(opts.regionSize ? ['--region-size', opts.regionSize] : [])]);
  if (init.code !== 0) throw new Error(`snapback init: ${init.stderr}`);
  if (opts.restored) {
    const restore = snapback(['restore', '--state-dir', state]);
    if (restore.code !== 0) throw new Error(`snapback restore: ${restore.stderr}`);
  }
  return { state, model, disk };
}

/**
 * Runs the CLI on a real pseudo-terminal (util-linux `script`), answering each prompt as it
 * appears, as a person typing would. Resolves with the exit status and everything the terminal
 * showed (so a test can prove what was not echoed).
 */
export function snapbackOnTerminal(args: string[], answers: { prompt: RegExp; reply: string }[]): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qefc', command, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NODE_ENV: 'test' } });
  let screen = '';
  let next = 0;
  child.stdout!.on('data', (d: Buffer) => {
    screen += d.toString();
    const a = answers[next];
    if (a && a.prompt.test(screen)) {
      next++;
      child.stdin!.write(`${a.reply}\r`);
    }
  });
  child.stderr!.on('data', (d: Buffer) => (screen += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', (err) => reject(new Error(`script (util-linux) could not run: ${err.message}`)));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
  });
}

export function tool(cmd: string, args: string[], input?: Buffer): Run {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, input });
  if (r.error) throw new Error(`${cmd} could not run (${r.error.message}); the test setup installs it`);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `snapback serve` and resolves once its control socket answers. */
export async function startServe(stateDir: string, extra: string[] = []): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', stateDir, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off', ...extra], {
    env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  outputOf.set(child, () => out);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`snapback serve exited ${child.exitCode}: ${out}`);
    if (/serving NBD/.test(out) && existsSync(join(stateDir, 'control.sock'))) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`snapback serve did not start: ${out}`);
}

const outputOf = new WeakMap<ChildProcess, () => string>();

/** Everything a daemon started with startServe has printed so far (for failure messages). */
export function serveOutput(child: ChildProcess): string {
  return outputOf.get(child)?.() ?? '';
}

/** The web UI's address (http://127.0.0.1:PORT) of a daemon started with startServe, once it listens. */
export function webUiUrl(child: ChildProcess): Promise<string> {
  const out = outputOf.get(child);
  if (!out) throw new Error('not a daemon started with startServe');
  return waitFor("the daemon's web UI to listen", () => {
    if (child.exitCode !== null) throw new Error(`snapback serve exited ${child.exitCode}`);
    return /web UI and API on (http:\/\/127\.0\.0\.1:\d+)\//.exec(out())?.[1];
  }, 30_000);
}

export function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
}

/** SIGKILLs (as a power cut would) the daemon a test left running, if any, and waits for it to exit; null for the test's variable. */
export async function killDaemon(child: ChildProcess | null): Promise<null> {
  if (child) {
    child.kill('SIGKILL');
    await exited(child);
  }
  return null;
}

export function nbdUri(stateDir: string): string {
  return `nbd+unix:///snapback?socket=${join(stateDir, 'nbd.sock')}`;
}
