/**
 * Maintenance windows on a fake clock: the power sequence against a simulated host on the GPIO
 * component (on, ACPI press, the grace period, a forced off only after it), capture and
 * activation, discard, the skips with their reasons, Wake-on-LAN over a real UDP socket,
 * thawed for N boots, a restart during a window, and schedules that do not parse (DST too).
 * The settings and the audit log are a real state store in a temporary directory.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import { GpioComponent } from '../../appliance/gpio/gpio-component.js';
import type { GpioSettingsInput } from '../../appliance/gpio/gpio-settings.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { MAINTENANCE_JOURNAL, MaintenanceComponent } from '../../appliance/maintenance/maintenance-component.js';
import { MaintenanceSchedule } from '../../appliance/maintenance/schedule.js';
import { magicPacket } from '../../appliance/maintenance/wake-on-lan.js';
import type { MaintenanceWindowInput } from '../../appliance/api/maintenance.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { runFleetCommand } from '../../appliance/management/fleet-commands.js';
import { FakeApplianceService } from '../helpers/fake-appliance-service.js';
import { SimHost, type SimHostOptions } from '../helpers/sim-host.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { storeMaintenanceDeps } from '../helpers/maintenance-deps.js';
import { waitFor } from '../helpers/wait.js';

const SW = 23;
const PLED = 24;
/** Wall-clock time when the fake clock reads 0: Saturday 2026-11-28 02:00 UTC. */
const BASE = Date.UTC(2026, 10, 28, 2, 0);
const HOUR = 3_600_000;

const wired: GpioSettingsInput = { power: { switchPin: SW, ledPin: PLED } };

const nightly: MaintenanceWindowInput = { name: 'nightly', schedule: '0 3 * * *', timeZone: 'UTC', durationMinutes: 30, graceSeconds: 60, after: 'capture' };

interface Rig {
  clock: FakeClock;
  sim: SimulatedGpioBackend;
  host: SimHost | null;
  service: FakeApplianceService;
  store: StateStore;
  gpio: GpioComponent;
  maintenance: MaintenanceComponent;
  captures: { name: string; at: number; hostOn: boolean }[];
  dir: string;
}

const rigs: Rig[] = [];

async function setup(opts: { gpio?: GpioSettingsInput; host?: Partial<SimHostOptions> | null; dir?: string; captureError?: Error; mode?: 'thawed' } = {}): Promise<Rig> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'snapback-maint-'));
  const clock = new FakeClock();
  const sim = new SimulatedGpioBackend({ clock, inputs: { 17: 1 } });
  const host = opts.host === null ? null : new SimHost(sim, clock, { switchPin: SW, ledPin: PLED, on: false, ...opts.host });
  const service = new FakeApplianceService(clock);
  if (opts.mode) service.current.mode = opts.mode;
  const store = await StateStore.open(dir);
  const gpio = new GpioComponent(service, opts.gpio ?? wired, { backend: sim, clock, audit: () => undefined });
  await gpio.start();
  // the power LED's state settles (off: dark for hostOffAfterMs)
  await clock.advance(6000);
  const captures: Rig['captures'] = [];
  const maintenance = new MaintenanceComponent({
    ...storeMaintenanceDeps(service, store, gpio),
    captureAndActivate: async (name) => {
      captures.push({ name, at: clock.now(), hostOn: host?.on ?? false });
      if (opts.captureError) throw opts.captureError;
      return name;
    },
    stateDir: dir,
    clock,
    wallNow: () => BASE + clock.now(),
  });
  await maintenance.start();
  const rig = { clock, sim, host, service, store, gpio, maintenance, captures, dir };
  rigs.push(rig);
  return rig;
}

/** [start, held ms] of every press of the power button output. */
function presses(sim: SimulatedGpioBackend): [number, number][] {
  const out: [number, number][] = [];
  let since: number | null = null;
  for (const { at, level } of sim.history(SW)) {
    if (level === 1 && since === null) since = at;
    if (level === 0 && since !== null) {
      out.push([since, at - since]);
      since = null;
    }
  }
  return out;
}

const auditActions = (store: StateStore): string[] => store.listAudit({ limit: 200 }).map((e) => e.action).reverse();

