/**
 * The time source of the hardware front ends (GPIO, USB gadget). Everything that waits
 * (debouncing, LED patterns, button presses, power sequences, UDC polling, the gadget's
 * watchdog) asks a Clock, so tests drive time with a fake clock and never wait on real time.
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

/** Calls `fn` every `ms` on `clock` until the returned function is called. */
export function repeat(clock: Clock, ms: number, fn: () => void): () => void {
  let handle: TimerHandle | null = null;
  let stopped = false;
  const tick = (): void => {
    if (stopped) return;
    handle = clock.setTimeout(tick, ms);
    fn();
  };
  handle = clock.setTimeout(tick, ms);
  return () => {
    stopped = true;
    if (handle) clock.clearTimeout(handle);
    handle = null;
  };
}
