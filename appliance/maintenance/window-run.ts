/**
 * One maintenance window, from its checks to its end: thaw, power the host on (GPIO press or a
 * Wake-on-LAN packet), let it run until the window ends (or it shuts down by itself), press the
 * power button (ACPI shutdown), wait up to the grace period for the host to go off, and only
 * then hold the button to force it off; then capture the disk as a new model and activate it,
 * or discard (freeze; the session end restores).
 *
 * A window that cannot run (no power control, the host already on and in use) is skipped with
 * the reason. Every step is reported through `step` (the component writes it to the session
 * history, the audit log and its journal).
 */
import type { MaintenanceStep, MaintenanceWindow } from '../api/maintenance.js';
import type { ProtectionMode } from '../api/common.js';
import type { Clock } from '../clock.js';
import { SnapbackError } from '../errors.js';

/** The host's power as the maintenance windows see it (the daemon adapts the GPIO component). */
export interface HostPowerPort {
  /** Why a window cannot drive the host's power (power output or power LED not wired, GPIO off), or null. */
  unavailableReason(): string | null;
  /** What the power LED says now. */
  state(): 'unknown' | 'on' | 'dark' | 'off';
  /** A press of the host's power button: short ('on', 'off': ACPI) or held ('force-off'). */
  press(action: 'on' | 'off' | 'force-off', actor: string): Promise<'ok' | 'skipped' | 'failed' | 'aborted'>;
  /** Calls `fn` whenever the power state may have changed; returns the unsubscribe. */
  watch(fn: () => void): () => void;
}

export interface WindowRunDeps {
  clock: Clock;
  /** Wall-clock time (epoch ms). */
  wallNow: () => number;
  power: HostPowerPort | null;
  mode: () => ProtectionMode;
  setMode: (mode: ProtectionMode) => Promise<void>;
  /** Ends the host session (the discard: frozen, so it restores). */
  endSession: (note: string) => Promise<unknown>;
  /** Captures the host's disk as the model `name` and activates it; resolves with its name. */
  captureAndActivate: (name: string) => Promise<string>;
  wakeOnLan: (w: NonNullable<MaintenanceWindow['wakeOnLan']>) => Promise<void>;
  /** Each step as it begins (history, audit, journal). */
  step: (step: MaintenanceStep, what: string, details?: Record<string, unknown>) => Promise<void>;
  /** How long the host may take to light its power LED after the power-on. */
  powerOnTimeoutMs: number;
  /** After the forced off, how long the LED may take to go dark. */
  forcedOffTimeoutMs: number;
  signal: AbortSignal;
}

export const MAINTENANCE_ACTOR = 'maintenance';

export type WindowOutcome =
  | { result: 'skipped'; message: string }
  | { result: 'failed'; message: string }
  | { result: 'captured' | 'discarded'; message: string };

