/**
 * Waiting in tests for something that happens asynchronously (a server to drop a client, a
 * watcher to see a state, a VM to show a disk). A bound on hangs, never a timing assertion.
 */

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

type Falsy = false | null | undefined | 0 | '';

/**
 * Calls `check` every `everyMs` until it returns a truthy value, and returns that value. A
 * `check` that throws is tried again. After `timeoutMs` it throws, naming `what` and the last
 * error `check` threw.
 */
export async function waitFor<T>(what: string, check: () => T | Promise<T>, timeoutMs = 20_000, everyMs = 20): Promise<Exclude<T, Falsy>> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as Exclude<T, Falsy>;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? ` (last error: ${lastErr instanceof Error ? lastErr.message : String(lastErr)})` : ''}`);
    await sleep(everyMs);
  }
}
