/**
 * The steps of a scenario that runs inside a VM (test/integration/gadget-vm.test.ts,
 * appliance-image.test.ts): the guest records each step's result in /results/steps.jsonl as it
 * goes; the host reads them after the run (test/rigs/kernel-vm.ts) and turns each into a test.
 * A step the guest never reported fails with the reason the run failed as a whole.
 *
 * Imported by the guest side too: nothing here may start anything on import.
 */
import { execFile } from 'node:child_process';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { KernelVmResult } from './kernel-vm.js';

const execFileP = promisify(execFile);

/** The guest's results directory (the host's `resultsDir`). */
export const GUEST_RESULTS = '/results';
const STEPS_FILE = 'steps.jsonl';

export interface StepResult {
  /** The part of the scenario (gadget-vm runs two appliances one after the other). */
  phase?: string;
  step: string;
  ok: boolean;
  detail: string;
  ms: number;
}

const stepName = (s: { phase?: string; step: string }): string => (s.phase ? `${s.phase}: ${s.step}` : s.step);

// ---- guest side ----

/** Records one step's result and prints it on the guest's console. */
export function reportStep(line: StepResult): void {
  appendFileSync(join(GUEST_RESULTS, STEPS_FILE), JSON.stringify(line) + '\n');
  const detail = line.ok ? (line.detail ? ` — ${line.detail}` : '') : `\n${line.detail}`;
  process.stdout.write(`[scenario] ${line.ok ? 'ok  ' : 'FAIL'} ${stepName(line)} (${line.ms} ms)${detail}\n`);
}

/** Runs `fn` as one step and records it (what `fn` returns is its detail; what it throws, its failure). */
export async function runStep(name: { phase?: string; step: string }, fn: () => Promise<string | void>): Promise<StepResult> {
  const t0 = Date.now();
  let line: StepResult;
  try {
    line = { ...name, ok: true, detail: (await fn()) ?? '', ms: 0 };
  } catch (err) {
    line = { ...name, ok: false, detail: err instanceof Error ? err.stack ?? err.message : String(err), ms: 0 };
  }
  line.ms = Date.now() - t0;
  reportStep(line);
  return line;
}

/** Runs a command in the guest; a failure names the command and its stderr (or, with `allowFail`, is returned with its exit code). */
export async function sh(cmd: string, args: string[], opts: { timeoutMs?: number; allowFail?: boolean } = {}): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await execFileP(cmd, args, { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 << 20 });
    return { stdout: r.stdout, stderr: r.stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string; message: string };
    if (opts.allowFail) return { stdout: e.stdout ?? '', stderr: e.stderr ?? e.message, code: typeof e.code === 'number' ? e.code : 1 };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

// ---- host side ----

export interface VmRun {
  steps: StepResult[];
  /** The last lines of the guest's console, for failure messages. */
  consoleTail: string;
  /** Why the run failed as a whole (timed out, no exit status); null when the guest ran to its end. */
  runError: Error | null;
  resultsDir: string;
}

/** Before a run (or when it could not start): no steps, no results. */
export const NO_RUN: VmRun = { steps: [], consoleTail: '', runError: null, resultsDir: '' };

/** What a finished VM run left: the steps the guest reported, the tail of its console, and whether it ran to its end. */
export function readVmRun(r: KernelVmResult, tailLines: number): VmRun {
  const consoleTail = r.console.split('\n').slice(-tailLines).join('\n');
  const file = join(r.resultsDir, STEPS_FILE);
  const steps = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StepResult) : [];
  const runError = r.timedOut
    ? new Error(`the VM did not finish in time\n${consoleTail}`)
    : r.exitStatus === null
      ? new Error(`the guest never reported an exit status (QEMU ${JSON.stringify(r.qemuExit)})\n${consoleTail}`)
      : null;
  process.stderr.write(`      (VM run: ${(r.durationMs / 1000).toFixed(1)} s, guest exit ${r.exitStatus}, results in ${r.resultsDir})\n`);
  return { steps, consoleTail, runError, resultsDir: r.resultsDir };
}

/** The failure for a step the guest never reported: what it reported last, and where its results are. */
export function notReported(run: VmRun): Error {
  const last = run.steps.at(-1);
  return new Error(`the guest never reported this step (the last it reported: ${last ? `${stepName(last)}, ${last.ok ? 'ok' : 'FAILED'}` : 'none'}; results in ${run.resultsDir})\n${run.consoleTail}`);
}
