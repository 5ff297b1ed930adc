/** The GPIO component: start without GPIO, the button's presses, the LED, session ends. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isSnapbackError } from '../../appliance/errors.js';
import type { GpioAuditEntry } from '../../appliance/gpio/gpio-audit.js';
import { GpioComponent } from '../../appliance/gpio/gpio-component.js';
import type { GpioSettingsInput } from '../../appliance/gpio/gpio-settings.js';
import { LED_PATTERNS, patternLitAt } from '../../appliance/gpio/led-patterns.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { FakeApplianceService } from '../helpers/fake-appliance-service.js';
import { SimHost, type SimHostOptions } from '../helpers/sim-host.js';
import { FakeClock } from '../helpers/fake-clock.js';

const BUTTON = 17;
const LED = 22;
const SW = 23;
const RST = 27;
const PLED = 24;

const withPower: GpioSettingsInput = { power: { switchPin: SW, resetPin: RST, ledPin: PLED } };
const senseOnly: GpioSettingsInput = { power: { ledPin: PLED } };

async function setup(settings: GpioSettingsInput = {}, host: Partial<SimHostOptions> | null = null) {
  const clock = new FakeClock();
  const sim = new SimulatedGpioBackend({ clock, inputs: { [BUTTON]: 1 } });
  const simHost = host ? new SimHost(sim, clock, { switchPin: SW, resetPin: RST, ledPin: PLED, ...host }) : null;
  const service = new FakeApplianceService(clock);
  const audit: GpioAuditEntry[] = [];
  const gpio = new GpioComponent(service, settings, { backend: sim, clock, audit: (e) => audit.push(e) });
  let changes = 0;
  gpio.on('change', () => changes++);
  await gpio.start();
  return { clock, sim, host: simHost, service, audit, gpio, changes: () => changes };
}

async function press(sim: SimulatedGpioBackend, clock: FakeClock, holdMs: number): Promise<void> {
  sim.setInput(BUTTON, 0);
  await clock.advance(holdMs);
  sim.setInput(BUTTON, 1);
  await clock.advance(100);
}

/** Checks the LED played `name` from t0 for `ms` (sampled every 10 ms). */
function assertPattern(sim: SimulatedGpioBackend, name: keyof typeof LED_PATTERNS, t0: number, ms: number): void {
  for (let dt = 0; dt < ms; dt += 10) {
    assert.equal(sim.levelAt(LED, t0 + dt) === 1, patternLitAt(LED_PATTERNS[name], dt), `${name} at +${dt} ms`);
  }
}

describe('gpio component: a machine without GPIO', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-gpio-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('starts with GPIO enabled, runs without it, and says why', async () => {
    const clock = new FakeClock();
    const service = new FakeApplianceService(clock);
    const gpio = new GpioComponent(service, { enabled: true, ...withPower }, { sysfsRoot: dir, clock, audit: () => {} });
    await gpio.start();
    await gpio.start(); // idempotent
    const status = gpio.status();
    assert.equal(status.enabled, true);
    assert.equal(status.available, false);
    assert.match(status.reason ?? '', /^no .*class\/gpio \(not a Raspberry Pi/);
    assert.equal(status.led.pattern, 'off');
    assert.deepEqual(status.pins.map((p) => [p.role, p.bcm, p.level]), [
      ['button', 17, null],
      ['status-led', 22, null],
      ['power-switch', 23, null],
      ['reset-switch', 27, null],
      ['power-led', 24, null],
    ]);
    assert.throws(
      () => gpio.powerAction('restore-now', 'alice'),
      (e) => isSnapbackError(e, 'NOT_SUPPORTED') && /class\/gpio/.test(e.message),
    );
    service.emit('status'); // no listener left behind to trip over
    await gpio.stop();
    await gpio.stop();
    assert.equal(clock.pendingTimers, 0);
  });

  it('disabled in the settings: off, with that reason', async () => {
    const clock = new FakeClock();
    const gpio = new GpioComponent(new FakeApplianceService(clock), { enabled: false }, { sysfsRoot: dir, clock, audit: () => {} });
    await gpio.start();
    assert.equal(gpio.status().available, false);
    assert.match(gpio.status().reason ?? '', /disabled/);
    await gpio.stop();
  });

  it('rejects bad settings with BAD_ARGUMENT (a pin used twice, a pin off the header)', () => {
    const service = new FakeApplianceService(new FakeClock());
    assert.throws(
      () => new GpioComponent(service, { power: { switchPin: 17 } }, { audit: () => {} }),
      (e) => isSnapbackError(e, 'BAD_ARGUMENT') && /GPIO17 is already used by button\.pin/.test(e.message),
    );
    assert.throws(
      () => new GpioComponent(service, { button: { pin: 40 } }, { audit: () => {} }),
      (e) => isSnapbackError(e, 'BAD_ARGUMENT') && /button\.pin/.test(e.message),
    );
  });
});

