/**
 * How long the calling thread has waited, in all, to be given a CPU: runnable, its turn taken
 * by other threads. The kernel keeps it per thread as schedstat's run_delay (the second field
 * of /proc/thread-self/schedstat, in nanoseconds; Linux with CONFIG_SCHED_INFO, which
 * Debian's and Raspberry Pi OS's kernels set).
 *
 * The inline I/O governor (inline-io.ts) asks it after a slow call, to tell a call that waited
 * for the disk (asleep: run_delay does not move) from one whose thread was preempted
 * (runnable: run_delay moves by about the time lost). One read costs a few microseconds, so
 * it is asked only about calls already known to be slow.
 */
import { readFileSync } from 'node:fs';

const SCHEDSTAT = '/proc/thread-self/schedstat';

/** A source of the calling thread's total run-queue wait in milliseconds; null where unknown. */
export type RunQueueWait = () => number | null;

let unavailable = false;

/** The calling thread's total run-queue wait (ms), from schedstat; null where the kernel does not say. */
export const threadRunQueueWaitMs: RunQueueWait = () => {
  if (unavailable) return null;
  try {
    return parseRunDelayMs(readFileSync(SCHEDSTAT, 'latin1'));
  } catch {
    // Not Linux, no procfs, or a kernel without schedstats: stop asking.
    unavailable = true;
    return null;
  }
};

/** run_delay (the second of schedstat's three fields, ns) in milliseconds. Throws on anything else. */
export function parseRunDelayMs(schedstat: string): number {
  const fields = schedstat.trim().split(/\s+/);
  const ns = Number(fields[1]);
  if (fields.length < 3 || !Number.isFinite(ns) || ns < 0) throw new Error(`unexpected schedstat: ${JSON.stringify(schedstat.slice(0, 80))}`);
  return ns / 1e6;
}
