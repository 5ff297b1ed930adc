/**
 * A deterministic clock for tests of code that takes a Clock (GPIO, the USB gadget, the
 * hydrator's retries): time moves only when the test advances it. The timers are
 * @sinonjs/fake-timers' (the field's fake clock) on a clock of their own, not installed over
 * Node's globals, so the file I/O and sockets the code under test uses run for real.
 *
 * Between two timers the library lets the event loop turn once (a real setImmediate), so a
 * timer's callback that reads or writes a file (a sysfs value, a state file) and then sets the
 * next timer does so before time moves on. The tests need that turn and no more: measured over
 * the GPIO, gadget and hydrator unit tests, six runs each, they all pass with the library's one
 * turn, and five fail (timeouts) when timers fire with only promise callbacks run in between.
 */
import { createClock } from '@sinonjs/fake-timers';
import type { Clock, TimerHandle } from '../../appliance/clock.js';

/** Lets pending promise callbacks and I/O completions run (several turns of the event loop). */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

type TimersClock = ReturnType<typeof createClock>;
type TimersId = Parameters<TimersClock['clearTimeout']>[0];

/**
 * A deterministic clock: time moves only in advance(); timers fire in time order (ties in the
 * order they were set), with a turn of the event loop after each, so that async sequences
 * progress as they would in real time.
 */
export class FakeClock implements Clock {
  private readonly clock: TimersClock = createClock(0);

  now(): number {
    return this.clock.now;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.clock.setTimeout(fn, Math.max(0, ms)) as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.clock.clearTimeout(handle as unknown as TimersId);
  }

  get pendingTimers(): number {
    return this.clock.countTimers();
  }

  /** Moves time forward by `ms`, firing every timer due on the way. */
  async advance(ms: number): Promise<void> {
    await this.clock.tickAsync(Math.max(0, ms));
  }

  async advanceTo(target: number): Promise<void> {
    await this.clock.tickAsync(Math.max(0, target - this.clock.now));
  }
}