describe('gpio component: status and LED', () => {
  it('claims the wired lines and shows their live levels', async () => {
    const { gpio, sim } = await setup(withPower, { on: true });
    assert.deepEqual(sim.exportedLines(), [17, 22, 23, 24, 27]);
    const status = gpio.status();
    assert.equal(status.available, true);
    assert.equal(status.backend?.kind, 'simulated');
    const byRole = Object.fromEntries(status.pins.map((p) => [p.role, p]));
    assert.deepEqual([byRole.button?.level, byRole.button?.active], [1, false]);
    assert.deepEqual([byRole['status-led']?.level, byRole['status-led']?.active], [1, true]); // steady
    assert.deepEqual([byRole['power-led']?.level, byRole['power-led']?.active], [0, true]); // lit, active-low
    assert.deepEqual([byRole['power-switch']?.level, byRole['power-switch']?.active], [0, false]);
    assert.equal(status.host.power, 'on');
    assert.equal(status.led.pattern, 'steady');
    assert.deepEqual(status.power.wired, { power: true, reset: true, led: true });
  });

  it('the LED follows the appliance: steady → slow blink (restoring) → double blink (thawed) → fast blink (error)', async () => {
    const { gpio, sim, clock, service } = await setup();
    assert.equal(gpio.status().led.pattern, 'steady');
    assertPattern(sim, 'steady', 0, 10);

    service.update((s) => (s.hydration.running = true));
    let t0 = clock.now();
    await clock.advance(4000);
    assert.equal(gpio.status().led.pattern, 'slow-blink');
    assertPattern(sim, 'slow-blink', t0, 4000);

    service.update((s) => {
      s.hydration.running = false;
      s.mode = 'thawed';
    });
    t0 = clock.now();
    await clock.advance(3000);
    assertPattern(sim, 'double-blink', t0, 3000);

    service.update((s) => (s.disk.ioErrors = 2));
    t0 = clock.now();
    await clock.advance(1000);
    assertPattern(sim, 'fast-blink', t0, 1000);
    assert.equal(gpio.status().led.pattern, 'fast-blink');

    await gpio.stop();
    assert.equal(sim.level(LED), 0);
    assert.deepEqual(sim.exportedLines(), []);
    assert.equal(clock.pendingTimers, 0);
  });

  it('a line that cannot be claimed disables only its part', async () => {
    const clock = new FakeClock();
    const sim = new SimulatedGpioBackend({ clock, inputs: { [BUTTON]: 1 } });
    sim.failExport(LED, 'Device or resource busy');
    const service = new FakeApplianceService(clock);
    const gpio = new GpioComponent(service, {}, { backend: sim, clock, audit: () => {} });
    await gpio.start();
    const status = gpio.status();
    assert.equal(status.available, true);
    assert.equal(status.led.wired, false);
    assert.match(status.pins.find((p) => p.role === 'status-led')?.error ?? '', /busy/);
    assert.equal(status.button.wired, true);
    await press(sim, clock, 200);
    assert.deepEqual(service.ends.map((e) => e.reason), ['button']);
    await gpio.stop();
  });
});

