/**
 * Plays an LED pattern on one output line, timed by the clock. Showing the pattern already
 * playing changes nothing (the blink keeps its rhythm); another pattern starts from its first
 * step at once.
 */
import type { Clock, TimerHandle } from '../clock.js';
import type { GpioBackend, Level } from './gpio-backend.js';
import { LED_PATTERNS, type LedPattern, type LedPatternName } from './led-patterns.js';

export class StatusLed {
  private current: LedPattern = LED_PATTERNS.off;
  private step = 0;
  private timer: TimerHandle | null = null;
  private started = false;
  private isLit = false;

  constructor(
    private readonly backend: GpioBackend,
    private readonly clock: Clock,
    readonly options: { pin: number; activeLow: boolean },
  ) {}

  start(): void {
    if (this.started) return;
    this.backend.export(this.options.pin, { direction: 'out', initial: this.level(false) });
    this.started = true;
    this.isLit = false;
    const pattern = this.current;
    this.current = LED_PATTERNS.off;
    this.show(pattern.name);
  }

  /** Turns the LED off and releases the line. */
  stop(): void {
    if (!this.started) return;
    this.clearTimer();
    this.backend.write(this.options.pin, this.level(false));
    this.backend.unexport(this.options.pin);
    this.started = false;
    this.isLit = false;
  }

  get pattern(): LedPatternName {
    return this.current.name;
  }

  get lit(): boolean {
    return this.isLit;
  }

  show(name: LedPatternName): void {
    if (name === this.current.name) return;
    this.current = LED_PATTERNS[name];
    if (!this.started) return;
    this.clearTimer();
    this.step = 0;
    this.playStep();
  }

  private playStep(): void {
    const step = this.current.steps[this.step];
    if (!step) return;
    this.isLit = step.on;
    this.backend.write(this.options.pin, this.level(step.on));
    if (this.current.steps.length === 1) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.step = (this.step + 1) % this.current.steps.length;
      this.playStep();
    }, step.ms);
  }

  private clearTimer(): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
  }

  private level(lit: boolean): Level {
    return lit !== this.options.activeLow ? 1 : 0;
  }
}
