/** The status LED: every pattern over time, and which pattern each appliance state shows. */
import assert from 'node:assert/strict';
import {
  LED_PATTERNS,
  choosePattern,
  patternLitAt,
  patternPeriod,
  type LedPatternName,
} from '../../appliance/gpio/led-patterns.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { StatusLed } from '../../appliance/gpio/status-led.js';
import { makeStatus } from '../helpers/fake-appliance-service.js';
import { FakeClock } from '../helpers/fake-clock.js';

const PIN = 22;

function setup(activeLow = false) {
  const clock = new FakeClock();
  const sim = new SimulatedGpioBackend({ clock });
  const led = new StatusLed(sim, clock, { pin: PIN, activeLow });
  led.start();
  return { clock, sim, led };
}

/** Whether the LED is lit at time t, read from the simulated pin's history. */
function litAt(sim: SimulatedGpioBackend, t: number, activeLow = false): boolean {
  const level = sim.levelAt(PIN, t);
  assert.notEqual(level, undefined, `no level at ${t}`);
  return (level === 1) !== activeLow;
}

/** Hand-written expectations: [from, to) intervals that are lit within one period. */
const EXPECTED: Record<Exclude<LedPatternName, 'off' | 'steady'>, { period: number; lit: [number, number][] }> = {
  'slow-blink': { period: 2000, lit: [[0, 1000]] },
  'double-blink': { period: 1500, lit: [[0, 150], [300, 450]] },
  'fast-blink': { period: 200, lit: [[0, 100]] },
  warning: { period: 1000, lit: [[0, 100], [200, 300], [400, 500]] },
};

describe('gpio: status LED patterns over time', () => {
  for (const [name, exp] of Object.entries(EXPECTED) as [keyof typeof EXPECTED, (typeof EXPECTED)[keyof typeof EXPECTED]][]) {
    it(`${name}: lit exactly in its on-steps, cycle after cycle`, async () => {
      const { clock, sim, led } = setup();
      await clock.advance(1234); // start the pattern at an arbitrary time
      const t0 = clock.now();
      led.show(name);
      assert.equal(patternPeriod(LED_PATTERNS[name]), exp.period);
      await clock.advance(exp.period * 3);
      for (let dt = 0; dt < exp.period * 3; dt += 10) {
        const phase = dt % exp.period;
        const want = exp.lit.some(([from, to]) => phase >= from && phase < to);
        assert.equal(litAt(sim, t0 + dt), want, `${name} at +${dt} ms`);
        assert.equal(patternLitAt(LED_PATTERNS[name], dt), want);
      }
    });
  }

  it('steady: lit and held without timers; off: dark', async () => {
    const { clock, sim, led } = setup();
    led.show('steady');
    const t0 = clock.now();
    assert.equal(clock.pendingTimers, 0);
    await clock.advance(60_000);
    for (let dt = 0; dt <= 60_000; dt += 1000) assert.equal(litAt(sim, t0 + dt), true);
    led.show('off');
    await clock.advance(10);
    assert.equal(litAt(sim, clock.now()), false);
    assert.equal(led.lit, false);
  });

  it('an active-low LED gets the inverted levels', async () => {
    const { clock, sim, led } = setup(true);
    assert.equal(sim.level(PIN), 1); // dark at export: high
    led.show('fast-blink');
    const t0 = clock.now();
    await clock.advance(400);
    assert.equal(sim.levelAt(PIN, t0 + 50), 0);
    assert.equal(sim.levelAt(PIN, t0 + 150), 1);
    assert.equal(litAt(sim, t0 + 250, true), true);
  });

  it('showing the pattern already playing keeps its rhythm; another restarts at its first step', async () => {
    const { clock, sim, led } = setup();
    led.show('slow-blink');
    const t0 = clock.now();
    await clock.advance(1500);
    led.show('slow-blink');
    await clock.advance(600);
    assert.equal(litAt(sim, t0 + 1900), false);
    assert.equal(litAt(sim, t0 + 2050), true); // the original rhythm, not a restart at 1500
    led.show('double-blink');
    const t1 = clock.now();
    await clock.advance(1500);
    assert.equal(litAt(sim, t1 + 100), true);
    assert.equal(litAt(sim, t1 + 200), false);
    assert.equal(litAt(sim, t1 + 350), true);
  });

  it('stop turns the LED off, releases the line and leaves no timer', async () => {
    const { clock, sim, led } = setup();
    led.show('fast-blink');
    await clock.advance(50);
    led.stop();
    assert.equal(sim.isExported(PIN), false);
    assert.equal(sim.level(PIN), 0);
    assert.equal(clock.pendingTimers, 0);
  });
});

