/**
 * What the reset button's presses do.
 * - Short press: end the host session as soon as the host is off (SessionEndPolicy).
 * - Long press: "restore now". The LED first shows the warning pattern for warningMs (a press
 *   meanwhile cancels); then, with power control wired, the power sequence (graceful off → …
 *   → power on); without it, the session ends at once — under a running host, which is why
 *   the LED warns first.
 */
import { childLogger } from '../logger.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { GpioAuditFn } from './gpio-audit.js';
import type { PowerController } from './power-controller.js';
import type { SessionEndPolicy } from './session-end-policy.js';
import type { SessionEnder } from './session-ender.js';

const log = childLogger('gpio');
const ACTOR = 'button';

export interface ButtonActionsDeps {
  clock: Clock;
  warningMs: number;
  policy: SessionEndPolicy;
  ender: SessionEnder;
  /** null when the power outputs could not be set up. */
  power: () => PowerController | null;
  audit: GpioAuditFn;
  onChange: () => void;
}

export class ButtonActions {
  private warningTimer: TimerHandle | null = null;

  constructor(private readonly deps: ButtonActionsDeps) {}

  /** The LED is warning of a coming restore-now. */
  get warning(): boolean {
    return this.warningTimer !== null;
  }

  onShortPress(): void {
    if (this.warningTimer) {
      this.cancelWarning();
      this.deps.audit({ actor: ACTOR, action: 'gpio.button.cancelled', details: { cancelled: 'restore-now' } });
      log.info('restore now cancelled by a press during the warning');
      return;
    }
    this.deps.audit({ actor: ACTOR, action: 'gpio.button.short-press' });
    this.deps.policy.endWhenHostOff(ACTOR);
  }

  onLongPress(): void {
    if (this.warningTimer) return;
    const power = this.deps.power();
    if (power?.busy) {
      this.deps.audit({ actor: ACTOR, action: 'gpio.button.long-press', details: { ignored: `busy: ${power.runningAction}` } });
      log.warn({ running: power.runningAction }, 'long press ignored: a power action is running');
      return;
    }
    this.deps.audit({ actor: ACTOR, action: 'gpio.button.long-press', details: { warningMs: this.deps.warningMs } });
    this.warningTimer = this.deps.clock.setTimeout(() => {
      this.warningTimer = null;
      this.deps.onChange();
      this.restoreNow();
    }, this.deps.warningMs);
    this.deps.onChange();
  }

  stop(): void {
    this.cancelWarning();
  }

  private restoreNow(): void {
    const power = this.deps.power();
    if (power && power.unavailableReason('restore-now') === null) {
      try {
        void power.begin('restore-now', ACTOR, 'button');
      } catch (err) {
        log.warn({ err }, 'restore now from the button could not start');
      }
      return;
    }
    this.deps.audit({
      actor: ACTOR,
      action: 'gpio.session.end',
      details: { why: 'long press without host power control: ending at once' },
    });
    this.deps.ender.end('button', 'long press: restore now (no host power control)').catch(() => {
      // recorded by the ender (status, log)
    });
  }

  private cancelWarning(): void {
    if (!this.warningTimer) return;
    this.deps.clock.clearTimeout(this.warningTimer);
    this.warningTimer = null;
    this.deps.onChange();
  }
}
