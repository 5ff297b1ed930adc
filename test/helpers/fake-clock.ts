/**
 * A deterministic clock for tests of code that takes a Clock (GPIO, the USB gadget): time moves
 * only when the test advances it.
 */
import type { Clock, TimerHandle } from '../../appliance/clock.js';

interface FakeTimer {
  id: number;
  at: number;
  fn: () => void;
}

/** Lets pending promise callbacks run (several rounds, for chains of awaits). */
export async function settle(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * A deterministic clock: time moves only in advance(); timers fire in time order (ties in the
 * order they were set), and pending promises settle between timers so that async sequences
 * progress exactly as they would in real time.
 */
export class FakeClock implements Clock {
  private t = 0;
  private nextId = 1;
  private timers = new Map<number, FakeTimer>();

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), fn });
    return { id } as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers.delete((handle as unknown as { id: number }).id);
  }

  get pendingTimers(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms`, firing every timer due on the way. */
  async advance(ms: number): Promise<void> {
    await this.advanceTo(this.t + ms);
  }

  async advanceTo(target: number): Promise<void> {
    await settle();
    for (;;) {
      let next: FakeTimer | null = null;
      for (const timer of this.timers.values()) {
        if (timer.at > target) continue;
        if (!next || timer.at < next.at || (timer.at === next.at && timer.id < next.id)) next = timer;
      }
      if (!next) break;
      this.timers.delete(next.id);
      this.t = next.at;
      next.fn();
      await settle();
    }
    this.t = Math.max(this.t, target);
    await settle();
  }
}

