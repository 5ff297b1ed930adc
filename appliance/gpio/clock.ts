/**
 * The time source of the GPIO code. Everything that waits (debouncing, LED patterns, button
 * presses, power sequences) asks a Clock, so tests drive time with a fake clock and never wait
 * on real time.
 */

declare const timerBrand: unique symbol;
/** An opaque timer returned by Clock.setTimeout. */
export type TimerHandle = { readonly [timerBrand]: true };

export interface Clock {
  /** Milliseconds, monotonic within one clock (not necessarily the epoch). */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: Node's timers and a monotonic time. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms) as unknown as TimerHandle,
  clearTimeout: (handle) => clearTimeout(handle as unknown as NodeJS.Timeout),
};

/** Resolves after `ms` on `clock`; `signal` (optional) rejects it early with its reason. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clock.clearTimeout(handle);
      reject(signal?.reason);
    };
    const handle = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
