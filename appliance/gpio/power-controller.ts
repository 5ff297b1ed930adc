/**
 * Host power control through the ATX front-panel header, as PiKVM's ATX board does it: two
 * outputs "press" the host's power and reset buttons through optocouplers or relays, and the
 * host's power LED is read back (HostPowerSense). Every action goes through this one class,
 * under one mutex (two sequences never overlap: a second request gets BUSY), and every action
 * is written to the audit log with who asked and how it ended.
 *
 * Outputs are released (driven inactive) in a `finally`, so an aborted or failing sequence
 * never leaves a button held.
 */
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { SessionEndReason } from '../session/appliance-service.js';
import { sleep, type Clock } from '../clock.js';
import type { GpioAuditFn } from './gpio-audit.js';
import type { GpioBackend, Level } from './gpio-backend.js';
import type { PowerSettings } from './gpio-settings.js';
import type { HostPowerSense } from './host-power-sense.js';
import { Mutex } from './mutex.js';

const log = childLogger('gpio');

export const POWER_ACTIONS = ['on', 'off', 'force-off', 'reset', 'restore-now'] as const;
export type PowerAction = (typeof POWER_ACTIONS)[number];

export type PowerPhase =
  | 'pressing-power'
  | 'pressing-reset'
  | 'holding-power'
  | 'waiting-for-off'
  | 'forcing-off'
  | 'waiting-for-forced-off'
  | 'ending-session'
  | 'powering-on'
  | 'waiting-for-on';

export type PowerResult = 'ok' | 'skipped' | 'failed' | 'aborted';

export interface PowerFailure {
  action: PowerAction;
  message: string;
  at: string;
}

export interface PowerControllerStatus {
  wired: { power: boolean; reset: boolean; led: boolean };
  /** busy: an action runs; error: the last action failed and nothing has fixed it since. */
  state: 'idle' | 'busy' | 'error';
  running: { action: PowerAction; actor: string; phase: PowerPhase | null } | null;
  /** The outstanding failure (state 'error'). */
  error: PowerFailure | null;
  last: { action: PowerAction; actor: string; result: PowerResult; at: string } | null;
}

export interface PowerControllerDeps {
  backend: GpioBackend;
  clock: Clock;
  settings: PowerSettings;
  /** The power LED; null when not wired. */
  sense: HostPowerSense | null;
  audit: GpioAuditFn;
  /** Ends the host session (through the component, which tracks it for the LED). */
  endSession: (reason: SessionEndReason, note: string) => Promise<unknown>;
  onChange: () => void;
}

/** Ends a sequence early with a result other than 'ok'. */
class Outcome extends Error {
  constructor(
    readonly result: 'skipped' | 'failed',
    message: string,
  ) {
    super(message);
  }
}

export class PowerController {
  private readonly mutex = new Mutex();
  private running: { action: PowerAction; actor: string; phase: PowerPhase | null } | null = null;
  private failure: PowerFailure | null = null;
  private last: PowerControllerStatus['last'] = null;
  private abort = new AbortController();
  private started = false;
  private readonly exported: number[] = [];

  constructor(private readonly deps: PowerControllerDeps) {}

  private get s(): PowerSettings {
    return this.deps.settings;
  }

  /** Claims the output lines, driven inactive from the first instant. */
  start(): void {
    if (this.started) return;
    this.abort = new AbortController();
    try {
      for (const pin of [this.s.switchPin, this.s.resetPin]) {
        if (pin === null) continue;
        this.deps.backend.export(pin, { direction: 'out', initial: this.level(false) });
        this.exported.push(pin);
      }
    } catch (err) {
      for (const pin of this.exported.splice(0)) this.releaseLine(pin);
      throw err;
    }
    this.started = true;
  }

  /** Aborts a running sequence (its outputs are released) and frees the lines. */
  stop(): void {
    if (!this.started) return;
    this.started = false;
    this.abort.abort(new SnapbackError('CLOSED', 'GPIO stopped'));
    for (const pin of this.exported.splice(0)) this.releaseLine(pin);
  }

  private releaseLine(pin: number): void {
    try {
      this.deps.backend.write(pin, this.level(false));
    } catch (err) {
      log.warn({ err, pin }, 'could not release a host button output');
    }
    this.deps.backend.unexport(pin);
  }

