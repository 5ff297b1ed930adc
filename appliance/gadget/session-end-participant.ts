/**
 * The gadget's part in a host session end. quiesce(): the medium out (forced_eject), the nbd
 * device flushed and disconnected (its page cache holds the old session); when the USB policy
 * or the watchdog asked for the end, the host is rebooting or gone, so the gadget also leaves
 * the bus. resume(): a fresh nbd attachment, the medium back in, on the bus again. A failed
 * resume is left to the watchdog (bringBack()).
 */
import type { ApplianceService, SessionEndParticipant } from '../session/appliance-service.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { GadgetDevice } from './gadget-device.js';
import type { GadgetEvents } from './gadget-events.js';
import type { HostWatch } from './host-watch.js';

const log = childLogger('gadget');

export interface GadgetSessionEndOptions {
  service: ApplianceService;
  device: GadgetDevice;
  host: HostWatch;
  events: GadgetEvents;
  /** Leave the bus during session ends the USB policy or the watchdog asked for. */
  reconnectOnUsbSessionEnd: boolean;
}

export class GadgetSessionEnd implements SessionEndParticipant {
  readonly name = 'usb-gadget';
  /** Between quiesce() and resume(): the medium is out on purpose; the watchdog keeps off. */
  quiesced = false;
  /** resume() failed: the watchdog keeps trying to bring the medium back. */
  resumeFailed = false;
  /** quiesce() unbound the UDC; resume() binds it again. */
  private disconnected = false;
  /** The session end under way was asked for by the USB policy or the watchdog. */
  private usbEndPending = false;
  private endInFlight = false;

  constructor(private readonly o: GadgetSessionEndOptions) {}

  /** Asks the service to end the host session (not awaited: it calls quiesce/resume, queued behind the caller). */
  requestEnd(reason: 'usb-reconnect' | 'gadget-watchdog', note: string): void {
    if (this.endInFlight) {
      this.o.events.record(`usb: a session end is already under way; ${note} adds nothing`);
      return;
    }
    this.endInFlight = true;
    this.usbEndPending = true;
    this.o.service
      .endSession(reason, note)
      .catch((err: unknown) => {
        this.o.events.setLastError(`session end (${reason}) failed: ${message(err)}`);
        log.error({ err }, 'session end requested by the gadget failed');
      })
      .finally(() => {
        this.endInFlight = false;
        this.usbEndPending = false;
      });
  }

  quiesce(): Promise<void> {
    const { device, events } = this.o;
    return events.serial(async () => {
      if (!events.running) return;
      this.quiesced = true;
      try {
        if (this.usbEndPending && this.o.reconnectOnUsbSessionEnd) {
          // The host is (re)booting or gone: leave the bus until the new session's medium is
          // in, so that it enumerates a ready drive rather than one without a medium.
          await device.unbind();
          this.disconnected = true;
        }
        await device.ejectMedium();
        await device.releaseNbd();
      } catch (err) {
        // The session end stops here (it would not be safe); the watchdog brings the medium back.
        this.quiesced = false;
        this.resumeFailed = true;
        throw fail(events, 'ejecting the medium for the session end', err);
      }
      events.changed();
    });
  }

  resume(): Promise<void> {
    const { events } = this.o;
    return events.serial(async () => {
      if (!events.running) return;
      this.quiesced = false;
      this.usbEndPending = false;
      try {
        await this.reinsert();
        this.resumeFailed = false;
        events.setLastError(null);
      } catch (err) {
        // The watchdog retries.
        this.resumeFailed = true;
        throw fail(events, 're-inserting the medium after the session end', err);
      }
      events.changed();
    });
  }

  /** The watchdog's retry after a failed resume (runs inside the gadget's queue). */
  async bringBack(): Promise<void> {
    const { device, events } = this.o;
    await device.attachAndInsert();
    if (this.disconnected || (await device.boundUdc()) === '') {
      this.o.host.expectOwnReenumeration();
      await device.bind();
      this.disconnected = false;
    }
    this.resumeFailed = false;
    events.record('gadget-watchdog: medium re-inserted after a failed session-end resume');
    events.setLastError(null);
  }

  /** Forgets a session end under way (the gadget stopped). */
  reset(): void {
    this.quiesced = false;
    this.resumeFailed = false;
    this.disconnected = false;
  }

  private async reinsert(): Promise<void> {
    const { device, host } = this.o;
    await device.attachAndInsert();
    if (this.disconnected) {
      host.expectOwnReenumeration();
      await device.bind();
      this.disconnected = false;
      host.restartStuckTimer();
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Records `err` as the gadget's last error; returns it as a SnapbackError. */
export function fail(events: GadgetEvents, what: string, err: unknown): SnapbackError {
  const e = err instanceof SnapbackError ? err : new SnapbackError('IO_ERROR', `${what}: ${message(err)}`, undefined, { cause: err });
  events.setLastError(e.message);
  return e;
}
