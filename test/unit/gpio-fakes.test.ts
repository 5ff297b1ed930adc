/**
 * Tests of the GPIO tests' doubles (FakeClock in test/helpers/fake-clock.ts,
 * FakeApplianceService in test/helpers/fake-appliance-service.ts), so that a GPIO test that
 * fails is a failure of the code under test, not of its fakes.
 */
import assert from 'node:assert/strict';
import { FakeApplianceService } from '../helpers/fake-appliance-service.js';
import { FakeClock } from '../helpers/fake-clock.js';

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
