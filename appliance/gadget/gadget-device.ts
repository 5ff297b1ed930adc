/**
 * The USB gadget as the kernel holds it: the configfs gadget, its UDC binding, the kernel nbd
 * device behind its medium, and the crash-recovery record. Builds and tears down (whatever an
 * earlier run left included), and carries the few facts the status shows: which UDC, which nbd
 * device, bound or not, medium in or out.
 */
import { existsSync, readdirSync } from 'node:fs';
import * as path from 'node:path';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import { describeFailure, runTool, type CommandRunner } from './commands.js';
import { realGadgetFs, type GadgetFs } from './configfs.js';
import { GadgetBuilder } from './gadget-builder.js';
import { autoSerial, type GadgetDescription } from './gadget-config.js';
import type { GadgetSettings } from './gadget-settings.js';
import { NbdDevices } from './nbd-device.js';
import { RuntimeRecordFile } from './runtime-record.js';

const log = childLogger('gadget');
const MODULES = ['libcomposite', 'usb_f_mass_storage', 'nbd'];

export interface GadgetDeviceOptions {
  description: GadgetDescription;
  settings: GadgetSettings;
  configfsRoot: string;
  sysRoot: string;
  devRoot: string;
  nbdSocket: string;
  run: CommandRunner;
  gadgetFs: GadgetFs;
  /** Records a host-side event in the session history. */
  record: (what: string) => void;
}

export class GadgetDevice {
  readonly builder: GadgetBuilder;
  readonly nbd: NbdDevices;
  private readonly runtime: RuntimeRecordFile;
  udc: string | null = null;
  nbdDevice: string | null = null;
  bound = false;
  medium: 'inserted' | 'ejected' = 'ejected';

  constructor(private readonly o: GadgetDeviceOptions) {
    this.builder = new GadgetBuilder(o.gadgetFs, o.configfsRoot);
    this.nbd = new NbdDevices({ run: o.run, sysRoot: o.sysRoot, devRoot: o.devRoot });
    this.runtime = new RuntimeRecordFile(o.settings.runtimeDir, o.description.name);
  }

  private get name(): string {
    return this.o.description.name;
  }

  /** The UDC the gadget is bound to as configfs shows it ('' when unbound). */
  boundUdc(): Promise<string> {
    return this.builder.boundUdc(this.name);
  }

  /** The medium's file as configfs shows it ('' when ejected). */
  currentMedium(): Promise<string> {
    return this.builder.medium(this.name);
  }

  /** Modules, configfs, the UDC, leftovers of an earlier run cleaned up, then the gadget built and bound. */
  async build(): Promise<void> {
    await this.loadModules();
    await this.ensureConfigfs();
    this.udc = this.pickUdc();
    await this.cleanupLeftovers();
    const d = this.o.description;
    const serial = d.strings.serialnumber === 'auto' ? autoSerial() : d.strings.serialnumber;
    await this.builder.create(d, serial);
    await this.attachAndInsert();
    await this.bind();
  }

