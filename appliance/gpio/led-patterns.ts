/**
 * The status LED's patterns, as data: a list of on/off steps with durations. A pattern of one
 * step holds that state; a longer one repeats from its first step. Tests check the LED over
 * time against these same lists; docs/gpio.md describes them for users.
 */
import type { ApplianceStatus } from '../session/appliance-service.js';

export type LedPatternName = 'off' | 'steady' | 'slow-blink' | 'double-blink' | 'fast-blink' | 'warning';

export interface LedStep {
  on: boolean;
  /** Duration in ms; Infinity only in a one-step (held) pattern. */
  ms: number;
}

export interface LedPattern {
  name: LedPatternName;
  meaning: string;
  steps: readonly LedStep[];
}

const on = (ms: number): LedStep => ({ on: true, ms });
const off = (ms: number): LedStep => ({ on: false, ms });

export const LED_PATTERNS: Readonly<Record<LedPatternName, LedPattern>> = {
  off: { name: 'off', meaning: 'daemon not running (or GPIO stopped)', steps: [off(Infinity)] },
  steady: { name: 'steady', meaning: 'frozen and ready', steps: [on(Infinity)] },
  'slow-blink': {
    name: 'slow-blink',
    meaning: 'restoring: a session is ending or the background restore is running',
    steps: [on(1000), off(1000)],
  },
  'double-blink': {
    name: 'double-blink',
    meaning: 'thawed (maintenance): changes are kept',
    steps: [on(150), off(150), on(150), off(1050)],
  },
  'fast-blink': {
    name: 'fast-blink',
    meaning: 'error: see the web UI or `snapback status` (disk I/O errors, a part of the daemon that failed, USB gadget error, host power failure, state file or restore error)',
    steps: [on(100), off(100)],
  },
  warning: {
    name: 'warning',
    meaning: 'a long press was taken: restore now follows (press again to cancel)',
    steps: [on(100), off(100), on(100), off(100), on(100), off(500)],
  },
};

/** Total length of one cycle of a repeating pattern (Infinity for a held one). */
export function patternPeriod(pattern: LedPattern): number {
  return pattern.steps.reduce((sum, s) => sum + s.ms, 0);
}

/** Whether `pattern`, started at time 0, has the LED lit at time `t` (t ≥ 0). */
export function patternLitAt(pattern: LedPattern, t: number): boolean {
  const first = pattern.steps[0];
  if (!first) return false;
  if (pattern.steps.length === 1) return first.on;
  let rest = t % patternPeriod(pattern);
  for (const step of pattern.steps) {
    if (rest < step.ms) return step.on;
    rest -= step.ms;
  }
  return first.on;
}

/** What the GPIO component itself knows, beyond the service's status. */
export interface LocalLedState {
  /** A long press is being warned about. */
  warning: boolean;
  /** A session end requested by GPIO is in flight, or a restore-now sequence runs. */
  restoring: boolean;
  /** A GPIO-side failure (host did not come back, could not be powered off, …). */
  error: boolean;
}

/** The pattern the LED shows, from the most urgent condition down. */
export function choosePattern(status: ApplianceStatus | null, local: LocalLedState): LedPatternName {
  if (local.warning) return 'warning';
  if (local.error) return 'fast-blink';
  if (!status) return 'fast-blink'; // the service cannot tell its status: that is an error
  if (status.disk.ioErrors > 0 || (status.host.gadget?.lastError ?? null) !== null) return 'fast-blink';
  // A part of the daemon failed or runs with a problem (the web UI did not start, a settings
  // file was refused, the state file cannot be written, the restore stopped on an error).
  if (status.components.some((c) => c.state === 'failed' || (c.state === 'running' && c.problem !== null))) return 'fast-blink';
  if (status.stateDir.writeError !== null || status.hydration.lastError !== null) return 'fast-blink';
  const ending = status.host.gadget?.medium === 'ejected';
  if (local.restoring || status.hydration.running || ending) return 'slow-blink';
  if (status.mode === 'thawed') return 'double-blink';
  return 'steady';
}
