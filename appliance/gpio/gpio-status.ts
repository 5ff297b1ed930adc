/** The GPIO component's status, as GET /api/gpio and the web UI show it. */
import type { GpioBackendInfo, Level } from './gpio-backend.js';
import type { HostPowerState } from './host-power-sense.js';
import type { LedPatternName } from './led-patterns.js';
import type { PowerControllerStatus } from './power-controller.js';
import type { ArmedEnd } from './session-end-policy.js';

export type GpioRole = 'button' | 'status-led' | 'power-switch' | 'reset-switch' | 'power-led';

export interface GpioPinStatus {
  role: GpioRole;
  bcm: number;
  /** The kernel's sysfs number (base + BCM), when the backend is sysfs. */
  sysfs: number | null;
  direction: 'in' | 'out';
  activeLow: boolean;
  /** Physical level right now; null when the line is not in use (see error). */
  level: Level | null;
  /** Level after polarity: pressed / lit / button held. */
  active: boolean | null;
  /** Why the line could not be used. */
  error: string | null;
}

export interface GpioStatus {
  enabled: boolean;
  available: boolean;
  /** Why GPIO is off (when available is false). */
  reason: string | null;
  backend: GpioBackendInfo | null;
  pins: GpioPinStatus[];
  button: { wired: boolean; pressed: boolean | null; armedEnd: ArmedEnd | null; warning: boolean };
  led: { wired: boolean; pattern: LedPatternName; lit: boolean | null };
  host: { senseWired: boolean; power: HostPowerState; blinking: boolean; lit: boolean | null };
  power: PowerControllerStatus;
  session: { ending: boolean; error: { message: string; at: string } | null };
}