describe('gpio: which pattern the appliance state shows', () => {
  const quiet = { warning: false, restoring: false, error: false };

  it('frozen and ready: steady', () => {
    assert.equal(choosePattern(makeStatus(), quiet), 'steady');
  });

  it('restoring: slow blink (hydration running, medium ejected while a session ends, or GPIO ending one)', () => {
    const hydrating = makeStatus();
    hydrating.hydration.running = true;
    assert.equal(choosePattern(hydrating, quiet), 'slow-blink');
    const ejected = makeStatus();
    ejected.host.gadget = {
      enabled: true,
      udc: 'fe980000.usb',
      udcState: 'configured',
      bound: true,
      nbdDevice: '/dev/nbd0',
      medium: 'ejected',
      lastError: null,
    };
    assert.equal(choosePattern(ejected, quiet), 'slow-blink');
    assert.equal(choosePattern(makeStatus(), { ...quiet, restoring: true }), 'slow-blink');
  });

  it('thawed: double blink (but restoring wins)', () => {
    const thawed = makeStatus();
    thawed.mode = 'thawed';
    assert.equal(choosePattern(thawed, quiet), 'double-blink');
    thawed.hydration.running = true;
    assert.equal(choosePattern(thawed, quiet), 'slow-blink');
  });

  it('errors: fast blink (disk I/O errors, gadget error, GPIO-side failure, no status)', () => {
    const io = makeStatus();
    io.disk.ioErrors = 1;
    io.hydration.running = true;
    assert.equal(choosePattern(io, quiet), 'fast-blink');
    assert.equal(choosePattern(makeStatus(), { ...quiet, error: true, restoring: true }), 'fast-blink');
    assert.equal(choosePattern(null, quiet), 'fast-blink');
  });

  it('errors: fast blink when a part of the daemon failed or runs with a problem, the state file cannot be written, or the restore stopped', () => {
    const http = makeStatus();
    http.components = [
      { name: 'nbd', essential: true, state: 'running', problem: null },
      { name: 'http', essential: false, state: 'failed', problem: 'cannot listen on 0.0.0.0:80: the address is in use' },
    ];
    assert.equal(choosePattern(http, quiet), 'fast-blink');
    const gadgetDefaults = makeStatus();
    gadgetDefaults.components = [{ name: 'gadget', essential: true, state: 'running', problem: 'gadget.json: … the gadget runs with the default settings' }];
    assert.equal(choosePattern(gadgetDefaults, quiet), 'fast-blink');
    const off = makeStatus();
    off.components = [{ name: 'gadget', essential: true, state: 'off', problem: null }];
    assert.equal(choosePattern(off, quiet), 'steady', 'a part switched off on purpose is no error');
    const full = makeStatus();
    full.stateDir.writeError = 'writing the state file: no space left on the device';
    assert.equal(choosePattern(full, quiet), 'fast-blink');
    const stopped = makeStatus();
    stopped.hydration.lastError = 'ENOSPC: no space left on device, write';
    assert.equal(choosePattern(stopped, quiet), 'fast-blink');
  });

  it('the long-press warning wins over everything', () => {
    const io = makeStatus();
    io.disk.ioErrors = 3;
    assert.equal(choosePattern(io, { warning: true, restoring: true, error: true }), 'warning');
  });
});
