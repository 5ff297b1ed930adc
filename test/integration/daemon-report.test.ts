/**
 * What the daemon says about its parts, as a lab administrator reads it: the log lines a log
 * collector parses (one JSON object a line, each key once) and the status's components on a
 * machine without GPIO. Real daemon (`snapback serve` in its own process, and in-process).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../appliance/daemon/daemon.js';
import { Prng } from '../helpers/prng.js';
import { CLI, exited, initState } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const SIZE = 4 << 20;

/** The keys of a JSON object's top level, in order, duplicates kept (JSON.parse keeps the last). */
function topLevelKeys(line: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (ch === '"') {
      let j = i + 1;
      while (line[j] !== '"') j += line[j] === '\\' ? 2 : 1;
      if (depth === 1 && /^\s*:/.test(line.slice(j + 1))) keys.push(JSON.parse(line.slice(i, j + 1)) as string);
      i = j;
    } else if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
  }
  return keys;
}

describe('daemon report: log lines and component states', function () {
  this.timeout(120_000);
  let dir: string;
  let state: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-report-'));
    state = initState(dir, new Prng(3).bytes(SIZE)).state;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('every daemon log line goes to stdout (its journal) as one JSON object with each key once, and the line about a failed part names it as its component', async () => {
    writeFileSync(join(state, 'gpio.json'), JSON.stringify({ buton: { pin: 17 } }));
    const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', state, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'auto'], {
      env: { ...process.env, NODE_ENV: 'production', LOG_LEVEL: 'debug' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor('the daemon to log the bad gpio.json', () => /buton/.test(out) && /serving NBD/.test(out), 60_000);
    } finally {
      child.kill('SIGTERM');
      await exited(child);
    }
    const lines = stdout.split('\n').filter((l) => l.startsWith('{'));
    assert.ok(lines.length > 3, out);
    for (const line of lines) {
      const keys = topLevelKeys(line);
      assert.deepEqual(keys, [...new Set(keys)], `a key twice in: ${line}`);
    }
    const gpioLine = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.level === 50 && /buton/.test(String(e.problem)));
    assert.ok(gpioLine, out);
    assert.equal(gpioLine.component, 'gpio');
  });

  it('GPIO on auto on a machine without GPIO is reported off (no problem), as the gadget is, not running', async () => {
    const d = new Daemon({ stateDir: state, httpListen: { host: '127.0.0.1', port: 0 }, gadget: 'auto', gpio: 'auto', firstBootPasswordFile: null, sysRoot: join(dir, 'sys') });
    try {
      await d.start();
      const byName = new Map(d.components().map((c) => [c.name, c]));
      assert.deepEqual(byName.get('gpio'), { name: 'gpio', essential: false, state: 'off', problem: null });
      assert.equal(byName.get('gadget')?.state, 'off');
    } finally {
      await d.stop();
    }
  });
});