describe('gpio component: the reset button', () => {
  it('short press without power sense: ends the session at once (reason button)', async () => {
    const { sim, clock, service, audit } = await setup();
    await press(sim, clock, 200);
    assert.deepEqual(service.ends.map((e) => e.reason), ['button']);
    assert.ok(audit.some((e) => e.actor === 'button' && e.action === 'gpio.button.short-press'));
  });

  it('short press while the host runs: armed, then ends the session once the host is off', async () => {
    const { sim, clock, service, gpio, host } = await setup(senseOnly, { on: true });
    assert.ok(host);
    await press(sim, clock, 200);
    assert.equal(service.ends.length, 0);
    assert.equal(gpio.status().button.armedEnd?.by, 'button');
    await clock.advance(60_000); // the host keeps running: nothing happens
    assert.equal(service.ends.length, 0);
    host.setPower(false);
    await clock.advance(5100);
    assert.deepEqual(service.ends.map((e) => e.reason), ['button']); // once, not also 'host-power-off'
    assert.equal(gpio.status().button.armedEnd, null);
  });

  it('short press while the host is off: ends the session at once', async () => {
    const { sim, clock, service } = await setup(senseOnly, { on: false });
    await clock.advance(6000);
    await press(sim, clock, 200);
    assert.deepEqual(service.ends.map((e) => e.reason), ['button']);
  });

  it('long press without power control: the LED warns (~2 s), then the session ends at once', async () => {
    const { sim, clock, service, gpio } = await setup();
    service.endDurationMs = 3000;
    sim.setInput(BUTTON, 0);
    await clock.advance(50 + 3000); // debounce + long press
    const warnAt = clock.now();
    assert.equal(gpio.status().led.pattern, 'warning');
    assert.equal(gpio.status().button.warning, true);
    sim.setInput(BUTTON, 1);
    await clock.advance(1990);
    assert.equal(service.ends.length, 0);
    assertPattern(sim, 'warning', warnAt, 1990);
    await clock.advance(10);
    assert.deepEqual(service.ends.map((e) => e.reason), ['button']);
    assert.equal(gpio.status().led.pattern, 'slow-blink'); // the session is ending
    await clock.advance(3000);
    assert.equal(gpio.status().led.pattern, 'steady');
  });

  it('a press during the warning cancels the restore', async () => {
    const { sim, clock, service, gpio, audit } = await setup();
    sim.setInput(BUTTON, 0);
    await clock.advance(3100);
    sim.setInput(BUTTON, 1);
    await clock.advance(500);
    await press(sim, clock, 150);
    assert.equal(gpio.status().button.warning, false);
    await clock.advance(10_000);
    assert.equal(service.ends.length, 0);
    assert.ok(audit.some((e) => e.action === 'gpio.button.cancelled'));
    assert.equal(gpio.status().led.pattern, 'steady');
  });

  it('long press with power control: warning, then the restore-now sequence; the session ends once', async () => {
    const { sim, clock, service, gpio, host, audit } = await setup(withPower, { on: true, shutdownMs: 15_000 });
    assert.ok(host);
    sim.setInput(BUTTON, 0);
    await clock.advance(3050);
    sim.setInput(BUTTON, 1);
    await clock.advance(2000); // warning
    assert.equal(gpio.status().power.running?.action, 'restore-now');
    assert.equal(gpio.status().power.running?.actor, 'button');
    assert.equal(gpio.status().led.pattern, 'slow-blink');
    await clock.advance(15_500 + 5100);
    assert.equal(host.on, false);
    assert.deepEqual(service.ends.map((e) => e.reason), ['button']);
    await clock.advance(3000);
    assert.equal(host.on, true);
    assert.equal(gpio.status().power.state, 'idle');
    assert.equal(gpio.status().led.pattern, 'steady');
    assert.deepEqual(service.ends.map((e) => e.reason), ['button']);
    assert.ok(audit.some((e) => e.actor === 'button' && e.action === 'gpio.power.restore-now' && e.details?.result === 'ok'));
  });
});

