/**
 * One input line, debounced: a new level counts only once the line has held it for
 * `debounceMs` (every edge restarts the wait), so contact bounce and short glitches never
 * reach the logic above. Reports "active" (pressed, lit) after applying the polarity.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { GpioBackend, Level } from './gpio-backend.js';

export interface DebouncedInputOptions {
  pin: number;
  activeLow: boolean;
  debounceMs: number;
}

export class DebouncedInput {
  private stable: Level | null = null;
  private timer: TimerHandle | null = null;
  private readonly onEdge = (): void => this.restartSettle();

  constructor(
    private readonly backend: GpioBackend,
    private readonly clock: Clock,
    readonly options: DebouncedInputOptions,
    /** Called after each debounced change, with the new state. */
    private readonly onChange: (active: boolean) => void,
  ) {}

  /** Claims the line and reads its current level (reported by `active`, not by onChange). */
  start(): void {
    if (this.stable !== null) return;
    this.backend.export(this.options.pin, { direction: 'in', edge: 'both' });
    this.stable = this.backend.read(this.options.pin);
    this.backend.watch(this.options.pin, this.onEdge);
  }

  stop(): void {
    if (this.stable === null) return;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.backend.unwatch(this.options.pin, this.onEdge);
    this.backend.unexport(this.options.pin);
    this.stable = null;
  }

  get started(): boolean {
    return this.stable !== null;
  }

  /** The debounced state: true = pressed / lit; null before start. */
  get active(): boolean | null {
    return this.stable === null ? null : this.isActive(this.stable);
  }

  /** The physical level of the line right now (not debounced); null before start. */
  rawLevel(): Level | null {
    return this.stable === null ? null : this.backend.read(this.options.pin);
  }

  private restartSettle(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      if (this.stable === null) return;
      const level = this.backend.read(this.options.pin);
      if (level === this.stable) return;
      this.stable = level;
      this.onChange(this.isActive(level));
    }, this.options.debounceMs);
  }

  private isActive(level: Level): boolean {
    return this.options.activeLow ? level === 0 : level === 1;
  }
}
