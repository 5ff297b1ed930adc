/** Host power control: every action and the restore-now sequence against a simulated host. */
import assert from 'node:assert/strict';
import { isSnapbackError } from '../../appliance/errors.js';
import type { GpioAuditEntry } from '../../appliance/gpio/gpio-audit.js';
import { defaultGpioSettings, type PowerSettings } from '../../appliance/gpio/gpio-settings.js';
import { HostPowerSense } from '../../appliance/gpio/host-power-sense.js';
import { PowerController } from '../../appliance/gpio/power-controller.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { FakeApplianceService } from '../helpers/fake-appliance-service.js';
import { SimHost, type SimHostOptions } from '../helpers/sim-host.js';
import { FakeClock } from '../helpers/fake-clock.js';

const SW = 23;
const RST = 27;
const LED = 24;

function setup(host: Partial<SimHostOptions> = {}, overrides: Partial<PowerSettings> = {}, wireSense = true) {
  const clock = new FakeClock();
  const sim = new SimulatedGpioBackend({ clock });
  const settings: PowerSettings = {
    ...defaultGpioSettings().power,
    switchPin: SW,
    resetPin: RST,
    ledPin: LED,
    ...overrides,
  };
  const simHost = new SimHost(sim, clock, { switchPin: SW, resetPin: RST, ledPin: LED, ...host });
  const service = new FakeApplianceService(clock);
  const audit: GpioAuditEntry[] = [];
  const hostOffs: boolean[] = [];
  const sense = wireSense
    ? new HostPowerSense(
        sim,
        clock,
        { pin: LED, activeLow: true, debounceMs: settings.ledDebounceMs, hostOffAfterMs: settings.hostOffAfterMs },
        { onHostOff: (s) => hostOffs.push(s), onChange: () => {}, record: (w) => service.recordHostEvent(w) },
      )
    : null;
  sense?.start();
  const power = new PowerController({
    backend: sim,
    clock,
    settings,
    sense,
    audit: (e) => audit.push(e),
    endSession: (reason, note) => service.endSession(reason, note),
    onChange: () => {},
  });
  power.start();
  return { clock, sim, settings, host: simHost, service, audit, sense, power, hostOffs };
}

/** [start, length] of every press of an output, from the simulated pin's history. */
function pulses(sim: SimulatedGpioBackend, pin: number): [number, number][] {
  const out: [number, number][] = [];
  let since: number | null = null;
  for (const { at, level } of sim.history(pin)) {
    if (level === 1 && since === null) since = at;
    if (level === 0 && since !== null) {
      out.push([since, at - since]);
      since = null;
    }
  }
  return out;
}

const results = (audit: GpioAuditEntry[]) => audit.map((e) => `${e.action}:${String(e.details?.result ?? '')}`);

