/**
 * The host's power LED, read through an optocoupler: tells whether the host is on, and
 * decides that it is off only once the LED has stayed dark for `hostOffAfterMs`, so that the
 * blinking LED of a sleeping host never counts as a power-off (a sleeping host keeps its
 * session). Every transition goes to the session's history through `record`; while the LED
 * blinks, transitions are summarised instead of recorded one by one (a host asleep for a night
 * would otherwise add tens of thousands of entries).
 */
import type { Clock, TimerHandle } from '../clock.js';
import { DebouncedInput } from './debounced-input.js';
import type { GpioBackend } from './gpio-backend.js';

/**
 * unknown: not started. on: LED lit. dark: LED dark for less than hostOffAfterMs (maybe a
 * blink). off: LED dark for hostOffAfterMs or more: the host is off.
 */
export type HostPowerState = 'unknown' | 'on' | 'dark' | 'off';

export interface HostPowerSenseOptions {
  pin: number;
  activeLow: boolean;
  debounceMs: number;
  hostOffAfterMs: number;
}

export interface HostPowerSenseHandlers {
  /** The host is now off. `sinceStart`: it was never seen on since the sense started. */
  onHostOff(sinceStart: boolean): void;
  /** Any change of state or blinking. */
  onChange(): void;
  /** A line for the session history. */
  record(what: string): void;
}

/** Transitions within BLINK_WINDOW_MS that make the LED count as blinking. */
export const BLINK_TRANSITIONS = 6;
export const BLINK_WINDOW_MS = 10_000;

interface Waiter {
  want: 'on' | 'off';
  resolve: (reached: boolean) => void;
}

export class HostPowerSense {
  private readonly input: DebouncedInput;
  private current: HostPowerState = 'unknown';
  private seenOn = false;
  private offTimer: TimerHandle | null = null;
  private darkSinceAt: number | null = null;
  private recent: number[] = [];
  private blinkingNow = false;
  private steadyTimer: TimerHandle | null = null;
  private waiters = new Set<Waiter>();

  constructor(
    backend: GpioBackend,
    private readonly clock: Clock,
    readonly options: HostPowerSenseOptions,
    private readonly handlers: HostPowerSenseHandlers,
  ) {
    this.input = new DebouncedInput(
      backend,
      clock,
      { pin: options.pin, activeLow: options.activeLow, debounceMs: options.debounceMs },
      (lit) => this.onLed(lit),
    );
  }

  start(): void {
    if (this.input.started) return;
    this.input.start();
    this.seenOn = false;
    if (this.input.active) {
      this.seenOn = true;
      this.setState('on');
    } else {
      this.goDark();
    }
  }

  stop(): void {
    if (!this.input.started) return;
    this.input.stop();
    this.clearTimers();
    this.current = 'unknown';
    this.darkSinceAt = null;
    this.blinkingNow = false;
    this.recent = [];
    for (const w of this.waiters) w.resolve(false);
    this.waiters.clear();
  }

  get state(): HostPowerState {
    return this.current;
  }

  get blinking(): boolean {
    return this.blinkingNow;
  }

  /** Clock time at which the LED went dark (null while lit or unknown). */
  get darkSince(): number | null {
    return this.darkSinceAt;
  }

  get lit(): boolean | null {
    return this.input.active;
  }

  rawLevel(): 0 | 1 | null {
    return this.input.rawLevel();
  }

  /**
   * Resolves true once the host is on (LED lit) or off (dark for hostOffAfterMs), false after
   * `timeoutMs` or when the sense stops or `signal` aborts.
   */
  waitFor(want: 'on' | 'off', timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (this.current === want) return Promise.resolve(true);
    if (this.current === 'unknown' || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (reached: boolean): void => {
        this.clock.clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
        resolve(reached);
      };
      const waiter: Waiter = { want, resolve: finish };
      const onAbort = (): void => finish(false);
      const timer = this.clock.setTimeout(() => finish(false), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  private onLed(lit: boolean): void {
    this.noteTransition();
    if (lit) {
      this.seenOn = true;
      if (this.offTimer) this.clock.clearTimeout(this.offTimer);
      this.offTimer = null;
      this.darkSinceAt = null;
      if (!this.blinkingNow) this.handlers.record('power LED on');
      this.setState('on');
    } else {
      if (!this.blinkingNow) this.handlers.record('power LED dark');
      this.goDark();
    }
  }

  private goDark(): void {
    this.darkSinceAt = this.clock.now();
    this.setState('dark');
    if (this.offTimer) this.clock.clearTimeout(this.offTimer);
    this.offTimer = this.clock.setTimeout(() => {
      this.offTimer = null;
      const sinceStart = !this.seenOn;
      this.endBlinking(null);
      if (!sinceStart) this.handlers.record(`host off: power LED dark for ${this.options.hostOffAfterMs} ms`);
      this.setState('off');
      this.handlers.onHostOff(sinceStart);
    }, this.options.hostOffAfterMs);
  }

  /** Counts a transition; enters "blinking" when they come fast, leaves it once steady. */
  private noteTransition(): void {
    const now = this.clock.now();
    this.recent = this.recent.filter((t) => now - t < BLINK_WINDOW_MS);
    this.recent.push(now);
    if (!this.blinkingNow && this.recent.length >= BLINK_TRANSITIONS) {
      this.blinkingNow = true;
      this.handlers.record('power LED blinking (host asleep?): transitions not recorded until it is steady');
      this.handlers.onChange();
    }
    if (this.blinkingNow) {
      if (this.steadyTimer) this.clock.clearTimeout(this.steadyTimer);
      this.steadyTimer = this.clock.setTimeout(() => {
        this.steadyTimer = null;
        this.endBlinking(this.input.active ? 'power LED steady on' : 'power LED steady dark');
      }, BLINK_WINDOW_MS);
    }
  }

  private endBlinking(record: string | null): void {
    if (this.steadyTimer) this.clock.clearTimeout(this.steadyTimer);
    this.steadyTimer = null;
    if (!this.blinkingNow) return;
    this.blinkingNow = false;
    this.recent = [];
    if (record) this.handlers.record(record);
    this.handlers.onChange();
  }

  private setState(state: HostPowerState): void {
    const changed = state !== this.current;
    this.current = state;
    for (const w of [...this.waiters]) if (w.want === state) w.resolve(true);
    if (changed) this.handlers.onChange();
  }

  private clearTimers(): void {
    if (this.offTimer) this.clock.clearTimeout(this.offTimer);
    if (this.steadyTimer) this.clock.clearTimeout(this.steadyTimer);
    this.offTimer = null;
    this.steadyTimer = null;
  }
}