  get wired(): PowerControllerStatus['wired'] {
    return { power: this.s.switchPin !== null, reset: this.s.resetPin !== null, led: this.deps.sense !== null };
  }

  /** Why `action` cannot run with this wiring, or null if it can. */
  unavailableReason(action: PowerAction): string | null {
    if (!this.started) return 'GPIO is not running';
    if (action === 'reset') return this.s.resetPin === null ? 'the host reset output is not wired' : null;
    if (this.s.switchPin === null) return 'the host power output is not wired';
    if (action === 'restore-now' && !this.deps.sense) return 'restore now needs the host power LED input wired';
    return null;
  }

  get busy(): boolean {
    return this.running !== null;
  }

  get runningAction(): PowerAction | null {
    return this.running?.action ?? null;
  }

  status(): PowerControllerStatus {
    return {
      wired: this.wired,
      state: this.running ? 'busy' : this.failure ? 'error' : 'idle',
      running: this.running ? { ...this.running } : null,
      error: this.failure,
      last: this.last,
    };
  }

  /** The host was seen coming on again: an outstanding failure no longer stands. */
  noteHostOn(): void {
    if (!this.failure || this.running) return;
    this.failure = null;
    this.deps.onChange();
  }

  /**
   * Starts `action`. Throws at once (NOT_SUPPORTED if not wired, BUSY if another action runs);
   * otherwise returns the promise of the whole sequence, which never rejects: its outcome goes
   * to the status and the audit log. `reason`: why restore-now ends the session.
   */
  begin(action: PowerAction, actor: string, reason: SessionEndReason = 'host-power-off'): Promise<PowerResult> {
    const unavailable = this.unavailableReason(action);
    if (unavailable) throw new SnapbackError('NOT_SUPPORTED', unavailable, { action });
    const release = this.mutex.acquire(actor, action, this.deps.clock.now());
    this.running = { action, actor, phase: null };
    const startedAt = this.deps.clock.now();
    this.deps.audit({ actor, action: `gpio.power.${action}`, details: { result: 'started' } });
    this.deps.onChange();
    const signal = this.abort.signal;
    return this.sequence(action, actor, reason, signal).then(
      () => this.finish(action, actor, 'ok', startedAt, release),
      (err: unknown) => {
        if (err instanceof Outcome) return this.finish(action, actor, err.result, startedAt, release, err.message);
        if (signal.aborted) return this.finish(action, actor, 'aborted', startedAt, release, 'GPIO stopped');
        const message = err instanceof Error ? err.message : String(err);
        return this.finish(action, actor, 'failed', startedAt, release, message);
      },
    );
  }

  private finish(
    action: PowerAction,
    actor: string,
    result: PowerResult,
    startedAt: number,
    release: () => void,
    message?: string,
  ): PowerResult {
    this.running = null;
    release();
    const at = new Date().toISOString();
    this.last = { action, actor, result, at };
    if (result === 'failed') this.failure = { action, message: message ?? 'failed', at };
    else if (result === 'ok') this.failure = null;
    const durationMs = Math.round(this.deps.clock.now() - startedAt);
    this.deps.audit({
      actor,
      action: `gpio.power.${action}`,
      details: { result, durationMs, ...(message ? { message } : {}) },
    });
    if (result === 'failed') log.error({ action, actor, message }, 'host power action failed');
    else log.info({ action, actor, result, message }, 'host power action finished');
    this.deps.onChange();
    return result;
  }

  private sequence(action: PowerAction, actor: string, reason: SessionEndReason, signal: AbortSignal): Promise<void> {
    switch (action) {
      case 'on':
        return this.powerOn(signal);
      case 'off':
        return this.gracefulOff(signal);
      case 'force-off':
        return this.forcedOff(signal);
      case 'reset':
        return this.reset(signal);
      case 'restore-now':
        return this.restoreNow(actor, reason, signal);
    }
  }

  // ---- single actions ----

  private async powerOn(signal: AbortSignal): Promise<void> {
    if (this.deps.sense?.state === 'on') throw new Outcome('skipped', 'the host is already on');
    await this.press(this.s.switchPin, this.s.pressMs, 'pressing-power', signal);
  }