describe('gpio: host power actions', () => {
  it('outputs are inactive from the moment they are claimed', () => {
    const { sim } = setup();
    assert.deepEqual(sim.history(SW).map((c) => c.level), [0]);
    assert.deepEqual(sim.history(RST).map((c) => c.level), [0]);
  });

  it('power on: a short press when the host is off; audited with the actor', async () => {
    const { clock, sim, host, power, audit } = setup({ on: false });
    const t0 = clock.now();
    const done = power.begin('on', 'alice');
    assert.equal(power.status().state, 'busy');
    await clock.advance(3000);
    assert.equal(await done, 'ok');
    assert.deepEqual(pulses(sim, SW), [[t0, 500]]);
    assert.equal(host.on, true);
    assert.deepEqual(results(audit), ['gpio.power.on:started', 'gpio.power.on:ok']);
    assert.ok(audit.every((e) => e.actor === 'alice'));
    assert.equal(power.status().state, 'idle');
  });

  it('power on when the LED is lit: no press (it would shut the host down)', async () => {
    const { clock, sim, power } = setup({ on: true });
    const done = power.begin('on', 'alice');
    await clock.advance(10);
    assert.equal(await done, 'skipped');
    assert.deepEqual(pulses(sim, SW), []);
  });

  it('graceful off: a press of pressMs; the host shuts down by itself', async () => {
    const { clock, sim, host, power } = setup({ on: true, shutdownMs: 8000 });
    const done = power.begin('off', 'bob');
    await clock.advance(600);
    assert.equal(await done, 'ok');
    assert.deepEqual(pulses(sim, SW).map((p) => p[1]), [500]);
    assert.equal(host.on, true);
    await clock.advance(8000);
    assert.equal(host.on, false);
  });

  it('forced off: holds the power button for forceOffMs (≥ 5 s)', async () => {
    const { clock, sim, host, power, settings } = setup({ on: true, onShortPress: 'ignore' });
    assert.ok(settings.forceOffMs >= 5000);
    const done = power.begin('force-off', 'bob');
    await clock.advance(4000);
    assert.equal(host.on, false); // the ATX rule: off after 4 s held
    await clock.advance(settings.forceOffMs);
    assert.equal(await done, 'ok');
    assert.deepEqual(pulses(sim, SW).map((p) => p[1]), [settings.forceOffMs]);
  });

  it('reset: a short press on the reset output', async () => {
    const { clock, sim, host, power } = setup();
    const done = power.begin('reset', 'carol');
    await clock.advance(1000);
    assert.equal(await done, 'ok');
    assert.deepEqual(pulses(sim, RST).map((p) => p[1]), [500]);
    assert.deepEqual(pulses(sim, SW), []);
    assert.equal(host.resets, 1);
  });

  it('one action at a time: a second one is refused with BUSY until the first ends', async () => {
    const { clock, power } = setup({ on: true, onShortPress: 'ignore' });
    const first = power.begin('force-off', 'alice');
    await clock.advance(1000);
    assert.throws(() => power.begin('reset', 'bob'), (e) => isSnapbackError(e, 'BUSY') && /force-off/.test(e.message));
    assert.throws(() => power.begin('restore-now', 'bob'), (e) => isSnapbackError(e, 'BUSY'));
    await clock.advance(10_000);
    assert.equal(await first, 'ok');
    const second = power.begin('reset', 'bob');
    await clock.advance(1000);
    assert.equal(await second, 'ok');
  });

  it('actions whose outputs are not wired are refused with NOT_SUPPORTED', () => {
    const noReset = setup({}, { resetPin: null });
    assert.throws(() => noReset.power.begin('reset', 'a'), (e) => isSnapbackError(e, 'NOT_SUPPORTED'));
    const noSense = setup({}, {}, false);
    assert.throws(
      () => noSense.power.begin('restore-now', 'a'),
      (e) => isSnapbackError(e, 'NOT_SUPPORTED') && /power LED/.test(e.message),
    );
    const nothing = setup({}, { switchPin: null, resetPin: null });
    for (const action of ['on', 'off', 'force-off', 'restore-now'] as const) {
      assert.throws(() => nothing.power.begin(action, 'a'), (e) => isSnapbackError(e, 'NOT_SUPPORTED'));
    }
  });

  it('stop during a press releases the output at once and reports the action aborted', async () => {
    const { clock, sim, power, audit } = setup({ on: true, onShortPress: 'ignore' });
    const done = power.begin('force-off', 'alice');
    await clock.advance(1000);
    power.stop();
    assert.equal(await done, 'aborted');
    assert.equal(sim.level(SW), 0);
    assert.equal(sim.isExported(SW), false);
    assert.deepEqual(results(audit), ['gpio.power.force-off:started', 'gpio.power.force-off:aborted']);
  });
});

