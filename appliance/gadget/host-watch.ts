/**
 * Watches the host through the UDC state file and applies the USB session-end policy
 * (udc-policy.ts): every transition is recorded in the session history, connection changes
 * are published, and a host that went away or re-enumerated has its session ended.
 */
import type { Clock } from '../clock.js';
import { childLogger } from '../logger.js';
import type { GadgetEvents } from './gadget-events.js';
import { UdcStatePolicy, hostLinkOf, type HostLink, type UdcDecision, type UdcPolicy } from './udc-policy.js';
import { UdcWatcher } from './udc-watcher.js';

const log = childLogger('gadget');

/** How long after our own bind an enumeration is ours, not the host's. */
const OWN_REENUMERATION_MS = 30_000;

export interface HostWatchOptions {
  sysRoot: string;
  policy: UdcPolicy;
  clock: Clock;
  events: GadgetEvents;
  /** Asks for the host session to end (the USB policy decided so). */
  endSession: (reason: 'usb-reconnect', note: string) => void;
}

export class HostWatch {
  /** The last UDC state read; null before the first read. */
  udcState: string | null = null;
  /** When the host entered the state it is in (for the stuck-enumeration watchdog). */
  stateSince = 0;
  private policy: UdcStatePolicy;
  private watcher: UdcWatcher | null = null;

  constructor(private readonly o: HostWatchOptions) {
    this.policy = new UdcStatePolicy(o.policy);
  }

  get link(): HostLink {
    return hostLinkOf(this.udcState);
  }

  start(udc: string): void {
    this.policy = new UdcStatePolicy(this.o.policy);
    // The enumeration that follows our own bind is not a host re-enumeration (the state file
    // may still show the previous binding's "configured" when the watcher first reads it).
    this.expectOwnReenumeration();
    this.udcState = null;
    this.stateSince = this.o.clock.now();
    this.watcher = new UdcWatcher({
      sysRoot: this.o.sysRoot,
      udc,
      intervalMs: this.o.policy.pollIntervalMs,
      clock: this.o.clock,
      onRead: (state, at) => this.onRead(state, at),
      onError: (err) => log.warn({ err }, 'cannot read the UDC state'),
    });
    this.watcher.start();
  }

  stop(): void {
    this.watcher?.stop();
    this.watcher = null;
  }

  /** We are about to bind the gadget ourselves: the enumeration that follows is ours. */
  expectOwnReenumeration(): void {
    this.policy.expectOwnReenumeration(this.o.clock.now() + OWN_REENUMERATION_MS);
  }

  /** The gadget was just bound: the host starts enumerating afresh. */
  restartStuckTimer(): void {
    this.stateSince = this.o.clock.now();
  }

  /** Reads the UDC state file now and applies it (resolves once applied). */
  readNow(): Promise<void> {
    return this.watcher?.readNow() ?? Promise.resolve();
  }

  private onRead(state: string, at: number): void {
    if (!this.o.events.running) return;
    this.apply(state === this.udcState ? this.policy.tick(at) : this.policy.observe(state, at));
  }

  private apply(decisions: UdcDecision[]): void {
    let connectionChanged = false;
    for (const d of decisions) {
      switch (d.kind) {
        case 'transition':
          this.udcState = d.to;
          this.stateSince = d.atMs;
          this.o.events.record(`usb: ${d.from ?? '(start)'} → ${d.to}`);
          break;
        case 'connection':
          connectionChanged = true;
          break;
        case 'kept':
          this.o.events.record(`usb: ${d.note}`);
          break;
        case 'end-session':
          this.o.events.record(`usb: ${d.note}: ending the host session`);
          this.o.endSession('usb-reconnect', d.note);
          break;
      }
    }
    if (connectionChanged) this.o.events.connectionChanged();
  }
}
