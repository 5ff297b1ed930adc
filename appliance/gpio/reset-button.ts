/**
 * The reset button: a debounced input classified into presses. A press released before
 * `longPressMs` is a short press (reported at release); a press held for `longPressMs` (from
 * its debounced start) is a long press, reported while still held so that the LED can answer
 * at once. The release after a long press reports nothing more.
 */
import type { Clock, TimerHandle } from '../clock.js';
import { DebouncedInput } from './debounced-input.js';
import type { GpioBackend } from './gpio-backend.js';
import type { ButtonSettings } from './gpio-settings.js';

export interface ResetButtonHandlers {
  onShortPress(): void;
  onLongPress(): void;
  /** The debounced pressed state changed. */
  onChange?(pressed: boolean): void;
}

export class ResetButton {
  private readonly input: DebouncedInput;
  private longTimer: TimerHandle | null = null;
  private longFired = false;

  constructor(
    backend: GpioBackend,
    private readonly clock: Clock,
    private readonly settings: ButtonSettings & { pin: number },
    private readonly handlers: ResetButtonHandlers,
  ) {
    this.input = new DebouncedInput(
      backend,
      clock,
      { pin: settings.pin, activeLow: settings.activeLow, debounceMs: settings.debounceMs },
      (pressed) => this.onDebounced(pressed),
    );
  }

  get pin(): number {
    return this.settings.pin;
  }

  start(): void {
    this.input.start();
    // A button already held at start (or stuck) is not a press: wait for its release.
    this.longFired = this.input.active === true;
  }

  stop(): void {
    this.clearLongTimer();
    this.input.stop();
  }

  get pressed(): boolean | null {
    return this.input.active;
  }

  rawLevel(): 0 | 1 | null {
    return this.input.rawLevel();
  }

  private onDebounced(pressed: boolean): void {
    this.handlers.onChange?.(pressed);
    if (pressed) {
      this.longFired = false;
      this.clearLongTimer();
      this.armLongPress(this.settings.longPressMs);
      return;
    }
    this.clearLongTimer();
    if (this.longFired) {
      this.longFired = false;
      return;
    }
    this.handlers.onShortPress();
  }

  /**
   * Fires the long press after `ms`, unless the button is by then physically released (its
   * release still being debounced): that press was short, and the release will say so. If it
   * was only a glitch, the press still counts as long one debounce period later.
   */
  private armLongPress(ms: number): void {
    this.longTimer = this.clock.setTimeout(() => {
      this.longTimer = null;
      const raw = this.input.rawLevel();
      const physicallyPressed = raw === null ? false : (raw === 0) === this.settings.activeLow;
      if (!physicallyPressed) {
        this.armLongPress(this.settings.debounceMs);
        return;
      }
      this.longFired = true;
      this.handlers.onLongPress();
    }, ms);
  }

  private clearLongTimer(): void {
    if (this.longTimer) this.clock.clearTimeout(this.longTimer);
    this.longTimer = null;
  }
}
