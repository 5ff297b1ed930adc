/**
 * The fleet benchmark (`npm run bench -- fleet`): 1,000 simulated appliances (light MQTT clients
 * speaking the fleet protocol, in a few processes: bench/fleet-sim-entry.ts) against one
 * mosquitto and one console (`snapback console serve` as its own process):
 * - a group command to all 1,000: the time until the console accepted it (202), and until every
 *   appliance's answer was back in the console (seen on its live event stream, which gathers
 *   changes per 250 ms tick); target < 2 s. Beside it, the console's own record of the command's
 *   path: from its commands' creation to the last answer recorded (their createdAt/answeredAt);
 * - the console's resident memory (RSS now and its peak); target < 200 MB;
 * - the fleet page in Chromium with 1,000 rows: the time from navigation until the table shows
 *   its first page, and a filter's redraw.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CommandRecord } from '../appliance/api/console.js';
import { launchChromium } from '../test/helpers/browser.js';
import { Mosquitto } from '../test/helpers/mosquitto.js';

const here = dirname(fileURLToPath(import.meta.url)); // dist/bench
const CLI = join(here, '..', 'appliance', 'cli', 'main.js');
const PASSWORD = 'bench-console-password';

export interface FleetBenchOptions {
  appliances?: number;
  processes?: number;
  trials?: number;
}

export interface FleetBenchResult {
  env: string;
  appliances: number;
  processes: number;
  connectS: number;
  groupCommands: { action: string; acceptedMs: number; allAnsweredMs: number; consolePathMs: number }[];
  consoleRssMb: number;
  consolePeakRssMb: number;
  fleetPage: { firstPageMs: number; filterMs: number; rowsInDom: number };
}

function rssMb(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

function lineFrom(child: ChildProcess, re: RegExp, what: string, ms = 120_000): Promise<RegExpExecArray> {
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms: ${out}`)), ms);
    const on = (d: Buffer): void => {
      out += d.toString();
      const m = re.exec(out);
      if (m) {
        clearTimeout(t);
        child.stdout!.off('data', on);
        resolve(m);
      }
    };
    child.stdout!.on('data', on);
    child.once('exit', (code) => reject(new Error(`${what} exited ${code}: ${out}`)));
  });
}

/** Every command event from the console's live stream, to `onCommands`. */
async function followCommands(base: string, token: string, onCommands: (cs: CommandRecord[]) => void, signal: AbortSignal): Promise<void> {
  const res = await fetch(`${base}api/events`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal });
  if (!res.ok || !res.body) throw new Error(`GET /api/events: ${res.status}`);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += dec.decode(value, { stream: true });
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const msg = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(msg)?.[1];
          const data = /^data: (.*)$/m.exec(msg)?.[1];
          if (ev === 'commands' && data) onCommands(JSON.parse(data) as CommandRecord[]);
        }
      }
    } catch {
      /* aborted at the end */
    }
  })();
}

