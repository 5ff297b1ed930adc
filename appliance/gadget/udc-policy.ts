/**
 * Which USB transitions end a host session (docs/architecture.md: invariant 4, sessions). A pure
 * state machine:
 * it is fed the UDC state file's values (`observe`) and the passing of time (`tick`), and
 * answers with decisions; the watcher (udc-watcher.ts) does the I/O. docs/gadget.md explains
 * the policy and its limits; test/fixtures/udc-traces/ holds the traces it is tested on.
 *
 * The state file (/sys/class/udc/<udc>/state) shows the USB device state the UDC driver and
 * the composite framework report: "not attached", "attached", "powered", "default",
 * "addressed", "configured", "suspended" (and, rarely, "reconnecting", "unauthenticated").
 * UDC drivers differ:
 *  - dummy_hcd: "not attached" → "default" → "configured"; never "suspended"; an unbind, a
 *    host port disable, a re-enumeration all show as "configured" → "default" → "configured".
 *  - dwc2 (Raspberry Pi): a disconnect shows "not attached"; a bus reset also passes through
 *    "not attached" (the driver reports a disconnect on every reset), but only for a moment
 *    before the host enumerates the device again.
 *  - drivers that report bus suspend show "suspended" while the host sleeps.
 * So a "not attached" counts as a disconnect only once it has lasted `disconnectMinMs`;
 * shorter, followed by enumeration, it is a bus reset.
 */
import { z } from 'zod';

export const UdcPolicySchema = z
  .object({
    /** How often the state file is read (inotify wake-ups come on top where sysfs sends them). */
    pollIntervalMs: z.number().int().min(10).max(10_000).default(200),
    /**
     * End the session when a host that had configured the gadget goes away ("not attached" for
     * at least disconnectMinMs): the host lost power, its port was switched off, the cable
     * was pulled.
     */
    endOnDisconnect: z.boolean().default(true),
    /** How long "not attached" must last to be a disconnect rather than a bus reset. */
    disconnectMinMs: z.number().int().min(0).max(60_000).default(1000),
    /**
     * End the session when an awake host re-enumerates the gadget (bus reset while configured,
     * then enumeration): the host rebooted, or reset or power-cycled its port.
     */
    endOnReenumeration: z.boolean().default(true),
    /**
     * A bus reset that ends a suspend is how many hosts resume from sleep ("reset-resume"):
     * by default it keeps the session. Set a number to end the session when the suspend
     * before the reset lasted at least that many seconds (a host that was switched off with
     * standby power on its USB port and then switched on again looks like that, but so does
     * a long sleep: only set it for hosts that never sleep).
     */
    endOnResetAfterSuspendSeconds: z.number().min(0).max(7 * 86_400).nullable().default(null),
  })
  .strict();
export type UdcPolicy = z.output<typeof UdcPolicySchema>;
export type UdcPolicyInput = z.input<typeof UdcPolicySchema>;

/** What the host connection looks like from a UDC state. */
export type HostLink = 'absent' | 'attached' | 'configured' | 'suspended';

export function hostLinkOf(state: string | null): HostLink {
  switch (state) {
    case 'configured':
      return 'configured';
    case 'suspended':
      return 'suspended';
    case 'attached':
    case 'powered':
    case 'reconnecting':
    case 'unauthenticated':
    case 'default':
    case 'addressed':
      return 'attached';
    default:
      return 'absent';
  }
}

/** States a host passes through while (re-)enumerating, before it configures the device. */
function isEnumerating(state: string): boolean {
  return hostLinkOf(state) === 'attached';
}

export type SessionEndCause = 'disconnect' | 'reenumeration' | 'reset-after-suspend';

export type UdcDecision =
  | { kind: 'transition'; from: string | null; to: string; atMs: number }
  | { kind: 'connection'; link: HostLink; atMs: number }
  | { kind: 'end-session'; cause: SessionEndCause; note: string; atMs: number }
  | { kind: 'kept'; note: string; atMs: number };

export class UdcStatePolicy {
  private state: string | null = null;
  /** The host has configured the gadget since the last session end / disconnect. */
  private hostConfigured = false;
  /** When the current suspend began (the host was configured before it). */
  private suspendedAt: number | null = null;
  /** When the current "not attached" began, while it may still turn out to be a reset. */
  private detachedAt: number | null = null;
  /** Whether the host was suspended when the pending "not attached" began. */
  private detachedFromSuspendAt: number | null = null;
  /** Our own rebind is under way: transitions are recorded but end nothing. */
  private ownActionUntil: number | null = null;

  constructor(readonly policy: UdcPolicy) {}

  get current(): string | null {
    return this.state;
  }

