/**
 * The gadget's watchdog: every intervalMs it looks at the gadget and repairs what it finds, in
 * this order: a failed session-end resume (bring the medium back); a kernel nbd device whose
 * NBD connection is gone (a fresh device under the medium); a missing medium (insert it); a
 * gadget unbound behind our back, or a host stuck enumerating (unbind and rebind, at most
 * maxRebindsPerHour). Each repair is recorded in the session history.
 */
import { repeat, sleep, type Clock } from '../clock.js';
import { childLogger } from '../logger.js';
import type { GadgetDevice } from './gadget-device.js';
import type { GadgetEvents } from './gadget-events.js';
import type { GadgetSettings } from './gadget-settings.js';
import type { HostWatch } from './host-watch.js';
import type { GadgetSessionEnd } from './session-end-participant.js';

const log = childLogger('gadget');

export interface GadgetWatchdogOptions {
  settings: GadgetSettings['watchdog'];
  clock: Clock;
  device: GadgetDevice;
  host: HostWatch;
  sessionEnd: GadgetSessionEnd;
  events: GadgetEvents;
  /** How many NBD clients the daemon's server has; null when the service cannot say. */
  nbdClientCount: () => number | null;
}

export class GadgetWatchdog {
  private stopTimer: (() => void) | null = null;
  private rebinds: number[] = [];
  private sawUnbound = false;
  private sawNbdLost = false;

  constructor(private readonly o: GadgetWatchdogOptions) {}

  start(): void {
    if (!this.o.settings.enabled || this.stopTimer) return;
    this.stopTimer = repeat(this.o.clock, this.o.settings.intervalMs, () => void this.tick());
  }

  stop(): void {
    this.stopTimer?.();
    this.stopTimer = null;
    this.sawUnbound = this.sawNbdLost = false;
  }

  /** One look at the gadget, queued behind the gadget's other operations. */
  tick(): Promise<void> {
    const { events } = this.o;
    if (!events.running) return Promise.resolve();
    return events.serial(async () => {
      if (!events.running) return;
      try {
        await this.check();
      } catch (err) {
        events.setLastError(`watchdog: ${err instanceof Error ? err.message : String(err)}`);
        log.warn({ err }, 'gadget watchdog');
      }
    });
  }

  private async check(): Promise<void> {
    const { device, host, sessionEnd, events, clock } = this.o;
    const wd = this.o.settings;
    // A session end is under way (the service calls resume() when it is done).
    if (sessionEnd.quiesced) return;
    // A session end whose resume() failed: keep trying to bring the medium back.
    if (sessionEnd.resumeFailed) {
      await sessionEnd.bringBack();
      events.changed();
      return;
    }
    // The kernel's NBD connection is gone: someone disconnected /dev/nbdX, or the NBD server
    // dropped the connection (it then reports no clients; the kernel device still looks
    // connected while the gadget holds it open, and its requests are never answered). The host
    // gets I/O errors or hangs until the device is replaced. Seen on two checks in a row.
    const dev = device.nbdDevice;
    const lost = dev !== null && (!device.nbd.isConnected(dev) || this.o.nbdClientCount() === 0);
    const lostTwice = lost && this.sawNbdLost;
    this.sawNbdLost = lost;
    if (lostTwice) {
      const old = await device.replaceNbd();
      this.sawNbdLost = false;
      events.record(`gadget-watchdog: ${old ?? '?'} lost its NBD connection; the medium is now ${device.nbdDevice ?? '?'}`);
      events.changed();
      return;
    }
    if ((await device.currentMedium()) === '' && device.nbdDevice) {
      await device.attachAndInsert();
      events.record('gadget-watchdog: medium was missing; re-inserted');
      events.changed();
      return;
    }
    const boundTo = await device.boundUdc();
    let why: string | null = null;
    // Unbound on two checks in a row: someone may be unbinding and rebinding by hand (a test
    // re-enumerating the gadget does); that is theirs to finish.
    const unbound = boundTo !== device.udc;
    const unboundTwice = unbound && this.sawUnbound;
    this.sawUnbound = unbound;
    if (unboundTwice) why = `gadget was unbound from ${device.udc} (UDC reads "${boundTo}")`;
    else if (unbound) return;
    else if (host.udcState && host.link === 'attached' && clock.now() - host.stateSince >= wd.stuckEnumerationSeconds * 1000) {
      why = `host stuck in "${host.udcState}" for ${Math.round((clock.now() - host.stateSince) / 1000)} s`;
    }
    if (!why) return;
    const hourAgo = clock.now() - 3_600_000;
    this.rebinds = this.rebinds.filter((t) => t > hourAgo);
    if (this.rebinds.length >= wd.maxRebindsPerHour) {
      if (events.lastError?.startsWith('watchdog: rebind limit') !== true) {
        events.setLastError(`watchdog: rebind limit reached (${wd.maxRebindsPerHour}/h): ${why}`);
        events.record(`gadget-watchdog: ${why}; not rebinding (limit ${wd.maxRebindsPerHour} per hour reached)`);
      }
      return;
    }
    this.rebinds.push(clock.now());
    await this.rebind(why);
  }

  private async rebind(why: string): Promise<void> {
    const { device, host, events, clock } = this.o;
    host.expectOwnReenumeration();
    events.record(`gadget-watchdog: ${why}; unbinding and rebinding ${device.udc}`);
    await device.unbind();
    await sleep(clock, 200);
    await device.bind();
    host.restartStuckTimer();
    events.changed();
    if (this.o.settings.endSession) this.o.sessionEnd.requestEnd('gadget-watchdog', `gadget rebound: ${why}`);
  }
}
