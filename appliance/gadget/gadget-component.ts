/**
 * The daemon's USB gadget component: presents the protected disk to the host as a USB drive
 * (docs/architecture.md: topology, sessions; docs/gadget.md).
 *
 * start():  load libcomposite, usb_f_mass_storage, nbd → mount configfs if needed → clean up
 *           whatever an earlier run left (a crash can stop anywhere) → attach a free
 *           /dev/nbdN to the daemon's NBD socket → build the gadget from gadget-config/ →
 *           lun.0/file = /dev/nbdN → bind the UDC → watch the UDC state, run the watchdog.
 * stop():   the reverse. Both are idempotent.
 * As a session-end participant: quiesce() = forced_eject, flush and disconnect /dev/nbdN (its
 *           page cache holds the old session); resume() = attach again, flush, re-insert.
 * The UDC state policy (udc-policy.ts) decides which host transitions end a session; every
 * transition is recorded in the session history. The watchdog rebinds a stalled gadget.
 *
 * Events: 'change' () — status() changed.
 */
import { EventEmitter } from 'node:events';
import { existsSync, readdirSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Component } from '../component.js';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';
import { childLogger } from '../logger.js';
import type { ApplianceService, GadgetStatus, SessionEndParticipant } from '../session/appliance-service.js';
import { defaultRunner, describeFailure, runTool, type CommandRunner } from './commands.js';
import { realGadgetFs, type GadgetFs } from './configfs.js';
import { GadgetBuilder } from './gadget-builder.js';
import { autoSerial, defaultGadgetConfigDir, resolveGadgetDescription, type GadgetDescription } from './gadget-config.js';
import { NbdDevices } from './nbd-device.js';
import { DEFAULT_CONFIGFS } from './gadget-probe.js';
import { GadgetSettingsSchema, type GadgetSettings, type GadgetSettingsInput } from './gadget-settings.js';
import { UdcStatePolicy, hostLinkOf, type UdcDecision } from './udc-policy.js';
import { UdcWatcher } from './udc-watcher.js';

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
  now?: () => number;
}

const MODULES = ['libcomposite', 'usb_f_mass_storage', 'nbd'];

