/**
 * The time source of the GPIO code. Everything that waits (debouncing, LED patterns, button
 * presses, power sequences) asks a Clock, so tests drive time with a fake clock and never wait
 * on real time.
 */
/** The real clock: Node's timers and a monotonic time. */
export const systemClock = {
    now: () => performance.now(),
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (handle) => clearTimeout(handle),
};
/** Resolves after `ms` on `clock`; `signal` (optional) rejects it early with its reason. */
export function sleep(clock, ms, signal) {
    return new Promise((resolve, reject) => {
        if (signal?.aborted) {
            reject(signal.reason);
            return;
        }
        const onAbort = () => {
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
//# sourceMappingURL=clock.js.map