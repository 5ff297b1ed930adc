/** The reset button: debouncing, short and long presses (simulated GPIO, fake clock). */
import assert from 'node:assert/strict';
import { DebouncedInput } from '../../appliance/gpio/debounced-input.js';
import { defaultGpioSettings } from '../../appliance/gpio/gpio-settings.js';
import { ResetButton } from '../../appliance/gpio/reset-button.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { FakeClock } from '../helpers/fake-clock.js';

const PIN = 17;
const UP = 1; // released (pull-up)
const DOWN = 0; // pressed (to GND)

function setup(overrides: Partial<ReturnType<typeof defaultGpioSettings>['button']> = {}) {
  const clock = new FakeClock();
  const sim = new SimulatedGpioBackend({ clock, inputs: { [PIN]: UP } });
  const events: { kind: 'short' | 'long'; at: number }[] = [];
  const settings = { ...defaultGpioSettings().button, ...overrides, pin: PIN };
  const button = new ResetButton(sim, clock, settings, {
    onShortPress: () => events.push({ kind: 'short', at: clock.now() }),
    onLongPress: () => events.push({ kind: 'long', at: clock.now() }),
  });
  button.start();
  return { clock, sim, events, button, settings };
}

/** Contact bounce: `n` flips `everyMs` apart, ending on `final`. */
async function bounce(sim: SimulatedGpioBackend, clock: FakeClock, final: 0 | 1, n = 6, everyMs = 3): Promise<void> {
  for (let i = 0; i < n; i++) {
    sim.setInput(PIN, ((n - i) % 2 === 0 ? 1 - final : final) as 0 | 1);
    await clock.advance(everyMs);
  }
  sim.setInput(PIN, final);
}

describe('gpio: debounced input', () => {
  it('reports a level only after it held for debounceMs; glitches are dropped', async () => {
    const clock = new FakeClock();
    const sim = new SimulatedGpioBackend({ clock, inputs: { 5: 1 } });
    const seen: boolean[] = [];
    const input = new DebouncedInput(sim, clock, { pin: 5, activeLow: true, debounceMs: 50 }, (a) => seen.push(a));
    input.start();
    assert.equal(input.active, false);
    // A 30 ms glitch low: shorter than the debounce, never reported.
    sim.setInput(5, 0);
    await clock.advance(30);
    sim.setInput(5, 1);
    await clock.advance(200);
    assert.deepEqual(seen, []);
    // A real change, reported 50 ms after the last edge.
    sim.setInput(5, 0);
    await clock.advance(49);
    assert.deepEqual(seen, []);
    await clock.advance(1);
    assert.deepEqual(seen, [true]);
    assert.equal(input.active, true);
    input.stop();
    assert.equal(sim.isExported(5), false);
    assert.equal(clock.pendingTimers, 0);
  });
});

describe('gpio: reset button', () => {
  it('a bouncing short press is one short press, reported at the release', async () => {
    const { clock, sim, events } = setup();
    await bounce(sim, clock, DOWN);
    await clock.advance(300);
    assert.equal(events.length, 0);
    await bounce(sim, clock, UP);
    await clock.advance(100);
    assert.equal(events.length, 1);
    assert.equal(events[0]?.kind, 'short');
  });

  it('bounces alone (shorter than the debounce) are no press at all', async () => {
    const { clock, sim, events } = setup();
    for (let i = 0; i < 10; i++) {
      sim.setInput(PIN, DOWN);
      await clock.advance(10);
      sim.setInput(PIN, UP);
      await clock.advance(10);
    }
    await clock.advance(5000);
    assert.equal(events.length, 0);
  });

  it('a long press fires once it has been held longPressMs, while still held; the release adds nothing', async () => {
    const { clock, sim, events, settings } = setup();
    sim.setInput(PIN, DOWN);
    await clock.advance(settings.debounceMs + settings.longPressMs - 1);
    assert.equal(events.length, 0);
    await clock.advance(1);
    assert.deepEqual(events, [{ kind: 'long', at: settings.debounceMs + settings.longPressMs }]);
    await clock.advance(5000); // still held
    sim.setInput(PIN, UP);
    await clock.advance(1000);
    assert.equal(events.length, 1);
  });

  it('a press just shorter than longPressMs is short', async () => {
    const { clock, sim, events, settings } = setup({ longPressMs: 2000 });
    sim.setInput(PIN, DOWN);
    await clock.advance(settings.debounceMs + 1990);
    sim.setInput(PIN, UP);
    await clock.advance(settings.debounceMs);
    assert.deepEqual(events.map((e) => e.kind), ['short']);
  });

  it('honours polarity, debounce and long-press time from the settings', async () => {
    const clock = new FakeClock();
    const sim = new SimulatedGpioBackend({ clock, inputs: { [PIN]: 0 } });
    const kinds: string[] = [];
    const button = new ResetButton(
      sim,
      clock,
      { ...defaultGpioSettings().button, pin: PIN, activeLow: false, debounceMs: 10, longPressMs: 1000 },
      { onShortPress: () => kinds.push('short'), onLongPress: () => kinds.push('long') },
    );
    button.start();
    sim.setInput(PIN, 1); // active-high: pressed
    await clock.advance(10 + 1000);
    sim.setInput(PIN, 0);
    await clock.advance(10);
    sim.setInput(PIN, 1);
    await clock.advance(10 + 100);
    sim.setInput(PIN, 0);
    await clock.advance(10);
    assert.deepEqual(kinds, ['long', 'short']);
  });

  it('a button already held at start (stuck) is no press until released and pressed again', async () => {
    const clock = new FakeClock();
    const sim = new SimulatedGpioBackend({ clock, inputs: { [PIN]: DOWN } });
    const kinds: string[] = [];
    const button = new ResetButton(sim, clock, { ...defaultGpioSettings().button, pin: PIN }, {
      onShortPress: () => kinds.push('short'),
      onLongPress: () => kinds.push('long'),
    });
    button.start();
    assert.equal(button.pressed, true);
    await clock.advance(60_000);
    sim.setInput(PIN, UP);
    await clock.advance(100);
    assert.deepEqual(kinds, []);
    sim.setInput(PIN, DOWN);
    await clock.advance(200);
    sim.setInput(PIN, UP);
    await clock.advance(100);
    assert.deepEqual(kinds, ['short']);
  });

  it('stop releases the line and cancels a pending long press', async () => {
    const { clock, sim, events, button } = setup();
    sim.setInput(PIN, DOWN);
    await clock.advance(100);
    button.stop();
    await clock.advance(10_000);
    assert.equal(events.length, 0);
    assert.equal(sim.isExported(PIN), false);
    assert.equal(clock.pendingTimers, 0);
  });
});