interface RuntimeRecord {
  gadget: string;
  udc: string;
  nbdDevice: string | null;
  socket: string;
  pid: number;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class GadgetComponent extends EventEmitter implements Component {
  readonly name = 'gadget';
  readonly settings: GadgetSettings;
  readonly description: GadgetDescription;
  private readonly configfsRoot: string;
  private readonly sysRoot: string;
  private readonly run: CommandRunner;
  private readonly gfs: GadgetFs;
  private readonly builder: GadgetBuilder;
  private readonly nbd: NbdDevices;
  private readonly now: () => number;
  private readonly socket: string;

  private running = false;
  private udc: string | null = null;
  private nbdDevice: string | null = null;
  private udcState: string | null = null;
  private bound = false;
  private medium: 'inserted' | 'ejected' = 'ejected';
  private lastError: string | null = null;
  /** Between quiesce() and resume(): the medium is out on purpose; the watchdog keeps off. */
  private quiesced = false;
  /** resume() failed: the watchdog keeps trying to bring the medium back. */
  private resumeFailed = false;
  private participantAdded = false;
  private queue: Promise<unknown> = Promise.resolve();
  private watcher: UdcWatcher | null = null;
  private watchdogTimer: NodeJS.Timeout | null = null;
  private policy: UdcStatePolicy;
  /** When the host entered the state it is in (for the stuck-enumeration watchdog). */
  private stateSince = 0;
  private rebinds: number[] = [];
  /** The session end under way was asked for by the USB policy or the watchdog. */
  private usbEndPending = false;
  /** quiesce() unbound the UDC; resume() binds it again. */
  private disconnectedForEnd = false;
  private sawUnbound = false;
  private sawNbdLost = false;
  private endInFlight = false;

  constructor(
    private readonly service: ApplianceService,
    settings: GadgetSettingsInput | GadgetSettings,
    deps: GadgetComponentDeps,
  ) {
    super();
    const parsed = GadgetSettingsSchema.safeParse(settings ?? {});
    if (!parsed.success) {
      throw new SnapbackError('BAD_ARGUMENT', `gadget settings: ${formatZodIssues(parsed.error)}`);
    }
    this.settings = parsed.data;
    this.description = resolveGadgetDescription(
      this.settings.profile,
      this.settings.overrides,
      this.settings.configDir ?? defaultGadgetConfigDir(),
    );
    this.configfsRoot = deps.configfsRoot ?? DEFAULT_CONFIGFS;
    this.sysRoot = deps.sysRoot ?? '/sys';
    this.run = deps.run ?? defaultRunner;
    this.gfs = deps.gadgetFs ?? realGadgetFs;
    this.now = deps.now ?? Date.now;
    this.socket = deps.nbdSocket;
    this.builder = new GadgetBuilder(this.gfs, this.configfsRoot);
    this.nbd = new NbdDevices({ run: this.run, sysRoot: this.sysRoot, devRoot: deps.devRoot ?? '/dev' });
    this.policy = new UdcStatePolicy(this.settings.policy);
  }

  status(): GadgetStatus {
    return {
      enabled: this.running,
      udc: this.udc,
      udcState: this.udcState,
      bound: this.bound,
      nbdDevice: this.nbdDevice ? this.nbd.devPath(this.nbdDevice) : null,
      medium: this.medium,
      lastError: this.lastError,
    };
  }

  /** Runs `fn` after every operation queued before it (start, stop, quiesce, resume, repairs). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private changed(): void {
    this.emit('change');
  }

  private publishConnection(): void {
    const link = this.running ? hostLinkOf(this.udcState) : 'absent';
    try {
      this.service.setHostConnection(link, this.status());
    } catch (err) {
      log.warn({ err }, 'setHostConnection failed');
    }
    this.changed();
  }

  private record(what: string): void {
    log.info({ event: what }, 'gadget event');
    try {
      this.service.recordHostEvent(what);
    } catch (err) {
      log.warn({ err }, 'recordHostEvent failed');
    }
  }

  private fail(what: string, err: unknown): SnapbackError {
    const e = err instanceof SnapbackError ? err : new SnapbackError('IO_ERROR', `${what}: ${message(err)}`, undefined, { cause: err });
    this.lastError = e.message;
    this.changed();
    return e;
  }

  start(): Promise<void> {
    return this.serial(async () => {
      if (this.running) return;
      try {
        await this.loadModules();
        await this.ensureConfigfs();
        this.udc = this.pickUdc();
        await this.cleanupLeftovers();
        await this.build();
      } catch (err) {
        const e = this.fail('starting the USB gadget', err);
        log.error({ err: e }, 'gadget start failed');
        await this.teardown().catch((t: unknown) => log.warn({ err: t }, 'teardown after a failed start'));
        throw e;
      }
      this.running = true;
      this.lastError = null;
      if (!this.participantAdded) {
        this.participantAdded = true;
        const participant: SessionEndParticipant = { name: 'usb-gadget', quiesce: () => this.quiesce(), resume: () => this.resume() };
        this.service.addSessionEndParticipant(participant);
      }
      this.policy = new UdcStatePolicy(this.settings.policy);
      // The enumeration that follows our own bind is not a host re-enumeration (the state file
      // may still show the previous binding's "configured" when the watcher first reads it).
      this.policy.expectOwnReenumeration(this.now() + 30_000);
      this.udcState = null;
      this.stateSince = this.now();
      this.watcher = new UdcWatcher({
        sysRoot: this.sysRoot,
        udc: this.udc,
        intervalMs: this.settings.policy.pollIntervalMs,
        now: this.now,
        onRead: (state, at) => this.onUdcRead(state, at),
        onError: (err) => log.warn({ err }, 'cannot read the UDC state'),
      });
      this.watcher.start();
      if (this.settings.watchdog.enabled) {
        this.watchdogTimer = setInterval(() => void this.watchdogTick(), this.settings.watchdog.intervalMs);
        this.watchdogTimer.unref?.();
      }
      this.record(`gadget: bound to ${this.udc} (profile ${this.settings.profile}, ${this.nbd.devPath(this.nbdDevice ?? '?')})`);
      this.publishConnection();
    });
  }

  stop(): Promise<void> {
    return this.serial(async () => {
      this.watcher?.stop();
      this.watcher = null;
      if (this.watchdogTimer) clearInterval(this.watchdogTimer);
      this.watchdogTimer = null;
      const wasRunning = this.running;
      this.running = false;
      try {
        await this.teardown();
      } catch (err) {
        throw this.fail('stopping the USB gadget', err);
      }
      if (wasRunning) {
        this.record('gadget: unbound and removed');
        this.publishConnection();
      }
    });
  }

  /** Session end, step 1: the host stops reading and writing; no page cache survives. */
  quiesce(): Promise<void> {
    return this.serial(async () => {
      if (!this.running) return;
      this.quiesced = true;
      try {
        if (this.usbEndPending && this.settings.reconnectOnUsbSessionEnd) {
          // The host is (re)booting or gone: leave the bus until the new session's medium is
          // in, so that it enumerates a ready drive rather than one without a medium.
          await this.builder.unbind(this.description.name);
          this.bound = false;
          this.disconnectedForEnd = true;
        }
        await this.builder.ejectMedium(this.description.name);
        this.medium = 'ejected';
        if (this.nbdDevice) {
          const dev = this.nbdDevice;
          const flushErr = await this.nbd.flush(dev);
          if (flushErr) log.warn({ flushErr }, 'flushing the nbd device before the session end');
          await this.nbd.detach(dev, { flush: false });
          this.nbdDevice = null;
          await this.writeRuntime();
        }
      } catch (err) {
        // The session end stops here (it would not be safe); the watchdog brings the medium back.
        this.quiesced = false;
        this.resumeFailed = true;
        throw this.fail('ejecting the medium for the session end', err);
      }
      this.changed();
    });
  }

  /** Session end, last step: a fresh nbd attachment (empty page cache), medium back in. */
  resume(): Promise<void> {
    return this.serial(async () => {
      if (!this.running) return;
      this.quiesced = false;
      this.usbEndPending = false;
      try {
        await this.attachAndInsert();
        if (this.disconnectedForEnd) {
          this.policy.expectOwnReenumeration(this.now() + 30_000);
          await this.builder.bind(this.description.name, this.udc!);
          this.bound = true;
          this.disconnectedForEnd = false;
          this.stateSince = this.now();
        }
        this.resumeFailed = false;
        this.lastError = null;
      } catch (err) {
        // The watchdog retries.
        this.resumeFailed = true;
        throw this.fail('re-inserting the medium after the session end', err);
      }
      this.changed();
    });
  }

  // ---- building and tearing down -------------------------------------------------------

  private async loadModules(): Promise<void> {
    for (const m of MODULES) {
      if (existsSync(path.join(this.sysRoot, 'module', m))) continue;
      const r = await runTool(this.run, 'modprobe', [m]);
      if (r.code !== 0 && !existsSync(path.join(this.sysRoot, 'module', m))) {
        // Built in, or loaded under another name: what matters is what it provides, checked next.
        log.warn({ module: m, result: describeFailure('modprobe', [m], r) }, 'modprobe failed');
      }
    }
  }

  private async ensureConfigfs(): Promise<void> {
    const gadgets = path.join(this.configfsRoot, 'usb_gadget');
    if (await this.gfs.exists(gadgets)) return;
    if (this.gfs === realGadgetFs && existsSync(this.configfsRoot)) {
      const r = await runTool(this.run, 'mount', ['-t', 'configfs', 'configfs', this.configfsRoot]);
      if (r.code !== 0) log.warn({ result: describeFailure('mount', ['-t', 'configfs'], r) }, 'mounting configfs failed');
    }
    if (!(await this.gfs.exists(gadgets))) {
      throw new SnapbackError('NOT_SUPPORTED', `${gadgets} does not exist: configfs is not mounted or libcomposite is not loaded`);
    }
  }

  private pickUdc(): string {
    let udcs: string[] = [];
    try {
      udcs = readdirSync(path.join(this.sysRoot, 'class', 'udc')).sort();
    } catch {
      udcs = [];
    }
    const want = this.settings.udc;
    if (want) {
      if (!udcs.includes(want)) throw new SnapbackError('NOT_SUPPORTED', `USB device controller ${want} not found (have: ${udcs.join(', ') || 'none'})`);
      return want;
    }
    const first = udcs[0];
    if (!first) throw new SnapbackError('NOT_SUPPORTED', `no USB device controller in ${path.join(this.sysRoot, 'class', 'udc')}`);
    return first;
  }

  private runtimeFile(): string {
    return path.join(this.settings.runtimeDir, `gadget-${this.description.name}.json`);
  }

  private async writeRuntime(): Promise<void> {
    const rec: RuntimeRecord = { gadget: this.description.name, udc: this.udc ?? '', nbdDevice: this.nbdDevice, socket: this.socket, pid: process.pid };
    try {
      await fs.mkdir(this.settings.runtimeDir, { recursive: true });
      const tmp = `${this.runtimeFile()}.tmp`;
      await fs.writeFile(tmp, JSON.stringify(rec) + '\n');
      await fs.rename(tmp, this.runtimeFile());
    } catch (err) {
      log.warn({ err }, 'cannot write the gadget runtime record');
    }
  }

  private async readRuntime(): Promise<RuntimeRecord | null> {
    try {
      return JSON.parse(await fs.readFile(this.runtimeFile(), 'utf8')) as RuntimeRecord;
    } catch {
      return null;
    }
  }

  /** Removes a gadget and nbd attachment an earlier run left behind (a crash, a kill -9). */
  private async cleanupLeftovers(): Promise<void> {
    const name = this.description.name;
    const rec = await this.readRuntime();
    const snap = await this.builder.snapshot(name);
    const devices = new Set<string>();
    if (rec?.nbdDevice) devices.add(rec.nbdDevice);
    for (const file of Object.values(snap.luns)) {
      const m = /\/(nbd\d+)$/.exec(file);
      if (m?.[1]) devices.add(m[1]);
    }
    if (!snap.exists && devices.size === 0) return;
    this.record(`gadget: cleaning up what an earlier run left (${snap.exists ? `gadget ${name}${snap.udc ? ` bound to ${snap.udc}` : ''}` : 'no gadget'}${devices.size ? `, ${[...devices].join(', ')}` : ''})`);
    // The nbd devices first: their server is gone, and the mass-storage thread may be blocked
    // on a request it will never answer (an nbd device without a timeout waits forever), which
    // would block the unbind too. Disconnecting fails those requests. No flush: the dirty pages
    // cannot be written back any more (they were never acknowledged as flushed to the host).
    for (const dev of devices) {
      if (this.nbd.isConnected(dev)) await this.nbd.detach(dev, { flush: false, wait: false });
    }
    if (snap.exists) await this.builder.remove(name);
    for (const dev of devices) {
      if (!(await this.nbd.waitDisconnected(dev))) log.warn({ device: dev }, 'an nbd device left by an earlier run still shows a connection');
    }
    await fs.rm(this.runtimeFile(), { force: true });
  }

  private async build(): Promise<void> {
    const name = this.description.name;
    const serial = this.description.strings.serialnumber === 'auto' ? autoSerial() : this.description.strings.serialnumber;
    await this.builder.create(this.description, serial);
    await this.attachAndInsert();
    await this.builder.bind(name, this.udc!);
    this.bound = true;
  }

  private async attachAndInsert(): Promise<void> {
    if (!this.nbdDevice || !this.nbd.isConnected(this.nbdDevice)) {
      if (this.nbdDevice) await this.nbd.detach(this.nbdDevice, { flush: false }).catch(() => undefined);
      this.nbdDevice = await this.nbd.attach(this.socket, this.description.massStorage.logicalBlockSize, this.settings.nbdDevice ?? undefined);
      await this.writeRuntime();
    }
    const dev = this.nbd.devPath(this.nbdDevice);
    if ((await this.builder.medium(this.description.name)) !== dev) {
      await this.builder.ejectMedium(this.description.name);
      await this.builder.insertMedium(this.description.name, dev);
    }
    this.medium = 'inserted';
  }

  private async teardown(): Promise<void> {
    const errors: unknown[] = [];
    try {
      await this.builder.remove(this.description.name);
    } catch (err) {
      errors.push(err);
    }
    this.bound = false;
    this.medium = 'ejected';
    if (this.nbdDevice) {
      try {
        await this.nbd.detach(this.nbdDevice);
      } catch (err) {
        errors.push(err);
      }
      this.nbdDevice = null;
    }
    await fs.rm(this.runtimeFile(), { force: true }).catch(() => undefined);
    if (errors.length > 0) throw errors[0];
  }

  // ---- host detection ------------------------------------------------------------------

  private onUdcRead(state: string, at: number): void {
    if (!this.running) return;
    this.apply(state === this.udcState ? this.policy.tick(at) : this.policy.observe(state, at));
  }

  private apply(decisions: UdcDecision[]): void {
    let connectionChanged = false;
    for (const d of decisions) {
      switch (d.kind) {
        case 'transition':
          this.udcState = d.to;
          this.stateSince = d.atMs;
          this.record(`usb: ${d.from ?? '(start)'} → ${d.to}`);
          break;
        case 'connection':
          connectionChanged = true;
          break;
        case 'kept':
          this.record(`usb: ${d.note}`);
          break;
        case 'end-session':
          this.record(`usb: ${d.note}: ending the host session`);
          this.requestSessionEnd('usb-reconnect', d.note);
          break;
      }
    }
    if (connectionChanged) this.publishConnection();
  }

  private requestSessionEnd(reason: 'usb-reconnect' | 'gadget-watchdog', note: string): void {
    if (this.endInFlight) {
      this.record(`usb: a session end is already under way; ${note} adds nothing`);
      return;
    }
    this.endInFlight = true;
    this.usbEndPending = true;
    // Not awaited here: the service calls quiesce()/resume(), which queue behind this caller.
    this.service
      .endSession(reason, note)
      .catch((err: unknown) => {
        this.lastError = `session end (${reason}) failed: ${message(err)}`;
        log.error({ err }, 'session end requested by the gadget failed');
        this.changed();
      })
      .finally(() => {
        this.endInFlight = false;
        this.usbEndPending = false;
      });
  }

  // ---- watchdog ------------------------------------------------------------------------

  /** How many NBD clients the daemon's server has; null when the service cannot say. */
  private nbdClientCount(): number | null {
    try {
      const n = this.service.status().host.nbdClients;
      return typeof n === 'number' ? n : null;
    } catch {
      return null;
    }
  }

  private watchdogTick(): void {
    if (!this.running) return;
    void this.serial(async () => {
      if (!this.running) return;
      try {
        await this.check();
      } catch (err) {
        this.lastError = `watchdog: ${message(err)}`;
        log.warn({ err }, 'gadget watchdog');
        this.changed();
      }
    });
  }

  private async check(): Promise<void> {
    const name = this.description.name;
    const wd = this.settings.watchdog;
    // A session end is under way (the service calls resume() when it is done).
    if (this.quiesced) return;
    // A session end whose resume() failed: keep trying to bring the medium back.
    if (this.resumeFailed) {
      await this.attachAndInsert();
      if (this.disconnectedForEnd || (await this.builder.boundUdc(this.description.name)) === '') {
        this.policy.expectOwnReenumeration(this.now() + 30_000);
        await this.builder.bind(this.description.name, this.udc!);
        this.bound = true;
        this.disconnectedForEnd = false;
      }
      this.resumeFailed = false;
      this.record('gadget-watchdog: medium re-inserted after a failed session-end resume');
      this.lastError = null;
      this.changed();
      return;
    }
    // The kernel's NBD connection is gone: someone disconnected /dev/nbdX, or the NBD server
    // dropped the connection (it then reports no clients; the kernel device still looks
    // connected while the gadget holds it open, and its requests are never answered). The host
    // gets I/O errors or hangs until the device is replaced. Seen on two checks in a row.
    const lost = this.nbdDevice !== null && (!this.nbd.isConnected(this.nbdDevice) || this.nbdClientCount() === 0);
    const lostTwice = lost && this.sawNbdLost;
    this.sawNbdLost = lost;
    if (lostTwice && this.nbdDevice) {
      const old = this.nbdDevice;
      // Disconnect first: that fails the requests the mass-storage thread may be blocked on.
      await this.nbd.detach(old, { flush: false, wait: false }).catch(() => undefined);
      this.nbdDevice = null;
      await this.attachAndInsert(); // a fresh device; ejecting the old one closes it
      await this.nbd.waitDisconnected(old);
      this.sawNbdLost = false;
      this.record(`gadget-watchdog: ${old} lost its NBD connection; the medium is now ${this.nbdDevice ?? '?'}`);
      this.changed();
      return;
    }
    if ((await this.builder.medium(name)) === '' && this.nbdDevice) {
      await this.attachAndInsert();
      this.record('gadget-watchdog: medium was missing; re-inserted');
      this.changed();
      return;
    }
    const boundTo = await this.builder.boundUdc(name);
    let why: string | null = null;
    // Unbound on two checks in a row: someone may be unbinding and rebinding by hand (a test
    // re-enumerating the gadget does); that is theirs to finish.
    const unbound = boundTo !== this.udc;
    const unboundTwice = unbound && this.sawUnbound;
    this.sawUnbound = unbound;
    if (unboundTwice) why = `gadget was unbound from ${this.udc} (UDC reads "${boundTo}")`;
    else if (unbound) return;
    else if (this.udcState && hostLinkOf(this.udcState) === 'attached' && this.now() - this.stateSince >= wd.stuckEnumerationSeconds * 1000) {
      why = `host stuck in "${this.udcState}" for ${Math.round((this.now() - this.stateSince) / 1000)} s`;
    }
    if (!why) return;
    const hourAgo = this.now() - 3_600_000;
    this.rebinds = this.rebinds.filter((t) => t > hourAgo);
    if (this.rebinds.length >= wd.maxRebindsPerHour) {
      if (this.lastError?.startsWith('watchdog: rebind limit') !== true) {
        this.lastError = `watchdog: rebind limit reached (${wd.maxRebindsPerHour}/h): ${why}`;
        this.record(`gadget-watchdog: ${why}; not rebinding (limit ${wd.maxRebindsPerHour} per hour reached)`);
        this.changed();
      }
      return;
    }
    this.rebinds.push(this.now());
    await this.rebind(why);
  }

  private async rebind(why: string): Promise<void> {
    const name = this.description.name;
    this.policy.expectOwnReenumeration(this.now() + 30_000);
    this.record(`gadget-watchdog: ${why}; unbinding and rebinding ${this.udc}`);
    await this.builder.unbind(name);
    this.bound = false;
    await sleep(200);
    await this.builder.bind(name, this.udc!);
    this.bound = true;
    this.stateSince = this.now();
    this.changed();
    if (this.settings.watchdog.endSession) this.requestSessionEnd('gadget-watchdog', `gadget rebound: ${why}`);
  }
}
