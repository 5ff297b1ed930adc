/**
 * Test doubles for the GPIO tests (FakeApplianceService, SimHost; FakeClock is in
 * test/helpers/fake-clock.ts), with tests of their own. Kept in a gpio-*.test.ts file so that the GPIO work stays within its paths; the
 * lead may move them to test/helpers/.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { TimerHandle } from '../../appliance/clock.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';
import { bytesStateSource, encodeRegionMap, type EncodedRegionMap } from '../../appliance/session/region-map-codec.js';
import type { Level } from '../../appliance/gpio/gpio-backend.js';
import type { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import type {
  ApplianceService,
  ApplianceStatus,
  GadgetStatus,
  HostConnectionState,
  ProtectionMode,
  RestoreMode,
  SessionEndParticipant,
  SessionEndReason,
  SessionRecord,
} from '../../appliance/session/appliance-service.js';

// ---------------------------------------------------------------- FakeApplianceService

export function makeStatus(): ApplianceStatus {
  return {
    mode: 'frozen',
    restoreMode: 'instant',
    session: { number: 1, startedAt: new Date(0).toISOString() },
    regions: { total: 16, regionSize: 65536, writtenThisSession: 0, pending: 0, clean: 16 },
    bytesChangedThisSession: 0,
    hydration: {
      running: false,
      totalAtStart: 0,
      done: 0,
      pendingRegions: 0,
      bytesPerSecond: 0,
      etaSeconds: null,
      rateLimitBytesPerSecond: null,
      lastError: null,
    },
    host: { connection: 'nbd-only', nbdClients: 0, gadget: null },
    model: { id: 'model', name: 'model', size: 1 << 20, regionSize: 65536, pendingActivation: null },
    disk: { path: '/tmp/disk', size: 1 << 20, ioErrors: 0 },
    stateDir: { path: '/tmp/state', freeBytes: null, writeError: null },
    daemon: { startedAt: new Date(0).toISOString(), pid: 1, version: 'test' },
    components: [],
  };
}

/** A small ApplianceService: records session ends and host events; status is editable. */
export class FakeApplianceService extends EventEmitter implements ApplianceService {
  current: ApplianceStatus = makeStatus();
  readonly ends: { reason: SessionEndReason; note: string | undefined; at: number }[] = [];
  readonly hostEvents: { what: string; at: number }[] = [];
  readonly history: SessionRecord[] = [];
  /** How long endSession takes on the clock (an eager restore takes a while). */
  endDurationMs = 0;
  /** When set, endSession rejects with this error. */
  endError: Error | null = null;

  constructor(private readonly clock: FakeClock) {
    super();
  }

  status(): ApplianceStatus {
    return this.current;
  }

  /** Changes the status and emits 'status', as the real service does. */
  update(change: (s: ApplianceStatus) => void): void {
    change(this.current);
    this.emit('status');
  }

  async endSession(reason: SessionEndReason, note?: string): Promise<SessionRecord> {
    this.ends.push({ reason, note, at: this.clock.now() });
    if (this.endDurationMs > 0) {
      await new Promise<void>((resolve) => this.clock.setTimeout(resolve, this.endDurationMs));
    }
    if (this.endError) throw this.endError;
    const record: SessionRecord = {
      number: this.current.session.number,
      startedAt: this.current.session.startedAt,
      endedAt: new Date(this.clock.now()).toISOString(),
      endReason: reason,
      mode: this.current.mode,
      regionsWritten: 0,
      bytesWritten: 0,
      sessionEndMs: 0,
      restoreMs: null,
      events: [],
    };
    this.history.push(record);
    this.current.session = { number: record.number + 1, startedAt: record.endedAt ?? '' };
    this.emit('session-ended', record);
    this.emit('status');
    return record;
  }

  async setMode(mode: ProtectionMode): Promise<void> {
    this.update((s) => (s.mode = mode));
  }

  async setRestoreMode(mode: RestoreMode): Promise<void> {
    this.update((s) => (s.restoreMode = mode));
  }

  async setHydrationRate(bytesPerSecond: number | null): Promise<void> {
    this.current.hydration.rateLimitBytesPerSecond = bytesPerSecond;
  }

  async regionMap(): Promise<EncodedRegionMap> {
    return encodeRegionMap(bytesStateSource(new Uint8Array(this.current.regions.total)));
  }

  sessions(): SessionRecord[] {
    return this.history;
  }

  recordHostEvent(what: string): void {
    this.hostEvents.push({ what, at: this.clock.now() });
  }

  addSessionEndParticipant(_p: SessionEndParticipant): void {}

  setHostConnection(state: HostConnectionState, gadget?: GadgetStatus | null): void {
    this.current.host.connection = state;
    if (gadget !== undefined) this.current.host.gadget = gadget;
  }
}

// ---------------------------------------------------------------- SimHost

