/**
 * The daemon's GPIO component: the reset button, the status LED and the optional host power
 * control, on whatever GpioBackend this machine has. On a machine without GPIO (a laptop, CI)
 * it logs once why GPIO is off and runs without it; status() says so too.
 *
 * Events: 'change' () — something in status() changed (button, host power, LED pattern, …).
 */
import { EventEmitter } from 'node:events';
import { ZodError } from 'zod';
import type { Component } from '../component.js';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';
import { childLogger } from '../logger.js';
import type { ApplianceService, ApplianceStatus } from '../session/appliance-service.js';
import { ButtonActions } from './button-actions.js';
import { systemClock, type Clock } from '../clock.js';
import { detectGpio } from './detect-gpio.js';
import type { GpioAuditFn } from './gpio-audit.js';
import type { GpioBackend, Level } from './gpio-backend.js';
import { GpioSettingsSchema, type GpioSettings, type GpioSettingsInput } from './gpio-settings.js';
import type { GpioPinStatus, GpioRole, GpioStatus } from './gpio-status.js';
import { HostPowerSense, type HostPowerState } from './host-power-sense.js';
import { choosePattern, type LedPatternName } from './led-patterns.js';
import { PowerController, type PowerAction, type PowerControllerStatus, type PowerResult } from './power-controller.js';
import { ResetButton } from './reset-button.js';
import { SessionEndPolicy } from './session-end-policy.js';
import { SessionEnder } from './session-ender.js';
import { StatusLed } from './status-led.js';

const log = childLogger('gpio');

export interface GpioComponentOptions {
  /** Where sysfs is mounted (default '/sys'); only used to detect the GPIO chip. */
  sysfsRoot?: string;
  /** A backend to use instead of detecting one (tests: SimulatedGpioBackend). */
  backend?: GpioBackend;
  clock?: Clock;
  audit: GpioAuditFn;
}

export class GpioComponent extends EventEmitter implements Component {
  readonly name = 'gpio';
  readonly settings: GpioSettings;
  private readonly clock: Clock;
  private readonly audit: GpioAuditFn;
  private started = false;
  private backend: GpioBackend | null = null;
  private reason: string | null = null;
  private reasonLogged = false;
  private button: ResetButton | null = null;
  private led: StatusLed | null = null;
  private sense: HostPowerSense | null = null;
  private power: PowerController | null = null;
  private readonly pinErrors = new Map<GpioRole, string>();
  private pattern: LedPatternName = 'off';
  private hostPower: HostPowerState = 'unknown';
  private readonly ender: SessionEnder;
  private readonly policy: SessionEndPolicy;
  private readonly actions: ButtonActions;

  private readonly onServiceStatus = (): void => this.refresh(false);
  private readonly onSessionEnded = (): void => {
    this.policy.disarm();
    this.refresh(true);
  };

  constructor(
    private readonly service: ApplianceService,
    settings: GpioSettingsInput,
    private readonly options: GpioComponentOptions,
  ) {
    super();
    try {
      this.settings = GpioSettingsSchema.parse(settings);
    } catch (err) {
      if (err instanceof ZodError) {
        const message = formatZodIssues(err);
        throw new SnapbackError('BAD_ARGUMENT', `invalid GPIO settings: ${message}`, { issues: err.issues });
      }
      throw err;
    }
    this.clock = options.clock ?? systemClock;
    this.audit = (e) => {
      try {
        options.audit(e);
      } catch (err) {
        log.warn({ err, action: e.action }, 'audit write failed');
      }
    };
    const changed = (): void => this.refresh(true);
    this.ender = new SessionEnder(service, changed);
    this.policy = new SessionEndPolicy({
      ender: this.ender,
      sense: () => this.sense,
      sequenceOwnsSessionEnd: () => this.power?.runningAction === 'restore-now',
      endSessionOnPowerOff: this.settings.power.endSessionOnPowerOff,
      audit: this.audit,
      onChange: changed,
    });
    this.actions = new ButtonActions({
      clock: this.clock,
      warningMs: this.settings.button.warningMs,
      policy: this.policy,
      ender: this.ender,
      power: () => this.power,
      audit: this.audit,
      onChange: changed,
    });
  }

