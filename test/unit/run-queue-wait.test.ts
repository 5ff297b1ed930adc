/**
 * The thread's run-queue wait (appliance/storage/run-queue-wait.ts), which the inline I/O
 * governor asks to tell preemption from a disk wait: parsed from schedstat, and, on the real
 * kernel, growing when two busy processes share one CPU and not while a thread sleeps.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseRunDelayMs, threadRunQueueWaitMs } from '../../appliance/storage/run-queue-wait.js';

const moduleUrl = new URL('../../appliance/storage/run-queue-wait.js', import.meta.url).href;

/** The first CPU this process may run on (a container may not have CPU 0). */
function firstAllowedCpu(): number {
  const list = /Cpus_allowed_list:\s*(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'));
  assert.ok(list, 'Cpus_allowed_list in /proc/self/status');
  return Number(list[1]);
}

/**
 * A node process pinned to `cpu` that spins until it has used `cpuMs` of CPU, or sleeps
 * `sleepMs` first, then prints how long it waited for a CPU (ms) by threadRunQueueWaitMs.
 */
function child(cpu: number, script: string): Promise<number> {
  const code = `import(${JSON.stringify(moduleUrl)}).then(async ({ threadRunQueueWaitMs: w }) => { const w0 = w(); ${script}; process.stdout.write(String(w() - w0)); })`;
  return new Promise((resolve, reject) => {
    const p = spawn('taskset', ['-c', String(cpu), process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('error', reject);
    p.once('close', (code) => (code === 0 ? resolve(Number(out)) : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

const SPIN = 'const c0 = process.cpuUsage(); while ((process.cpuUsage(c0).user + process.cpuUsage(c0).system) / 1000 < 300) {}';

describe('run-queue wait (schedstat run_delay)', function () {
  this.timeout(60_000);

  it('parses schedstat: run_delay, the second field, in milliseconds; anything else is an error', () => {
    assert.equal(parseRunDelayMs('3921497 1628517 2\n'), 1.628517);
    assert.equal(parseRunDelayMs('0 0 0'), 0);
    assert.throws(() => parseRunDelayMs(''), /unexpected schedstat/);
    assert.throws(() => parseRunDelayMs('12 x 3'), /unexpected schedstat/);
    assert.throws(() => parseRunDelayMs('12 34'), /unexpected schedstat/);
  });

  it('reads this thread\'s wait from the kernel: a number that never goes back', () => {
    const a = threadRunQueueWaitMs();
    assert.equal(typeof a, 'number', 'Debian\'s kernel keeps schedstats (CONFIG_SCHED_INFO)');
    const b = threadRunQueueWaitMs();
    assert.ok(b !== null && b >= a!);
  });

  it('grows when two busy processes share one CPU, and hardly at all while a thread sleeps', async () => {
    const cpu = firstAllowedCpu();
    // Two spinners on one CPU, 300 ms of CPU each: each waits while the other runs.
    const [a, b] = await Promise.all([child(cpu, SPIN), child(cpu, SPIN)]);
    assert.ok(Math.max(a, b) >= 100, `the two spinners waited ${a} and ${b} ms for the CPU`);
    // A sleeping thread is not waiting for a CPU: 300 ms asleep adds (almost) nothing.
    const asleep = await child(cpu, 'await new Promise((r) => setTimeout(r, 300))');
    assert.ok(asleep < 100, `a sleeping thread counted ${asleep} ms of run-queue wait`);
  });
});