export interface SimHostOptions {
  /** Pins as wired (BCM). */
  switchPin: number;
  resetPin?: number | null;
  ledPin: number;
  /** Outputs active-high (optocoupler), LED sense active-low (as the defaults). */
  outputsActiveLow?: boolean;
  ledActiveLow?: boolean;
  on?: boolean;
  /** How the OS answers a short press of the power button while running. */
  onShortPress?: 'shutdown' | 'ignore';
  shutdownMs?: number;
  bootMs?: number;
  /** ATX forced-off hold; a host that is 'unkillable' never turns off. */
  forceOffHoldMs?: number;
  unkillable?: boolean;
  /** A host that never powers on again. */
  neverBoots?: boolean;
}

/**
 * A host PC at the other end of the ATX wiring: it watches its power button (the Pi's output),
 * shuts down after a short press, powers off when the button is held 4 s, boots after a press
 * when off, and shows all this on its power LED (the Pi's input).
 */
export class SimHost {
  on: boolean;
  readonly presses: { at: number; heldMs: number }[] = [];
  resets = 0;
  private pressedAt: number | null = null;
  private forceTimer: TimerHandle | null = null;
  private pending: TimerHandle | null = null;

  constructor(
    private readonly sim: SimulatedGpioBackend,
    private readonly clock: FakeClock,
    private readonly o: SimHostOptions,
  ) {
    this.on = o.on ?? true;
    this.showLed();
    sim.onOutput(o.switchPin, (level) => this.onSwitch(this.active(level)));
    if (o.resetPin != null) {
      let down = false;
      sim.onOutput(o.resetPin, (level) => {
        const now = this.active(level);
        if (down && !now) this.resets++;
        down = now;
      });
    }
  }

  private active(level: Level): boolean {
    return (level === 1) !== (this.o.outputsActiveLow ?? false);
  }

  private onSwitch(pressed: boolean): void {
    if (pressed && this.pressedAt === null) {
      this.pressedAt = this.clock.now();
      if (this.on && !this.o.unkillable) {
        this.forceTimer = this.clock.setTimeout(() => {
          this.forceTimer = null;
          this.setPower(false);
        }, this.o.forceOffHoldMs ?? 4000);
      }
      return;
    }
    if (!pressed && this.pressedAt !== null) {
      const heldMs = this.clock.now() - this.pressedAt;
      this.pressedAt = null;
      this.presses.push({ at: this.clock.now(), heldMs });
      const forced = this.forceTimer === null && heldMs >= (this.o.forceOffHoldMs ?? 4000);
      if (this.forceTimer) this.clock.clearTimeout(this.forceTimer);
      this.forceTimer = null;
      if (forced) return;
      if (this.on) {
        if ((this.o.onShortPress ?? 'shutdown') === 'shutdown') this.later(this.o.shutdownMs ?? 10_000, false);
      } else if (!this.o.neverBoots) {
        this.later(this.o.bootMs ?? 2000, true);
      }
    }
  }

  private later(ms: number, on: boolean): void {
    if (this.pending) this.clock.clearTimeout(this.pending);
    this.pending = this.clock.setTimeout(() => {
      this.pending = null;
      this.setPower(on);
    }, ms);
  }

  setPower(on: boolean): void {
    this.on = on;
    this.showLed();
  }

  private showLed(): void {
    const lit = this.on;
    this.sim.setInput(this.o.ledPin, (lit !== (this.o.ledActiveLow ?? true) ? 1 : 0) as Level);
  }
}

// ---------------------------------------------------------------- tests of the doubles

describe('gpio test doubles', () => {
  it('FakeClock fires timers in time order, ties in the order set, and only when advanced', async () => {
    const clock = new FakeClock();
    const fired: string[] = [];
    clock.setTimeout(() => fired.push('b@20'), 20);
    clock.setTimeout(() => fired.push('a@10'), 10);
    clock.setTimeout(() => fired.push('c@20'), 20);
    const gone = clock.setTimeout(() => fired.push('never'), 15);
    clock.clearTimeout(gone);
    await clock.advance(9);
    assert.deepEqual(fired, []);
    await clock.advance(11);
    assert.deepEqual(fired, ['a@10', 'b@20', 'c@20']);
    assert.equal(clock.now(), 20);
  });

  it('FakeClock lets async code set new timers that fire within the same advance', async () => {
    const clock = new FakeClock();
    const wait = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
    const marks: number[] = [];
    void (async () => {
      await wait(100);
      marks.push(clock.now());
      await wait(100);
      marks.push(clock.now());
    })();
    await clock.advance(250);
    assert.deepEqual(marks, [100, 200]);
  });

  it('FakeApplianceService ends sessions after endDurationMs and emits session-ended', async () => {
    const clock = new FakeClock();
    const service = new FakeApplianceService(clock);
    service.endDurationMs = 1000;
    let ended = 0;
    service.on('session-ended', () => ended++);
    const p = service.endSession('button');
    await clock.advance(999);
    assert.equal(ended, 0);
    await clock.advance(1);
    assert.equal((await p).endReason, 'button');
    assert.equal(ended, 1);
    assert.equal(service.status().session.number, 2);
  });
});