/** Fake-clock time of wall-clock `iso`. */
const at = (iso: string): number => Date.parse(iso) - BASE;

/**
 * Moves the clock to the window's start at `iso` and waits (in real time) for the window to have
 * journalled its start on disk; from there its power sequence runs on the fake clock alone.
 */
async function reachStart(r: Rig, iso: string): Promise<void> {
  await r.clock.advanceTo(at(iso));
  await waitFor('the window to start', () => r.maintenance.status().running?.step ?? r.maintenance.status().recent[0]);
}

describe('maintenance windows', function () {
  afterEach(async () => {
    for (const r of rigs.splice(0)) {
      await r.maintenance.stop();
      await r.gpio.stop();
      await r.store.close();
      rmSync(r.dir, { recursive: true, force: true });
    }
  });

  it('powers the host on, presses the power button at the end, forces it off only after the grace period, then captures and activates', async () => {
    const r = await setup({ host: { onShortPress: 'ignore', bootMs: 2000 } });
    await r.maintenance.add(nightly, 'admin');
    assert.equal(r.maintenance.status().windows[0]?.nextRun, '2026-11-28T03:00:00.000Z');

    await reachStart(r, '2026-11-28T03:00:00Z');
    await r.clock.advanceTo(at('2026-11-28T03:00:10Z'));
    assert.equal(r.host?.on, true, 'the host was powered on at the window start');
    assert.equal(r.service.status().mode, 'thawed', 'thawed for the window');
    assert.equal(r.maintenance.status().running?.step, 'running');

    // the window ends at 03:30: a short press (the OS ignores it), then 60 s of grace
    await r.clock.advanceTo(at('2026-11-28T03:31:00Z'));
    assert.equal(r.host?.on, true, 'not forced off within the grace period');
    await r.clock.advanceTo(at('2026-11-28T03:33:00Z'));
    assert.equal(r.host?.on, false, 'forced off after the grace period');

    const p = presses(r.sim);
    assert.equal(p.length, 3, JSON.stringify(p));
    const [on, acpi, force] = p as [[number, number], [number, number], [number, number]];
    assert.equal(on[0], at('2026-11-28T03:00:00Z'), 'the power-on press at the window start');
    assert.ok(on[1] < 1000 && acpi[1] < 1000, 'short presses');
    assert.equal(acpi[0], at('2026-11-28T03:30:00Z'), 'the shutdown press at the window end');
    assert.ok(force[0] >= acpi[0] + 60_000, `the forced off (at ${force[0]}) not before the grace period (${acpi[0] + 60_000})`);
    assert.ok(force[1] >= 4000, 'the forced off holds the button');

    assert.deepEqual(r.captures.map((c) => [c.name, c.hostOn]), [['nightly-2026-11-28-0300', false]], 'captured once, with the host off');
    assert.equal(r.service.status().mode, 'frozen', 'frozen again after the capture');
    const last = r.maintenance.status().recent[0];
    assert.equal(last?.result, 'captured');
    assert.match(last?.message ?? '', /nightly-2026-11-28-0300 captured and activated/);
    assert.equal(r.maintenance.status().running, null);

    await waitFor('the outcome in the audit log', () => auditActions(r.store).includes('maintenance.window.captured'));
    const actions = auditActions(r.store);
    for (const a of ['maintenance.add', 'maintenance.window.start', 'maintenance.window.thawing', 'maintenance.window.powering-on', 'maintenance.window.running', 'maintenance.window.shutting-down', 'maintenance.window.forcing-off', 'maintenance.window.capturing', 'maintenance.window.captured']) {
      assert.ok(actions.includes(a), `audit has ${a}: ${actions.join(', ')}`);
    }
    const history = r.service.hostEvents.map((e) => e.what).join('\n');
    assert.match(history, /maintenance window nightly: power button pressed\n/);
    assert.match(history, /forced off/);
    assert.match(history, /maintenance window nightly: captured/);
    assert.equal(r.maintenance.status().windows[0]?.nextRun, '2026-11-29T03:00:00.000Z', 'the next night');
  });

  it('a host that shuts down on the press is never forced off; discard freezes and ends the session', async () => {
    const r = await setup({ host: { onShortPress: 'shutdown', shutdownMs: 20_000 } });
    await r.maintenance.add({ ...nightly, after: 'discard', graceSeconds: 120 }, 'admin');
    await reachStart(r, '2026-11-28T03:00:00Z');
    await r.clock.advanceTo(at('2026-11-28T03:35:00Z'));
    assert.equal(r.host?.on, false);
    assert.equal(presses(r.sim).length, 2, 'power on and one shutdown press, no forced off');
    assert.equal(r.captures.length, 0);
    assert.equal(r.service.status().mode, 'frozen');
    assert.ok(r.service.ends.some((e) => e.reason === 'maintenance'), 'the session was ended (restore)');
    assert.equal(r.maintenance.status().recent[0]?.result, 'discarded');
    assert.ok(!auditActions(r.store).includes('maintenance.window.forcing-off'));
  });

  it('a capture that fails leaves the disk thawed, so nothing the host installed is lost', async () => {
    const r = await setup({ host: { onShortPress: 'shutdown' }, captureError: new Error('no space left') });
    await r.maintenance.add(nightly, 'admin');
    await reachStart(r, '2026-11-28T03:00:00Z');
    await r.clock.advanceTo(at('2026-11-28T03:35:00Z'));
    const last = r.maintenance.status().recent[0];
    assert.equal(last?.result, 'failed');
    assert.match(last?.message ?? '', /capture failed: no space left; the disk stays thawed/);
    assert.equal(r.service.status().mode, 'thawed');
  });

  it('skips a window when the host is already on and in use, and says why', async () => {
    const r = await setup({ host: { on: true } });
    await r.maintenance.add(nightly, 'admin');
    await reachStart(r, '2026-11-28T03:00:00Z');
    await waitFor('the skip to be recorded', () => r.maintenance.status().recent[0]);
    await r.clock.advanceTo(at('2026-11-28T03:40:00Z'));
    assert.deepEqual(presses(r.sim), [], 'no button pressed');
    assert.equal(r.service.status().mode, 'frozen', 'never thawed');
    const last = r.maintenance.status().recent[0];
    assert.equal(last?.result, 'skipped');
    assert.equal(last?.message, 'the host is already on and in use');
    await waitFor('the skip in the audit log', () => auditActions(r.store).includes('maintenance.window.skipped'));
    assert.ok(r.service.hostEvents.some((e) => e.what === 'maintenance window nightly: skipped (the host is already on and in use)'));
  });

  it('skips a window when no host power control is wired, and says why', async () => {
    const r = await setup({ gpio: { power: { ledPin: PLED } }, host: null });
    await r.maintenance.add(nightly, 'admin');
    await reachStart(r, '2026-11-28T03:00:00Z');
    await waitFor('the skip to be recorded', () => r.maintenance.status().recent[0]);
    const last = r.maintenance.status().recent[0];
    assert.equal(last?.result, 'skipped');
    assert.match(last?.message ?? '', /power button output is not wired/);
    assert.equal(r.service.status().mode, 'frozen');
  });

  it('powers the host on with a Wake-on-LAN packet (a real UDP socket on loopback)', async () => {
    const r = await setup({ host: { onShortPress: 'shutdown' } });
    const socket = createSocket('udp4');
    const packets: Buffer[] = [];
    socket.on('message', (m) => {
      packets.push(m);
      r.host?.setPower(true); // the host's network card wakes it
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    try {
      const port = socket.address().port;
      await r.maintenance.add({ ...nightly, after: 'discard', wakeOnLan: { mac: '52:54:00:12:34:56', address: '127.0.0.1', port } }, 'admin');
      await reachStart(r, '2026-11-28T03:00:00Z');
      // the datagram travels for real: let the event loop deliver it, then the LED settles
      for (let i = 0; i < 50 && packets.length === 0; i++) await new Promise((res) => setTimeout(res, 10));
      await r.clock.advance(1000);
      assert.equal(packets.length, 1);
      assert.deepEqual(packets[0], magicPacket('52:54:00:12:34:56'));
      assert.equal(r.maintenance.status().running?.step, 'running');
      assert.equal(presses(r.sim).length, 0, 'no GPIO power-on press');
      await r.clock.advanceTo(at('2026-11-28T03:35:00Z'));
      assert.equal(r.maintenance.status().recent[0]?.result, 'discarded');
    } finally {
      socket.close();
    }
  });

  it('thawed for the next N boots: each session end counts one (the daemon\'s own at its start too), then the disk is frozen', async () => {
    const r = await setup({ host: null });
    await r.maintenance.setThawBoots(2, 'admin');
    assert.equal(r.service.status().mode, 'thawed');
    await r.service.endSession('api');
    await waitFor('one boot counted', () => r.store.settings().maintenance.thawBoots === 1);
    assert.equal(r.service.status().mode, 'thawed');
    // the appliance boots with the host: the daemon's start ends the session before maintenance starts
    await r.maintenance.stop();
    await r.service.endSession('daemon-start');
    await r.maintenance.start();
    await waitFor('frozen after two boots', () => r.service.status().mode === 'frozen');
    assert.equal(r.store.settings().maintenance.thawBoots, 0);
    await r.service.endSession('api');
    await waitFor('the last count in the audit log', () => r.store.listAudit({ limit: 50 }).filter((e) => e.action === 'maintenance.thaw-boots.consumed').length === 2);
    assert.equal(r.store.settings().maintenance.thawBoots, 0, 'the counter stays at 0');
    assert.equal(r.service.status().mode, 'frozen');
  });

  it('a window in progress when the daemon restarts is ended safely: interrupted, mode as before, no power action', async () => {
    const first = await setup({ host: { onShortPress: 'shutdown' } });
    await first.maintenance.add(nightly, 'admin');
    await reachStart(first, '2026-11-28T03:00:00Z');
    await first.clock.advanceTo(at('2026-11-28T03:05:00Z'));
    assert.equal(first.maintenance.status().running?.step, 'running');
    const dir = first.dir;
    type Journal = { running: { window: string; step: string; previousMode: string } };
    const journal = await waitFor('the journal to name the step', () => {
      const j = JSON.parse(readFileSync(join(dir, MAINTENANCE_JOURNAL), 'utf8')) as Journal;
      return j.running.step === 'running' && j;
    });
    assert.deepEqual([journal.running.window, journal.running.step, journal.running.previousMode], ['nightly', 'running', 'frozen'], 'the journal on disk names the running window');
    await first.maintenance.stop();
    await first.gpio.stop();
    await first.store.close();
    rigs.splice(rigs.indexOf(first), 1);

    // the write log kept the window's thaw
    const again = await setup({ dir, host: { on: true }, mode: 'thawed' });
    const last = again.maintenance.status().recent[0];
    assert.equal(last?.result, 'interrupted');
    assert.match(last?.message ?? '', /during step running: ended safely \(mode back to frozen, no power action\)/);
    assert.equal(again.service.status().mode, 'frozen');
    assert.equal(again.maintenance.status().running, null);
    assert.deepEqual(presses(again.sim), []);
  });

  it('refuses schedules and windows that do not parse, with a clear error, and changes nothing', async () => {
    const r = await setup({ host: null });
    const bad: [Partial<MaintenanceWindowInput>, RegExp][] = [
      [{ schedule: '61 3 * * *' }, /schedule "61 3 \* \* \*" does not parse/],
      [{ schedule: '0 3 * *' }, /has 4 field\(s\); a schedule has 5/],
      [{ schedule: '0 0 3 * * *' }, /has 6 field\(s\)/],
      [{ schedule: '0 3 31 2 *' }, /never fires/],
      [{ timeZone: 'Mars/Olympus' }, /"Mars\/Olympus" is not a time zone/],
      [{ durationMinutes: 0 }, /invalid maintenance window: durationMinutes/],
      [{ name: 'no spaces' }, /a window name is/],
      [{ wakeOnLan: { mac: 'zz:11', address: '10.0.0.255', port: 9 } }, /MAC address/],
    ];
    for (const [change, message] of bad) {
      await assert.rejects(r.maintenance.add({ ...nightly, ...change }, 'admin'), (err: unknown) => isSnapbackError(err) && err.code === 'BAD_ARGUMENT' && message.test(err.message), JSON.stringify(change));
    }
    assert.deepEqual(r.store.settings().maintenance.windows, [], 'nothing was added');
    await r.maintenance.add(nightly, 'admin');
    await assert.rejects(r.maintenance.add(nightly, 'admin'), (err: unknown) => isSnapbackError(err) && err.code === 'ALREADY_EXISTS');
    await assert.rejects(r.maintenance.remove('weekly', 'admin'), (err: unknown) => isSnapbackError(err) && err.code === 'NOT_FOUND');
    await r.maintenance.remove('nightly', 'admin');
    assert.deepEqual(r.store.settings().maintenance.windows, []);
  });

  it('reads schedules in their time zone across daylight-saving changes', () => {
    const berlin = MaintenanceSchedule.parse('30 2 * * *', 'Europe/Berlin');
    // 2026-03-29: the clocks go from 02:00 to 03:00; 02:30 does not exist that day
    const spring = berlin.nextAfter(Date.parse('2026-03-28T12:00:00Z'));
    const springNext = berlin.nextAfter(spring ?? 0);
    assert.notEqual(spring, null);
    assert.ok(spring !== null && springNext !== null);
    assert.equal(new Date(springNext).toISOString(), '2026-03-30T00:30:00.000Z', 'on the day after, 02:30 CEST');
    // 2026-10-25: 02:30 happens twice (CEST, then CET); the window runs once
    const fall = berlin.nextAfter(Date.parse('2026-10-24T12:00:00Z')) ?? 0;
    const fallNext = berlin.nextAfter(fall) ?? 0;
    assert.equal(new Date(fall).toISOString().slice(0, 10), '2026-10-25');
    assert.equal(new Date(fallNext).toISOString(), '2026-10-26T01:30:00.000Z', 'the next run is the following day (02:30 CET), not 02:30 again an hour later');
    const ny = MaintenanceSchedule.parse('0 3 * * 6', 'America/New_York');
    assert.equal(new Date(ny.nextAfter(Date.parse('2026-11-27T00:00:00Z')) ?? 0).toISOString(), '2026-11-28T08:00:00.000Z', 'Saturday 03:00 EST');
  });


  it('the console sets the windows and the counter with the fleet command set-maintenance; bad arguments change nothing', async () => {
    const r = await setup({ host: null });
    await r.maintenance.add(nightly, 'admin');
    const set = (args: unknown): Promise<unknown> =>
      runFleetCommand({ id: `c${Math.random()}`, action: 'set-maintenance', args: args as Record<string, unknown> }, r.service, (e) => r.store.audit(e), null, (a, actor) => r.maintenance.replace(a, actor));
    const status = (await set({ windows: [{ name: 'weekly', schedule: '0 4 * * sun', timeZone: 'Europe/Paris', durationMinutes: 90, after: 'capture' }], thawBoots: 3 })) as { windows: { window: { name: string } }[]; thawBoots: number };
    assert.deepEqual(status.windows.map((w) => w.window.name), ['weekly'], 'the list replaces the old one');
    assert.equal(status.thawBoots, 3);
    assert.equal(r.service.status().mode, 'thawed');
    await waitFor('the console in the audit log', () => r.store.listAudit({ limit: 20 }).some((e) => e.actor === 'console' && e.action === 'maintenance.set'));
    for (const bad of [{}, { windows: [{ name: 'x', schedule: 'every night', durationMinutes: 5 }] }, { windows: [{ ...nightly }, { ...nightly }] }, { thawBoots: -1 }]) {
      await assert.rejects(set(bad), (err: unknown) => isSnapbackError(err) && err.code === 'BAD_ARGUMENT', JSON.stringify(bad));
    }
    assert.deepEqual(r.store.settings().maintenance.windows.map((w) => w.name), ['weekly'], 'nothing changed');
    await assert.rejects(runFleetCommand({ id: 'c-none', action: 'set-maintenance', args: { thawBoots: 1 } }, r.service, (e) => r.store.audit(e), null, null), (err: unknown) => isSnapbackError(err) && err.code === 'NOT_SUPPORTED');
  });

});