  private async gracefulOff(signal: AbortSignal): Promise<void> {
    if (this.deps.sense?.state === 'off') throw new Outcome('skipped', 'the host is already off');
    await this.press(this.s.switchPin, this.s.pressMs, 'pressing-power', signal);
  }

  private async forcedOff(signal: AbortSignal): Promise<void> {
    if (this.deps.sense?.state === 'off') throw new Outcome('skipped', 'the host is already off');
    await this.press(this.s.switchPin, this.s.forceOffMs, 'holding-power', signal);
  }

  private async reset(signal: AbortSignal): Promise<void> {
    await this.press(this.s.resetPin, this.s.resetPressMs, 'pressing-reset', signal);
  }

  // ---- restore now ----

  /**
   * Graceful off → LED dark (timeout: forced off) → end the session (in eager mode the service
   * restores before this resolves) → power on → LED lit. A host that cannot be powered off
   * keeps its session (never restore under a live host); one that does not come back is
   * reported, not retried.
   */
  private async restoreNow(actor: string, reason: SessionEndReason, signal: AbortSignal): Promise<void> {
    const sense = this.deps.sense;
    if (!sense) throw new Outcome('failed', 'restore now needs the host power LED input wired');

    if (sense.state === 'dark') {
      // Going off, off for less than hostOffAfterMs, or asleep: let the LED tell.
      this.phase('waiting-for-off');
      await sense.waitFor('off', this.s.hostOffAfterMs + this.s.ledDebounceMs * 2, signal);
    }
    if (sense.state !== 'off') {
      await this.press(this.s.switchPin, this.s.pressMs, 'pressing-power', signal);
      this.phase('waiting-for-off');
      const off = await sense.waitFor('off', this.s.gracefulOffTimeoutMs, signal);
      this.throwIfAborted(signal);
      if (!off) {
        this.deps.audit({
          actor,
          action: 'gpio.power.forced-off',
          details: { why: `graceful off did not finish within ${this.s.gracefulOffTimeoutMs} ms` },
        });
        log.warn('graceful off timed out: forcing the host off');
        await this.press(this.s.switchPin, this.s.forceOffMs, 'forcing-off', signal);
        this.phase('waiting-for-forced-off');
        const forced = await sense.waitFor('off', this.s.forcedOffTimeoutMs + this.s.hostOffAfterMs, signal);
        this.throwIfAborted(signal);
        if (!forced) {
          throw new Outcome('failed', 'the host did not power off, even when forced; its session was not ended');
        }
      }
    }

    this.phase('ending-session');
    await this.deps.endSession(reason, `restore now by ${actor}`);
    this.throwIfAborted(signal);

    await this.press(this.s.switchPin, this.s.pressMs, 'powering-on', signal);
    this.phase('waiting-for-on');
    const on = await sense.waitFor('on', this.s.powerOnTimeoutMs, signal);
    this.throwIfAborted(signal);
    if (!on) {
      throw new Outcome(
        'failed',
        `the host did not come back on within ${this.s.powerOnTimeoutMs} ms after the restore (not retried)`,
      );
    }
  }

  // ---- primitives ----

  /** Holds a button output active for `ms`, releasing it whatever happens. */
  private async press(pin: number | null, ms: number, phase: PowerPhase, signal: AbortSignal): Promise<void> {
    if (pin === null) throw new Outcome('failed', 'output not wired');
    this.throwIfAborted(signal);
    this.phase(phase);
    this.deps.backend.write(pin, this.level(true));
    try {
      await sleep(this.deps.clock, ms, signal);
    } finally {
      // After stop() the line is already released (and maybe unexported).
      if (this.exported.includes(pin)) this.deps.backend.write(pin, this.level(false));
    }
  }

  private phase(phase: PowerPhase): void {
    if (!this.running) return;
    this.running.phase = phase;
    this.deps.onChange();
  }

  private throwIfAborted(signal: AbortSignal): void {
    if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
  }

  private level(active: boolean): Level {
    return active !== this.s.outputsActiveLow ? 1 : 0;
  }
}