describe('gpio: restore now', () => {
  it('graceful off → LED dark for hostOffAfterMs → session ends → power on → LED lit', async () => {
    const { clock, sim, host, power, service, settings, audit } = setup({ on: true, shutdownMs: 20_000, bootMs: 3000 });
    const done = power.begin('restore-now', 'alice');
    await clock.advance(20_500 + 10);
    assert.equal(host.on, false);
    const offAt = clock.now();
    assert.equal(service.ends.length, 0, 'not before the LED has been dark for hostOffAfterMs');
    await clock.advance(settings.hostOffAfterMs + 100);
    assert.equal(service.ends.length, 1);
    assert.equal(service.ends[0]?.reason, 'host-power-off');
    assert.match(service.ends[0]?.note ?? '', /alice/);
    assert.ok((service.ends[0]?.at ?? 0) >= offAt + settings.hostOffAfterMs);
    await clock.advance(5000);
    assert.equal(await done, 'ok');
    assert.equal(host.on, true);
    const presses = pulses(sim, SW);
    assert.deepEqual(presses.map((p) => p[1]), [500, 500]); // no forced off
    assert.ok((presses[1]?.[0] ?? 0) >= (service.ends[0]?.at ?? Infinity), 'powered on only after the session ended');
    assert.deepEqual(results(audit), ['gpio.power.restore-now:started', 'gpio.power.restore-now:ok']);
    assert.equal(service.ends.length, 1);
  });

  it('eager mode: powers the host on only once endSession (which restores) has resolved', async () => {
    const { clock, sim, power, service } = setup({ on: true, shutdownMs: 1000 });
    service.current.restoreMode = 'eager';
    service.endDurationMs = 90_000; // the eager restore
    const done = power.begin('restore-now', 'alice');
    await clock.advance(1500 + 5100);
    assert.equal(service.ends.length, 1);
    const endAt = service.ends[0]?.at ?? 0;
    await clock.advance(89_000);
    assert.equal(pulses(sim, SW).length, 1, 'no power-on press while the restore runs');
    await clock.advance(1000 + 600 + 3000);
    const presses = pulses(sim, SW);
    assert.equal(presses.length, 2);
    assert.ok((presses[1]?.[0] ?? 0) >= endAt + 90_000);
    assert.equal(await done, 'ok');
  });

  it('a host that ignores the graceful off is forced off after gracefulOffTimeoutMs', async () => {
    const { clock, sim, host, power, service, settings, audit } = setup({ on: true, onShortPress: 'ignore' });
    const done = power.begin('restore-now', 'alice');
    await clock.advance(500 + settings.gracefulOffTimeoutMs - 1000);
    assert.equal(pulses(sim, SW).length, 1);
    assert.equal(host.on, true);
    await clock.advance(1000 + settings.forceOffMs + settings.hostOffAfterMs + 100);
    assert.equal(host.on, false);
    assert.equal(service.ends.length, 1);
    await clock.advance(500 + 2000 + 100);
    assert.equal(await done, 'ok');
    assert.equal(host.on, true);
    assert.deepEqual(pulses(sim, SW).map((p) => p[1]), [500, settings.forceOffMs, 500]);
    assert.ok(audit.some((e) => e.action === 'gpio.power.forced-off'));
  });

  it('a host that will not power off even when forced keeps its session; the failure is reported', async () => {
    const { clock, sim, power, service, settings, audit } = setup({ on: true, onShortPress: 'ignore', unkillable: true });
    const done = power.begin('restore-now', 'alice');
    await clock.advance(500 + settings.gracefulOffTimeoutMs + settings.forceOffMs + settings.forcedOffTimeoutMs + settings.hostOffAfterMs + 100);
    assert.equal(await done, 'failed');
    assert.equal(service.ends.length, 0, 'never restore under a live host');
    const status = power.status();
    assert.equal(status.state, 'error');
    assert.match(status.error?.message ?? '', /did not power off/);
    assert.equal(sim.level(SW), 0);
    assert.equal(audit.at(-1)?.details?.result, 'failed');
  });

  it('a host that never comes back is reported once, not retried forever', async () => {
    const { clock, sim, power, service, settings } = setup({ on: true, shutdownMs: 1000, neverBoots: true });
    const done = power.begin('restore-now', 'alice');
    await clock.advance(1500 + settings.hostOffAfterMs + 100);
    assert.equal(service.ends.length, 1);
    await clock.advance(500 + settings.powerOnTimeoutMs + 100);
    assert.equal(await done, 'failed');
    const status = power.status();
    assert.equal(status.state, 'error');
    assert.match(status.error?.message ?? '', /did not come back on/);
    const pressesThen = pulses(sim, SW).length;
    await clock.advance(60 * 60_000); // an hour later: still exactly one power-on attempt
    assert.equal(pulses(sim, SW).length, pressesThen);
    assert.equal(pressesThen, 2);
    assert.equal(clock.pendingTimers, 0);
    // A later successful action clears the error.
    const again = power.begin('reset', 'bob');
    await clock.advance(600);
    assert.equal(await again, 'ok');
    assert.equal(power.status().state, 'idle');
  });

  it('a host already going dark is not pressed on (that would start it): the LED decides', async () => {
    const { clock, sim, host, power, service, settings } = setup({ on: true });
    host.setPower(false); // the user shut it down a moment ago
    await clock.advance(1000);
    const done = power.begin('restore-now', 'alice');
    await clock.advance(settings.hostOffAfterMs + 100);
    assert.equal(service.ends.length, 1);
    await clock.advance(3000);
    assert.equal(await done, 'ok');
    assert.deepEqual(pulses(sim, SW).map((p) => p[1]), [500]); // only the power-on press
  });

  it('a failed session end leaves the host off and reports the error', async () => {
    const { clock, sim, power, service, settings } = setup({ on: true, shutdownMs: 1000 });
    service.endError = new Error('disk gone');
    const done = power.begin('restore-now', 'alice');
    await clock.advance(1500 + settings.hostOffAfterMs + 100);
    assert.equal(await done, 'failed');
    assert.match(power.status().error?.message ?? '', /disk gone/);
    assert.equal(pulses(sim, SW).length, 1);
  });
});