describe('gpio component: host power and sessions', () => {
  it('the power LED dark for hostOffAfterMs ends the session (host-power-off); every transition is recorded', async () => {
    const { clock, service, host, gpio } = await setup(senseOnly, { on: true });
    assert.ok(host);
    host.setPower(false);
    await clock.advance(4000);
    assert.equal(gpio.status().host.power, 'dark');
    assert.equal(service.ends.length, 0);
    await clock.advance(1100);
    assert.deepEqual(service.ends.map((e) => e.reason), ['host-power-off']);
    assert.equal(gpio.status().host.power, 'off');
    host.setPower(true);
    await clock.advance(100);
    assert.deepEqual(service.hostEvents.map((e) => e.what), [
      'power LED dark',
      'host off: power LED dark for 5000 ms',
      'power LED on',
    ]);
    assert.equal(service.ends.length, 1);
  });

  it('a sleeping host (blinking LED) keeps its session', async () => {
    const { clock, service, host } = await setup(senseOnly, { on: true });
    assert.ok(host);
    for (let i = 0; i < 300; i++) {
      host.setPower(false);
      await clock.advance(1500);
      host.setPower(true);
      await clock.advance(1500);
    }
    assert.equal(service.ends.length, 0);
  });

  it('a host off when the daemon starts does not end the fresh session again', async () => {
    const { clock, service, gpio } = await setup(senseOnly, { on: false });
    await clock.advance(60_000);
    assert.equal(gpio.status().host.power, 'off');
    assert.equal(service.ends.length, 0);
  });

  it('endSessionOnPowerOff: false keeps sessions across power-offs (the button can still arm one)', async () => {
    const { clock, service, host } = await setup({ power: { ledPin: PLED, endSessionOnPowerOff: false } }, { on: true });
    assert.ok(host);
    host.setPower(false);
    await clock.advance(60_000);
    assert.equal(service.ends.length, 0);
  });

  it('a host that does not come back after restore now: fast blink until it is seen on again', async () => {
    const { clock, service, gpio, host } = await setup(withPower, { on: true, shutdownMs: 1000, neverBoots: true });
    assert.ok(host);
    void gpio.powerAction('restore-now', 'alice');
    await clock.advance(1500 + 5100 + 500 + 30_100);
    assert.equal(service.ends.length, 1);
    assert.equal(gpio.status().power.state, 'error');
    assert.match(gpio.status().power.error?.message ?? '', /did not come back/);
    assert.equal(gpio.status().led.pattern, 'fast-blink');
    host.setPower(true); // someone switches it on by hand
    await clock.advance(100);
    assert.equal(gpio.status().power.state, 'idle');
    assert.equal(gpio.status().led.pattern, 'steady');
  });

  it('stop during restore now releases the outputs and every line', async () => {
    const { clock, sim, gpio } = await setup(withPower, { on: true, onShortPress: 'ignore' });
    const done = gpio.powerAction('restore-now', 'alice');
    await clock.advance(200);
    assert.equal(sim.level(SW), 1);
    await gpio.stop();
    assert.equal(await done, 'aborted');
    assert.equal(sim.level(SW), 0);
    assert.deepEqual(sim.exportedLines(), []);
    await clock.advance(600_000);
    assert.equal(clock.pendingTimers, 0);
  });

  it("emits 'change' when something in the status changes", async () => {
    const { clock, host, changes } = await setup(senseOnly, { on: true });
    assert.ok(host);
    const before = changes();
    host.setPower(false);
    await clock.advance(100);
    assert.ok(changes() > before);
  });
});