export async function runFleetBench(o: FleetBenchOptions = {}): Promise<FleetBenchResult> {
  const N = o.appliances ?? 1000;
  const P = o.processes ?? 4;
  const trials = o.trials ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'snapback-bench-fleet-'));
  const broker = await Mosquitto.start({ dir: join(dir, 'broker'), maxQueuedMessages: 10 * N });
  const children: ChildProcess[] = [];
  const stop = new AbortController();
  try {
    const data = join(dir, 'console');
    const consoleProc = spawn(process.execPath, [CLI, 'console', 'serve', '--data-dir', data, '--http-listen', '127.0.0.1:0', '--mqtt', broker.url], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, LOG_LEVEL: 'warn' },
    });
    children.push(consoleProc);
    const base = (await lineFrom(consoleProc, /console API on (http:\/\/\S+)/, 'snapback console serve'))[1]!;
    const tok = spawnSync(process.execPath, [CLI, 'console', 'token', 'create', '--data-dir', data, '--name', 'bench'], { encoding: 'utf8' });
    if (tok.status !== 0) throw new Error(`console token create: ${tok.stderr}`);
    const token = tok.stdout.trim().split('\n').at(-1)!;
    const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
      const res = await fetch(base + path, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    };

    // The simulated fleet, in P processes.
    const t0 = Date.now();
    const per = Math.ceil(N / P);
    const ready: Promise<unknown>[] = [];
    for (let p = 0; p < P; p++) {
      const count = Math.min(per, N - p * per);
      const sim = spawn(process.execPath, [join(here, 'fleet-sim-entry.js'), broker.url, String(p * per), String(count)], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(sim);
      ready.push(lineFrom(sim, /ready/, `simulator ${p}`, 300_000));
    }
    await Promise.all(ready);
    for (;;) {
      const s = await api<{ appliances: { total: number; online: number } }>('GET', 'api/status');
      if (s.appliances.online >= N) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const connectS = (Date.now() - t0) / 1000;
    process.stderr.write(`fleet: ${N} appliances online in ${connectS.toFixed(1)} s\n`);

    // Everyone in one group.
    await api('POST', 'api/groups', { name: 'bench' });
    const names = (await api<{ name: string }[]>('GET', 'api/appliances')).map((a) => a.name);
    for (let i = 0; i < names.length; i += 50) await Promise.all(names.slice(i, i + 50).map((n) => api('POST', `api/appliances/${n}/group`, { group: 'bench' })));

    // Group commands: 202, then every answer back (from the console's live stream).
    let waiting: { ids: Set<string>; done: () => void } | null = null;
    const answered = new Map<string, CommandRecord>();
    await followCommands(base, token, (cs) => {
      for (const c of cs) if (c.state === 'succeeded' || c.state === 'failed') answered.set(c.id, c);
      if (waiting && [...waiting.ids].every((id) => answered.has(id))) waiting.done();
    }, stop.signal);
    const groupCommands: FleetBenchResult['groupCommands'] = [];
    for (let t = 0; t < trials; t++) {
      const action = t % 2 === 0 ? 'thaw' : 'freeze';
      const start = performance.now();
      const all = new Promise<void>((resolve) => (waiting = { ids: new Set(), done: resolve }));
      const r = await api<{ commands: { id: string }[] }>('POST', 'api/groups/bench/actions', { action });
      const acceptedMs = performance.now() - start;
      if (r.commands.length !== N) throw new Error(`the group command made ${r.commands.length} commands, not ${N}`);
      waiting!.ids = new Set(r.commands.map((c) => c.id));
      if (r.commands.every((c) => answered.has(c.id))) waiting!.done();
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('not every answer came back within 60 s')), 60_000));
      await Promise.race([all, timeout]);
      const allAnsweredMs = performance.now() - start;
      const records = r.commands.map((c) => answered.get(c.id)!);
      const consolePathMs = Math.max(...records.map((c) => Date.parse(c.answeredAt!))) - Math.min(...records.map((c) => Date.parse(c.createdAt)));
      groupCommands.push({ action, acceptedMs: Math.round(acceptedMs), allAnsweredMs: Math.round(allAnsweredMs), consolePathMs });
      process.stderr.write(`fleet: group ${action}: 202 after ${acceptedMs.toFixed(0)} ms, all ${N} answers after ${allAnsweredMs.toFixed(0)} ms (in the console: created to last answer recorded ${consolePathMs} ms)\n`);
      await new Promise((r) => setTimeout(r, 1000));
    }

    // The fleet page in Chromium.
    const browser = await launchChromium();
    let fleetPage: FleetBenchResult['fleetPage'];
    try {
      const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
      const page = await ctx.newPage();
      await page.goto(`${base}login`);
      await page.waitForSelector('#setup-form');
      await page.fill('#new-password', PASSWORD);
      await page.fill('#confirm-password', PASSWORD);
      await page.click('#setup-submit');
      await page.waitForSelector('#page[data-loaded="true"]');
      // A fresh load of the page: navigation start to the first page of rows drawn.
      await page.goto(`${base}#/fleet`);
      await page.waitForFunction((n) => (globalThis as any).document.querySelector('#fleet-page-info')?.textContent === `1–100 of ${n}`, N);
      const firstPageMs = await page.evaluate(() => performance.now());
      const rowsInDom = await page.locator('#fleet-rows tr').count();
      const filterMs = await page.evaluate(async () => {
        const g = globalThis as any; // the page's window
        const input = g.document.querySelector('#fleet-filter');
        const t = performance.now();
        input.value = 'bench-09';
        input.dispatchEvent(new g.Event('input'));
        await new Promise((r) => g.requestAnimationFrame(() => setTimeout(r, 0)));
        return performance.now() - t;
      });
      fleetPage = { firstPageMs: Math.round(firstPageMs), filterMs: Math.round(filterMs * 10) / 10, rowsInDom };
      await ctx.close();
    } finally {
      await browser.close();
    }

    const mem = rssMb(consoleProc.pid!);
    return {
      env: `Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? '?'}, kernel ${release()}`,
      appliances: N,
      processes: P,
      connectS: Math.round(connectS * 10) / 10,
      groupCommands,
      consoleRssMb: Math.round(mem.rss),
      consolePeakRssMb: Math.round(mem.hwm),
      fleetPage,
    };
  } finally {
    stop.abort();
    for (const c of children) {
      c.stdin?.end();
      c.kill('SIGTERM');
    }
    await Promise.all(children.map((c) => (c.exitCode !== null || c.signalCode !== null ? null : new Promise((r) => c.once('exit', r)))));
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

export function fleetMarkdown(r: FleetBenchResult, load: string): string {
  const best = Math.min(...r.groupCommands.map((g) => g.allAnsweredMs));
  const worst = Math.max(...r.groupCommands.map((g) => g.allAnsweredMs));
  return [
    `### Fleet: ${r.appliances} simulated appliances, one mosquitto, one console (${r.env}; load before: ${load})`,
    '',
    '| what | figure | target |',
    '|---|---|---|',
    `| ${r.appliances} appliances (${r.processes} processes) connected and online in the console | ${r.connectS} s | — |`,
    ...r.groupCommands.map((g, i) => `| group command ${i + 1} (${g.action}) to all ${r.appliances}: accepted (202) / every answer back (in the console's records: created to last answer) | ${g.acceptedMs} ms / ${g.allAnsweredMs} ms (${g.consolePathMs} ms) | < 2000 ms ${g.allAnsweredMs < 2000 ? '✓' : '✗'} |`),
    `| console RSS after the runs (peak) | ${r.consoleRssMb} MB (${r.consolePeakRssMb} MB) | < 200 MB ${r.consolePeakRssMb < 200 ? '✓' : '✗'} |`,
    `| fleet page with ${r.appliances} rows: navigation to first page drawn (rows in the DOM) | ${r.fleetPage.firstPageMs} ms (${r.fleetPage.rowsInDom}) | — |`,
    `| fleet page: a name filter's redraw | ${r.fleetPage.filterMs} ms | — |`,
    '',
    `Every answer back: best ${best} ms, worst ${worst} ms. The simulated appliances answer at once (they run nothing), so this is the console's and the broker's share of a group command; a real appliance adds its own time to act.`,
    '',
  ].join('\n');
}