  get available(): boolean {
    return this.backend !== null;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    if (!this.settings.enabled) {
      this.unavailable('GPIO is disabled in the settings');
      return;
    }
    let backend = this.options.backend ?? null;
    if (!backend) {
      const found = detectGpio(this.options.sysfsRoot ?? '/sys');
      if (!found.ok) {
        this.unavailable(found.reason);
        return;
      }
      backend = found.backend;
    }
    this.backend = backend;
    this.reason = null;
    this.service.on('status', this.onServiceStatus);
    this.service.on('session-ended', this.onSessionEnded);
    this.startParts(backend);
    this.refresh(true);
    log.info(
      { backend: backend.info, pins: this.pinsInUse(), errors: Object.fromEntries(this.pinErrors) },
      'GPIO started',
    );
  }

  async stop(): Promise<void> {
    if (!this.started) return;
    this.started = false;
    this.service.off('status', this.onServiceStatus);
    this.service.off('session-ended', this.onSessionEnded);
    this.actions.stop();
    this.policy.disarm();
    const parts: [string, { stop(): void } | null][] = [
      ['button', this.button],
      ['power-led', this.sense],
      ['power', this.power],
      ['status-led', this.led],
    ];
    for (const [what, part] of parts) {
      try {
        part?.stop();
      } catch (err) {
        log.warn({ err, what }, 'stopping a GPIO part failed');
      }
    }
    this.button = this.sense = this.power = this.led = null;
    this.backend = null;
    this.pinErrors.clear();
    this.pattern = 'off';
    this.hostPower = 'unknown';
    this.emit('change');
  }

  /**
   * Starts a host power action (see PowerController). Throws NOT_SUPPORTED when GPIO is off or
   * the action's outputs are not wired, BUSY while another action runs; the returned promise
   * settles with the outcome once the sequence ends (restore now may take minutes).
   */
  powerAction(action: PowerAction, actor: string): Promise<PowerResult> {
    if (!this.power) {
      throw new SnapbackError('NOT_SUPPORTED', this.reason ?? 'host power control is not running', { action });
    }
    return this.power.begin(action, actor, 'host-power-off');
  }

  status(): GpioStatus {
    const s = this.settings;
    return {
      enabled: s.enabled,
      available: this.available,
      reason: this.reason,
      backend: this.backend?.info ?? null,
      pins: this.pinStatuses(),
      button: {
        wired: this.button !== null,
        pressed: this.button?.pressed ?? null,
        armedEnd: this.policy.armed,
        warning: this.actions.warning,
      },
      led: { wired: this.led !== null, pattern: this.pattern, lit: this.led ? this.led.lit : null },
      host: {
        senseWired: this.sense !== null,
        power: this.sense?.state ?? 'unknown',
        blinking: this.sense?.blinking ?? false,
        lit: this.sense?.lit ?? null,
      },
      power: this.power?.status() ?? idlePowerStatus(),
      session: { ending: this.ender.ending, error: this.ender.error },
    };
  }

  // ---- internals ----

  private unavailable(reason: string): void {
    this.reason = reason;
    if (!this.reasonLogged) {
      this.reasonLogged = true;
      log.info({ reason }, `GPIO is off: ${reason}; running without it`);
    }
    this.emit('change');
  }

  /** Starts each wired part on its own: a line that cannot be claimed disables only its part. */
  private startParts(backend: GpioBackend): void {
    const { button, statusLed, power } = this.settings;
    const changed = (): void => this.refresh(true);

    if (statusLed.pin !== null) {
      const led = new StatusLed(backend, this.clock, { pin: statusLed.pin, activeLow: statusLed.activeLow });
      if (this.tryStart(['status-led'], () => led.start())) this.led = led;
    }

    if (power.ledPin !== null) {
      const sense = new HostPowerSense(
        backend,
        this.clock,
        {
          pin: power.ledPin,
          activeLow: power.ledActiveLow,
          debounceMs: power.ledDebounceMs,
          hostOffAfterMs: power.hostOffAfterMs,
        },
        {
          onHostOff: (sinceStart) => this.policy.onHostOff(sinceStart),
          onChange: () => this.onSenseChange(),
          record: (what) => this.recordHostEvent(what),
        },
      );
      if (this.tryStart(['power-led'], () => sense.start())) this.sense = sense;
      this.hostPower = sense.state;
    }

    const controller = new PowerController({
      backend,
      clock: this.clock,
      settings: power,
      sense: this.sense,
      audit: this.audit,
      endSession: (reason, note) => this.ender.end(reason, note),
      onChange: changed,
    });
    const outputs: GpioRole[] = [];
    if (power.switchPin !== null) outputs.push('power-switch');
    if (power.resetPin !== null) outputs.push('reset-switch');
    if (this.tryStart(outputs, () => controller.start())) this.power = controller;

    if (button.pin !== null) {
      const b = new ResetButton(backend, this.clock, { ...button, pin: button.pin }, {
        onShortPress: () => this.actions.onShortPress(),
        onLongPress: () => this.actions.onLongPress(),
        onChange: changed,
      });
      if (this.tryStart(['button'], () => b.start())) this.button = b;
    }
  }