describe('gpio: power LED sense', () => {
  it('the host is off only after the LED has been dark for hostOffAfterMs', async () => {
    const { clock, host, sense, hostOffs, settings, service } = setup({ on: true });
    assert.ok(sense);
    host.setPower(false);
    await clock.advance(settings.hostOffAfterMs - 100);
    assert.equal(sense.state, 'dark');
    assert.deepEqual(hostOffs, []);
    await clock.advance(200);
    assert.equal(sense.state, 'off');
    assert.deepEqual(hostOffs, [false]);
    assert.deepEqual(
      service.hostEvents.map((e) => e.what),
      ['power LED dark', `host off: power LED dark for ${settings.hostOffAfterMs} ms`],
    );
    host.setPower(true);
    await clock.advance(100);
    assert.equal(sense.state, 'on');
    assert.equal(service.hostEvents.at(-1)?.what, 'power LED on');
  });

  it('a sleeping host (blinking LED) is never off, and its blinking is summarised, not logged per blink', async () => {
    const { clock, host, sense, hostOffs, service } = setup({ on: true });
    assert.ok(sense);
    for (let i = 0; i < 600; i++) {
      host.setPower(false);
      await clock.advance(2000); // dark 2 s, lit 1 s, for half an hour
      host.setPower(true);
      await clock.advance(1000);
    }
    assert.deepEqual(hostOffs, []);
    assert.equal(sense.blinking, true);
    assert.ok(service.hostEvents.length <= 8, `${service.hostEvents.length} events`);
    assert.ok(service.hostEvents.some((e) => /blinking/.test(e.what)));
    await clock.advance(20_000); // wakes up: steady on
    assert.equal(sense.blinking, false);
    assert.equal(service.hostEvents.at(-1)?.what, 'power LED steady on');
  });

  it('a host that is off when the sense starts is off without a "went off" event', async () => {
    const { clock, sense, hostOffs, settings } = setup({ on: false });
    assert.ok(sense);
    assert.equal(sense.state, 'dark');
    await clock.advance(settings.hostOffAfterMs + 10);
    assert.equal(sense.state, 'off');
    assert.deepEqual(hostOffs, [true]);
  });
});
