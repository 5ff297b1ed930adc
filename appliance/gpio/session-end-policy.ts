/**
 * When the host going off ends its session. The power LED dark for hostOffAfterMs ends it
 * (reason 'host-power-off') if so configured; a short press of the reset button asks for the
 * end "as soon as the host is off": at once when it is off or its power LED is not wired,
 * otherwise armed for its next power-off (reason 'button'). A restore-now sequence ends the
 * session itself, so the LED does not end it a second time meanwhile.
 */
import { childLogger } from '../logger.js';
import type { GpioAuditFn } from './gpio-audit.js';
import type { HostPowerSense } from './host-power-sense.js';
import type { SessionEnder } from './session-ender.js';

const log = childLogger('gpio');

export interface SessionEndPolicyDeps {
  ender: SessionEnder;
  /** The power LED; null when not wired. */
  sense: () => HostPowerSense | null;
  /** True while a sequence that ends the session itself (restore now) runs. */
  sequenceOwnsSessionEnd: () => boolean;
  endSessionOnPowerOff: boolean;
  audit: GpioAuditFn;
  onChange: () => void;
}

export interface ArmedEnd {
  by: string;
  since: string;
}

export class SessionEndPolicy {
  private armedEnd: ArmedEnd | null = null;

  constructor(private readonly deps: SessionEndPolicyDeps) {}

  get armed(): ArmedEnd | null {
    return this.armedEnd;
  }

  /** The short press: end the session once the host is off. */
  endWhenHostOff(actor: string): void {
    const sense = this.deps.sense();
    if (!sense || sense.state === 'off') {
      this.deps.audit({
        actor,
        action: 'gpio.session.end',
        details: { why: sense ? 'the host is off' : 'no power LED wired: ending at once' },
      });
      this.end('button', `${actor}: short press`);
      return;
    }
    if (this.armedEnd) return;
    this.armedEnd = { by: actor, since: new Date().toISOString() };
    this.deps.audit({ actor, action: 'gpio.session.end-armed', details: { hostPower: sense.state } });
    log.info({ actor }, 'session end armed for the next host power-off');
    this.deps.onChange();
  }

  /** Clears the armed end (any session end satisfies it). */
  disarm(): void {
    if (!this.armedEnd) return;
    this.armedEnd = null;
    this.deps.onChange();
  }

  /** The host has been off for hostOffAfterMs (HostPowerSense.onHostOff). */
  onHostOff(sinceStart: boolean): void {
    if (this.deps.sequenceOwnsSessionEnd()) return;
    const armed = this.armedEnd;
    if (armed) {
      this.armedEnd = null;
      this.deps.audit({ actor: 'power-led', action: 'gpio.session.end', details: { why: 'armed end: host off', armedBy: armed.by } });
      this.end('button', `armed by ${armed.by}; the host powered off`);
      return;
    }
    // Dark since the daemon started: the daemon's start already began a fresh session.
    if (sinceStart || !this.deps.endSessionOnPowerOff) return;
    this.deps.audit({ actor: 'power-led', action: 'gpio.session.end', details: { why: 'host powered off' } });
    this.end('host-power-off', 'the host power LED went dark');
  }

  private end(reason: 'button' | 'host-power-off', note: string): void {
    this.deps.ender.end(reason, note).catch(() => {
      // recorded by the ender (status, log)
    });
  }
}