  /**
   * Marks the next re-enumeration (until the host has configured the gadget again after it,
   * or `untilMs`) as caused by the appliance itself (its own bind, a watchdog rebind): it ends
   * no session. A "configured" read before that enumeration does not end the window: a UDC may
   * still show the previous binding's state (dummy_hcd keeps "configured" after an unbind).
   */
  expectOwnReenumeration(untilMs: number): void {
    this.ownActionUntil = untilMs;
  }

  observe(state: string, atMs: number): UdcDecision[] {
    const out: UdcDecision[] = [];
    out.push(...this.tick(atMs));
    const from = this.state;
    if (state === from) return out;
    this.state = state;
    out.push({ kind: 'transition', from, to: state, atMs });
    out.push({ kind: 'connection', link: hostLinkOf(state), atMs });
    if (from === null) {
      // A baseline, not a transition of the host's: a gadget found configured at start has a host.
      if (state === 'configured' || state === 'suspended') this.hostConfigured = true;
      if (state === 'suspended') this.suspendedAt = atMs;
      if (state === 'not attached') this.detachedAt = null;
      return out;
    }
    const own = this.ownActionUntil !== null && atMs <= this.ownActionUntil;

    if (state === 'not attached') {
      if (this.hostConfigured) {
        // Disconnect or (on dwc2) the start of a bus reset: decided by how long it lasts.
        this.detachedAt = atMs;
        this.detachedFromSuspendAt = from === 'suspended' ? this.suspendedAt : null;
      }
      this.suspendedAt = null;
      return out;
    }

    if (state === 'suspended') {
      if (this.hostConfigured || from === 'configured') {
        this.hostConfigured = true;
        this.suspendedAt = atMs;
      }
      return out;
    }

    if (isEnumerating(state)) {
      if (this.detachedAt !== null) {
        // A short "not attached" followed by enumeration: a bus reset (dwc2's way of showing one).
        const suspendStart = this.detachedFromSuspendAt;
        this.detachedAt = null;
        this.detachedFromSuspendAt = null;
        out.push(...this.reset(suspendStart, atMs, own));
      } else if (this.hostConfigured && (from === 'configured' || from === 'suspended')) {
        const suspendStart = from === 'suspended' ? this.suspendedAt : null;
        out.push(...this.reset(suspendStart, atMs, own));
      }
      this.suspendedAt = null;
      return out;
    }

    if (state === 'configured') {
      if (this.detachedAt !== null) {
        // The enumeration after a short "not attached" went by between two reads.
        const suspendStart = this.detachedFromSuspendAt;
        this.detachedAt = null;
        this.detachedFromSuspendAt = null;
        out.push(...this.reset(suspendStart, atMs, own));
      } else if (from === 'suspended') {
        out.push({ kind: 'kept', note: `host resumed after ${seconds(atMs - (this.suspendedAt ?? atMs))} suspended`, atMs });
      }
      this.detachedAt = null;
      this.suspendedAt = null;
      this.hostConfigured = true;
      if (own) this.ownActionUntil = null;
      return out;
    }
    return out;
  }

  /** Time passing: a "not attached" that has lasted disconnectMinMs becomes a disconnect. */
  tick(atMs: number): UdcDecision[] {
    if (this.ownActionUntil !== null && atMs > this.ownActionUntil) this.ownActionUntil = null;
    if (this.detachedAt === null || atMs - this.detachedAt < this.policy.disconnectMinMs) return [];
    const since = this.detachedAt;
    this.detachedAt = null;
    this.detachedFromSuspendAt = null;
    this.hostConfigured = false;
    const note = `host disconnected (not attached for ${seconds(atMs - since)})`;
    if (this.ownActionUntil !== null) return [{ kind: 'kept', note: `${note} during the appliance's own rebind`, atMs }];
    if (!this.policy.endOnDisconnect) return [{ kind: 'kept', note: `${note}; policy endOnDisconnect=false`, atMs }];
    return [{ kind: 'end-session', cause: 'disconnect', note, atMs }];
  }

  private reset(suspendStart: number | null, atMs: number, own: boolean): UdcDecision[] {
    this.hostConfigured = false;
    if (own) return [{ kind: 'kept', note: 'gadget re-enumerated by the appliance itself (watchdog rebind)', atMs }];
    if (suspendStart === null) {
      const note = 'host re-enumerated the gadget (bus reset while configured)';
      if (!this.policy.endOnReenumeration) return [{ kind: 'kept', note: `${note}; policy endOnReenumeration=false`, atMs }];
      return [{ kind: 'end-session', cause: 'reenumeration', note, atMs }];
    }
    const suspended = atMs - suspendStart;
    const limit = this.policy.endOnResetAfterSuspendSeconds;
    const note = `bus reset after ${seconds(suspended)} suspended`;
    if (limit !== null && suspended >= limit * 1000) return [{ kind: 'end-session', cause: 'reset-after-suspend', note, atMs }];
    return [{ kind: 'kept', note: `${note}: host resuming from sleep keeps its session`, atMs }];
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 0)} s`;
}
