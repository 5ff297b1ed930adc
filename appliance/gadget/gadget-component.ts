/**
 * The daemon's USB gadget component: presents the protected disk to the host as a USB drive
 * (docs/gadget.md). It puts together, each in its own module:
 *   gadget-device.ts            build and tear down (configfs, UDC, kernel nbd device, crash record)
 *   host-watch.ts               the UDC state file and the USB session-end policy (udc-policy.ts)
 *   session-end-participant.ts  the medium out and a fresh nbd device while a session ends
 *   gadget-watchdog.ts          repairs of a stalled or broken gadget
 * and runs their operations one at a time. start() and stop() are idempotent.
 *
 * Events: 'change' () — status() changed.
 */
import { EventEmitter } from 'node:events';
import type { Component } from '../component.js';
import { systemClock, type Clock } from '../clock.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ApplianceService, GadgetStatus } from '../session/appliance-service.js';
import { formatZodIssues } from '../zod-issues.js';
import { defaultRunner, type CommandRunner } from './commands.js';
import { realGadgetFs, type GadgetFs } from './configfs.js';
import { GadgetDevice } from './gadget-device.js';
import { defaultGadgetConfigDir, resolveGadgetDescription, type GadgetDescription } from './gadget-config.js';
import type { GadgetEvents } from './gadget-events.js';
import { DEFAULT_CONFIGFS } from './gadget-probe.js';
import { GadgetSettingsSchema, type GadgetSettings, type GadgetSettingsInput } from './gadget-settings.js';
import { GadgetWatchdog } from './gadget-watchdog.js';
import { HostWatch } from './host-watch.js';
import { GadgetSessionEnd, fail } from './session-end-participant.js';

const log = childLogger('gadget');

export interface GadgetComponentDeps {
  /** Where configfs is mounted (default /sys/kernel/config); usb_gadget/ is inside. */
  configfsRoot?: string;
  /** Where sysfs is mounted (default /sys): class/udc, block/nbd*, module/. */
  sysRoot?: string;
  /** Where device nodes are (default /dev). */
  devRoot?: string;
  /** The daemon's NBD unix socket. */
  nbdSocket: string;
  /** Runs system tools (default: real processes). */
  run?: CommandRunner;
  /** configfs operations (default: node:fs; tests: SimulatedConfigfs). */
  gadgetFs?: GadgetFs;
  /** Time for UDC polling and the watchdog (default: the system clock; tests: a fake one). */
  clock?: Clock;
}

export class GadgetComponent extends EventEmitter implements Component, GadgetEvents {
  readonly name = 'gadget';
  readonly settings: GadgetSettings;
  readonly description: GadgetDescription;
  private readonly device: GadgetDevice;
  private readonly host: HostWatch;
  private readonly sessionEnd: GadgetSessionEnd;
  private readonly watchdog: GadgetWatchdog;
  private queue: Promise<unknown> = Promise.resolve();
  private participantAdded = false;
  private isRunning = false;
  private error: string | null = null;

  constructor(
    private readonly service: ApplianceService,
    settings: GadgetSettingsInput | GadgetSettings,
    deps: GadgetComponentDeps,
  ) {
    super();
    const parsed = GadgetSettingsSchema.safeParse(settings ?? {});
    if (!parsed.success) throw new SnapbackError('BAD_ARGUMENT', `gadget settings: ${formatZodIssues(parsed.error)}`);
    this.settings = parsed.data;
    this.description = resolveGadgetDescription(this.settings.profile, this.settings.overrides, this.settings.configDir ?? defaultGadgetConfigDir());
    const clock = deps.clock ?? systemClock;
    const sysRoot = deps.sysRoot ?? '/sys';
    this.device = new GadgetDevice({
      description: this.description,
      settings: this.settings,
      configfsRoot: deps.configfsRoot ?? DEFAULT_CONFIGFS,
      sysRoot,
      devRoot: deps.devRoot ?? '/dev',
      nbdSocket: deps.nbdSocket,
      run: deps.run ?? defaultRunner,
      gadgetFs: deps.gadgetFs ?? realGadgetFs,
      record: (what) => this.record(what),
    });
    this.host = new HostWatch({ sysRoot, policy: this.settings.policy, clock, events: this, endSession: (reason, note) => this.sessionEnd.requestEnd(reason, note) });
    this.sessionEnd = new GadgetSessionEnd({ service, device: this.device, host: this.host, events: this, reconnectOnUsbSessionEnd: this.settings.reconnectOnUsbSessionEnd });
    this.watchdog = new GadgetWatchdog({
      settings: this.settings.watchdog,
      clock,
      device: this.device,
      host: this.host,
      sessionEnd: this.sessionEnd,
      events: this,
      nbdClientCount: () => this.nbdClientCount(),
    });
  }

  status(): GadgetStatus {
    const d = this.device;
    return { enabled: this.isRunning, udc: d.udc, udcState: this.host.udcState, bound: d.bound, nbdDevice: d.devPath(), medium: d.medium, lastError: this.error };
  }

  start(): Promise<void> {
    return this.serial(async () => {
      if (this.isRunning) return;
      try {
        await this.device.build();
      } catch (err) {
        const e = fail(this, 'starting the USB gadget', err);
        log.error({ err: e }, 'gadget start failed');
        await this.device.teardown().catch((t: unknown) => log.warn({ err: t }, 'teardown after a failed start'));
        throw e;
      }
      this.isRunning = true;
      this.error = null;
      if (!this.participantAdded) {
        this.participantAdded = true;
        this.service.addSessionEndParticipant(this.sessionEnd);
      }
      this.host.start(this.device.udc!);
      this.watchdog.start();
      this.record(`gadget: bound to ${this.device.udc} (profile ${this.settings.profile}, ${this.device.devPath() ?? '?'})`);
      this.connectionChanged();
    });
  }

  stop(): Promise<void> {
    return this.serial(async () => {
      this.host.stop();
      this.watchdog.stop();
      this.sessionEnd.reset();
      const wasRunning = this.isRunning;
      this.isRunning = false;
      try {
        await this.device.teardown();
      } catch (err) {
        throw fail(this, 'stopping the USB gadget', err);
      }
      if (wasRunning) {
        this.record('gadget: unbound and removed');
        this.connectionChanged();
      }
    });
  }

  // ---- GadgetEvents: what the parts tell the component ----------------------------------

  get running(): boolean {
    return this.isRunning;
  }

  get lastError(): string | null {
    return this.error;
  }

  setLastError(message: string | null): void {
    this.error = message;
    this.changed();
  }

  serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  changed(): void {
    this.emit('change');
  }

  connectionChanged(): void {
    try {
      this.service.setHostConnection(this.isRunning ? this.host.link : 'absent', this.status());
    } catch (err) {
      log.warn({ err }, 'setHostConnection failed');
    }
    this.changed();
  }

  record(what: string): void {
    log.info({ event: what }, 'gadget event');
    try {
      this.service.recordHostEvent(what);
    } catch (err) {
      log.warn({ err }, 'recordHostEvent failed');
    }
  }

  // ---- for tests that drive time with a fake clock ---------------------------------------

  /** Reads the UDC state file now and applies what it says. */
  readHostState(): Promise<void> {
    return this.host.readNow();
  }

  /** Resolves once every operation queued so far (session-end steps, repairs) is done. */
  idle(): Promise<void> {
    return this.serial(async () => undefined);
  }

  private nbdClientCount(): number | null {
    try {
      const n = this.service.status().host.nbdClients;
      return typeof n === 'number' ? n : null;
    } catch {
      return null;
    }
  }
}