/** A window ended early for the reason given (skipped or failed). */
class Stop extends Error {
  constructor(
    readonly result: 'skipped' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

/** Why the window cannot start now, or null: the checks before anything is changed. */
export function skipReason(power: HostPowerPort | null): string | null {
  if (!power) return 'host power control is not running (GPIO is off or not configured)';
  const unavailable = power.unavailableReason();
  if (unavailable) return unavailable;
  const state = power.state();
  if (state === 'on') return 'the host is already on and in use';
  if (state !== 'off') return `the host's power LED does not show it off (${state}): it may be in use`;
  return null;
}

/** Expands {window}, {date} and {time} in a captured model's name (times in the window's zone). */
export function modelNameFor(w: MaintenanceWindow, at: number): string {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', { timeZone: w.timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
      .formatToParts(new Date(at))
      .map((p) => [p.type, p.value]),
  );
  const date = `${parts.year}-${parts.month}-${parts.day}`;
  const time = `${parts.hour}${parts.minute}`;
  return w.modelName.replaceAll('{window}', w.name).replaceAll('{date}', date).replaceAll('{time}', time);
}

/**
 * Runs window `w` that started at `startedAt` (wall ms); `previousMode` is the mode to return to.
 * Resolves with the outcome; never rejects except when `signal` aborts (the daemon stops).
 */
export async function runWindow(w: MaintenanceWindow, startedAt: number, d: WindowRunDeps): Promise<WindowOutcome> {
  const previousMode = d.mode();
  let thawed = false;
  try {
    await d.step('checking', `maintenance window ${w.name}: checking`);
    const why = skipReason(d.power);
    if (why) throw new Stop('skipped', why);
    const power = d.power as HostPowerPort;

    await d.step('thawing', `maintenance window ${w.name}: thawed`, { previousMode });
    if (previousMode !== 'thawed') await d.setMode('thawed');
    thawed = true;

    await d.step('powering-on', w.wakeOnLan ? `maintenance window ${w.name}: Wake-on-LAN to ${w.wakeOnLan.mac}` : `maintenance window ${w.name}: power button pressed`);
    if (w.wakeOnLan) await d.wakeOnLan(w.wakeOnLan);
    else {
      const r = await power.press('on', MAINTENANCE_ACTOR);
      if (r !== 'ok') throw new Stop('failed', `the power-on press ended ${r}`);
    }
    if (!(await waitFor(power, 'on', d.powerOnTimeoutMs, d))) throw new Stop('failed', `the host did not power on within ${Math.round(d.powerOnTimeoutMs / 1000)} s`);

    const endsAt = startedAt + w.durationMinutes * 60_000;
    await d.step('running', `maintenance window ${w.name}: host on, running until ${new Date(endsAt).toISOString()}`);
    // the host may shut itself down when its updates are done
    await waitFor(power, 'off', Math.max(0, endsAt - d.wallNow()), d);

    if (power.state() !== 'off') {
      const graceMs = w.graceSeconds * 1000;
      await d.step('shutting-down', `maintenance window ${w.name}: power button pressed (shutdown), ${w.graceSeconds} s grace`);
      const r = await power.press('off', MAINTENANCE_ACTOR);
      if (r === 'failed' || r === 'aborted') throw new Stop('failed', `the shutdown press ended ${r}`);
      // the grace period runs from the press: the host is never cut off before it has passed
      if (!(await waitFor(power, 'off', graceMs, d))) {
        await d.step('forcing-off', `maintenance window ${w.name}: the host did not shut down within ${w.graceSeconds} s: forced off`, { graceSeconds: w.graceSeconds });
        const f = await power.press('force-off', MAINTENANCE_ACTOR);
        if (f === 'failed' || f === 'aborted') throw new Stop('failed', `the forced off ended ${f}`);
        if (!(await waitFor(power, 'off', d.forcedOffTimeoutMs, d))) throw new Stop('failed', 'the host did not power off, even when forced');
      }
    }

    if (w.after === 'capture') {
      const name = modelNameFor(w, startedAt);
      await d.step('capturing', `maintenance window ${w.name}: capturing model ${name}`, { model: name });
      let captured: string;
      try {
        captured = await d.captureAndActivate(name);
      } catch (err) {
        // the disk stays thawed: nothing the host installed is lost; capture by hand or freeze
        thawed = false;
        throw new Stop('failed', `the capture failed: ${(err as Error).message}; the disk stays thawed so nothing is lost`);
      }
      if (previousMode !== 'thawed') await d.setMode(previousMode);
      return { result: 'captured', message: `model ${captured} captured and activated` };
    }
    await d.step('discarding', `maintenance window ${w.name}: frozen; the session end restores`);
    await d.setMode('frozen');
    await d.endSession(`maintenance window ${w.name}: discard`);
    return { result: 'discarded', message: 'the changes were discarded (frozen, session ended)' };
  } catch (err) {
    if (d.signal.aborted) throw err;
    const stop = err instanceof Stop ? err : new Stop('failed', err instanceof Error ? err.message : String(err));
    // back to the mode before the window: a failed window keeps nothing it did not finish
    if (thawed && previousMode !== 'thawed') await d.setMode(previousMode).catch(() => undefined);
    return { result: stop.result, message: stop.message };
  }
}

/** Waits until the host's power state is `want` (true), or `ms` passed (false). */
function waitFor(power: HostPowerPort, want: 'on' | 'off', ms: number, d: WindowRunDeps): Promise<boolean> {
  if (power.state() === want) return Promise.resolve(true);
  return new Promise<boolean>((resolve, reject) => {
    const done = (v: boolean): void => {
      unwatch();
      d.clock.clearTimeout(timer);
      d.signal.removeEventListener('abort', onAbort);
      resolve(v);
    };
    const onAbort = (): void => {
      unwatch();
      d.clock.clearTimeout(timer);
      reject(d.signal.reason instanceof Error ? d.signal.reason : new SnapbackError('CLOSED', 'maintenance stopped'));
    };
    const unwatch = power.watch(() => {
      if (power.state() === want) done(true);
    });
    const timer = d.clock.setTimeout(() => done(power.state() === want), ms);
    if (d.signal.aborted) onAbort();
    else d.signal.addEventListener('abort', onAbort, { once: true });
  });
}