  /** Removes the gadget and the nbd attachment; every step is tried, the first error thrown. */
  async teardown(): Promise<void> {
    const errors: unknown[] = [];
    try {
      await this.builder.remove(this.name);
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
    await this.runtime.remove().catch(() => undefined);
    if (errors.length > 0) throw errors[0];
  }

  async bind(): Promise<void> {
    await this.builder.bind(this.name, this.udc!);
    this.bound = true;
  }

  async unbind(): Promise<void> {
    await this.builder.unbind(this.name);
    this.bound = false;
  }

  async ejectMedium(): Promise<void> {
    await this.builder.ejectMedium(this.name);
    this.medium = 'ejected';
  }

  /** Flushes and disconnects the nbd device (its page cache holds the old session). */
  async releaseNbd(): Promise<void> {
    if (!this.nbdDevice) return;
    const dev = this.nbdDevice;
    const flushErr = await this.nbd.flush(dev);
    if (flushErr) log.warn({ flushErr }, 'flushing the nbd device before the session end');
    await this.nbd.detach(dev, { flush: false });
    this.nbdDevice = null;
    await this.writeRuntime();
  }

  /** A connected nbd device (a fresh one if there is none) and the medium pointing at it. */
  async attachAndInsert(): Promise<void> {
    if (!this.nbdDevice || !this.nbd.isConnected(this.nbdDevice)) {
      if (this.nbdDevice) await this.nbd.detach(this.nbdDevice, { flush: false }).catch(() => undefined);
      this.nbdDevice = await this.nbd.attach(this.o.nbdSocket, this.o.description.massStorage.logicalBlockSize, this.o.settings.nbdDevice ?? undefined);
      await this.writeRuntime();
    }
    const dev = this.nbd.devPath(this.nbdDevice);
    if ((await this.builder.medium(this.name)) !== dev) {
      await this.builder.ejectMedium(this.name);
      await this.builder.insertMedium(this.name, dev);
    }
    this.medium = 'inserted';
  }

  /**
   * Replaces an nbd device whose NBD connection is gone: disconnect it first (that fails the
   * requests the mass-storage thread may be blocked on), attach a fresh one under the medium.
   * Returns the old device's name.
   */
  async replaceNbd(): Promise<string | null> {
    const old = this.nbdDevice;
    if (!old) return null;
    await this.nbd.detach(old, { flush: false, wait: false }).catch(() => undefined);
    this.nbdDevice = null;
    await this.attachAndInsert(); // a fresh device; ejecting the old one closes it
    await this.nbd.waitDisconnected(old);
    return old;
  }

  devPath(): string | null {
    return this.nbdDevice ? this.nbd.devPath(this.nbdDevice) : null;
  }

  private async loadModules(): Promise<void> {
    for (const m of MODULES) {
      if (existsSync(path.join(this.o.sysRoot, 'module', m))) continue;
      const r = await runTool(this.o.run, 'modprobe', [m]);
      if (r.code !== 0 && !existsSync(path.join(this.o.sysRoot, 'module', m))) {
        // Built in, or loaded under another name: what matters is what it provides, checked next.
        log.warn({ module: m, result: describeFailure('modprobe', [m], r) }, 'modprobe failed');
      }
    }
  }

  private async ensureConfigfs(): Promise<void> {
    const gadgets = path.join(this.o.configfsRoot, 'usb_gadget');
    if (await this.o.gadgetFs.exists(gadgets)) return;
    if (this.o.gadgetFs === realGadgetFs && existsSync(this.o.configfsRoot)) {
      const r = await runTool(this.o.run, 'mount', ['-t', 'configfs', 'configfs', this.o.configfsRoot]);
      if (r.code !== 0) log.warn({ result: describeFailure('mount', ['-t', 'configfs'], r) }, 'mounting configfs failed');
    }
    if (!(await this.o.gadgetFs.exists(gadgets))) {
      throw new SnapbackError('NOT_SUPPORTED', `${gadgets} does not exist: configfs is not mounted or libcomposite is not loaded`);
    }
  }

  private pickUdc(): string {
    let udcs: string[] = [];
    try {
      udcs = readdirSync(path.join(this.o.sysRoot, 'class', 'udc')).sort();
    } catch {
      udcs = [];
    }
    const want = this.o.settings.udc;
    if (want) {
      if (!udcs.includes(want)) throw new SnapbackError('NOT_SUPPORTED', `USB device controller ${want} not found (have: ${udcs.join(', ') || 'none'})`);
      return want;
    }
    const first = udcs[0];
    if (!first) throw new SnapbackError('NOT_SUPPORTED', `no USB device controller in ${path.join(this.o.sysRoot, 'class', 'udc')}`);
    return first;
  }

  private async writeRuntime(): Promise<void> {
    await this.runtime.write({ gadget: this.name, udc: this.udc ?? '', nbdDevice: this.nbdDevice, socket: this.o.nbdSocket, pid: process.pid });
  }

  /** Removes a gadget and nbd attachment an earlier run left behind (a crash, a kill -9). */
  private async cleanupLeftovers(): Promise<void> {
    const name = this.name;
    const rec = await this.runtime.read();
    const snap = await this.builder.snapshot(name);
    const devices = new Set<string>();
    if (rec?.nbdDevice) devices.add(rec.nbdDevice);
    for (const file of Object.values(snap.luns)) {
      const m = /\/(nbd\d+)$/.exec(file);
      if (m?.[1]) devices.add(m[1]);
    }
    if (!snap.exists && devices.size === 0) return;
    this.o.record(`gadget: cleaning up what an earlier run left (${snap.exists ? `gadget ${name}${snap.udc ? ` bound to ${snap.udc}` : ''}` : 'no gadget'}${devices.size ? `, ${[...devices].join(', ')}` : ''})`);
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
    await this.runtime.remove();
  }
}
