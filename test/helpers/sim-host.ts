/**
 * A simulated host PC on the GPIO test pins (SimHost): what the power button and LED wiring of
 * the appliance's GPIO code talk to when no real PC is there.
 */
import type { TimerHandle } from '../../appliance/clock.js';
import type { Level } from '../../appliance/gpio/gpio-backend.js';
import type { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import type { FakeClock } from './fake-clock.js';

export interface SimHostOptions {
  /** Pins as wired (BCM). */
  switchPin: number;
  resetPin?: number | null;
  ledPin: number;
  /** Outputs active-high (optocoupler), LED sense active-low (as the defaults). */
  outputsActiveLow?: boolean;
  ledActiveLow?: boolean;
  on?: boolean;
  /** How the OS answers a short press of the power button while running. */
  onShortPress?: 'shutdown' | 'ignore';
  shutdownMs?: number;
  bootMs?: number;
  /** ATX forced-off hold; a host that is 'unkillable' never turns off. */
  forceOffHoldMs?: number;
  unkillable?: boolean;
  /** A host that never powers on again. */
  neverBoots?: boolean;
}

/**
 * A host PC at the other end of the ATX wiring: it watches its power button (the Pi's output),
 * shuts down after a short press, powers off when the button is held 4 s, boots after a press
 * when off, and shows all this on its power LED (the Pi's input).
 */
export class SimHost {
  on: boolean;
  readonly presses: { at: number; heldMs: number }[] = [];
  resets = 0;
  private pressedAt: number | null = null;
  private forceTimer: TimerHandle | null = null;
  private pending: TimerHandle | null = null;

  constructor(
    private readonly sim: SimulatedGpioBackend,
    private readonly clock: FakeClock,
    private readonly o: SimHostOptions,
  ) {
    this.on = o.on ?? true;
    this.showLed();
    sim.onOutput(o.switchPin, (level) => this.onSwitch(this.active(level)));
    if (o.resetPin != null) {
      let down = false;
      sim.onOutput(o.resetPin, (level) => {
        const now = this.active(level);
        if (down && !now) this.resets++;
        down = now;
      });
    }
  }

  private active(level: Level): boolean {
    return (level === 1) !== (this.o.outputsActiveLow ?? false);
  }

  private onSwitch(pressed: boolean): void {
    if (pressed && this.pressedAt === null) {
      this.pressedAt = this.clock.now();
      if (this.on && !this.o.unkillable) {
        this.forceTimer = this.clock.setTimeout(() => {
          this.forceTimer = null;
          this.setPower(false);
        }, this.o.forceOffHoldMs ?? 4000);
      }
      return;
    }
    if (!pressed && this.pressedAt !== null) {
      const heldMs = this.clock.now() - this.pressedAt;
      this.pressedAt = null;
      this.presses.push({ at: this.clock.now(), heldMs });
      const forced = this.forceTimer === null && heldMs >= (this.o.forceOffHoldMs ?? 4000);
      if (this.forceTimer) this.clock.clearTimeout(this.forceTimer);
      this.forceTimer = null;
      if (forced) return;
      if (this.on) {
        if ((this.o.onShortPress ?? 'shutdown') === 'shutdown') this.later(this.o.shutdownMs ?? 10_000, false);
      } else if (!this.o.neverBoots) {
        this.later(this.o.bootMs ?? 2000, true);
      }
    }
  }

  private later(ms: number, on: boolean): void {
    if (this.pending) this.clock.clearTimeout(this.pending);
    this.pending = this.clock.setTimeout(() => {
      this.pending = null;
      this.setPower(on);
    }, ms);
  }

  setPower(on: boolean): void {
    this.on = on;
    this.showLed();
  }

  private showLed(): void {
    const lit = this.on;
    this.sim.setInput(this.o.ledPin, (lit !== (this.o.ledActiveLow ?? true) ? 1 : 0) as Level);
  }
}