  private tryStart(roles: GpioRole[], start: () => void): boolean {
    try {
      start();
      return true;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      for (const role of roles) this.pinErrors.set(role, message);
      log.warn({ err, roles }, `GPIO ${roles.join(', ')} not available: ${message}`);
      return false;
    }
  }

  private onSenseChange(): void {
    const state = this.sense?.state ?? 'unknown';
    if (state === 'on' && this.hostPower !== 'on') this.power?.noteHostOn();
    this.hostPower = state;
    this.refresh(true);
  }

  private recordHostEvent(what: string): void {
    try {
      this.service.recordHostEvent(what);
    } catch (err) {
      log.warn({ err, what }, 'could not record a host event');
    }
  }

  private serviceStatus(): ApplianceStatus | null {
    try {
      return this.service.status();
    } catch (err) {
      log.warn({ err }, 'the appliance status is not available');
      return null;
    }
  }

  /** Recomputes the LED pattern; emits 'change' when asked to or when the pattern changed. */
  private refresh(changed: boolean): void {
    if (!this.started) return;
    const power = this.power?.status();
    const pattern = this.backend
      ? choosePattern(this.serviceStatus(), {
          warning: this.actions.warning,
          restoring: this.ender.ending || power?.running?.action === 'restore-now',
          error: power?.state === 'error' || this.ender.error !== null,
        })
      : 'off';
    const patternChanged = pattern !== this.pattern;
    this.pattern = pattern;
    this.led?.show(pattern);
    if (changed || patternChanged) this.emit('change');
  }

  private pinsInUse(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const p of this.pinStatuses()) if (p.error === null) out[p.role] = p.bcm;
    return out;
  }

  private pinStatuses(): GpioPinStatus[] {
    const s = this.settings;
    const chip = this.backend?.info.chip ?? null;
    const rows: [GpioRole, number | null, 'in' | 'out', boolean, () => Level | null][] = [
      ['button', s.button.pin, 'in', s.button.activeLow, () => this.button?.rawLevel() ?? null],
      ['status-led', s.statusLed.pin, 'out', s.statusLed.activeLow, () => (this.led ? this.readLine(s.statusLed.pin) : null)],
      ['power-switch', s.power.switchPin, 'out', s.power.outputsActiveLow, () => (this.power ? this.readLine(s.power.switchPin) : null)],
      ['reset-switch', s.power.resetPin, 'out', s.power.outputsActiveLow, () => (this.power ? this.readLine(s.power.resetPin) : null)],
      ['power-led', s.power.ledPin, 'in', s.power.ledActiveLow, () => this.sense?.rawLevel() ?? null],
    ];
    const pins: GpioPinStatus[] = [];
    for (const [role, bcm, direction, activeLow, read] of rows) {
      if (bcm === null) continue;
      let level: Level | null = null;
      let error = this.backend ? (this.pinErrors.get(role) ?? null) : null;
      if (this.backend && error === null) {
        try {
          level = read();
        } catch (err) {
          error = err instanceof Error ? err.message : String(err);
        }
      }
      pins.push({
        role,
        bcm,
        sysfs: chip ? chip.base + bcm : null,
        direction,
        activeLow,
        level,
        active: level === null ? null : (level === 0) === activeLow,
        error,
      });
    }
    return pins;
  }

  private readLine(pin: number | null): Level | null {
    return pin === null || !this.backend ? null : this.backend.read(pin);
  }
}

function idlePowerStatus(): PowerControllerStatus {
  return { wired: { power: false, reset: false, led: false }, state: 'idle', running: null, error: null, last: null };
}
