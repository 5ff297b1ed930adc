/**
 * The background restore's rate limit: a new rate takes effect at once, whatever the restore
 * copied under the old one. (Found on the host rig: a restore that copied 24 MiB in its first
 * second, unlimited, and was then limited to 32 KiB/s owed 768 s of pacing; lifting the limit
 * again did not end that wait, and the power cycle after the download waited for it.)
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Prng } from '../helpers/prng.js';
import { buildStack } from '../helpers/storage-rig.js';
import { FakeClock, settle } from '../helpers/fake-clock.js';
import { Hydrator } from '../../appliance/storage/hydrator.js';

const REGION = 4096;

async function limitedHydrator(bytesPerSecond: number): Promise<{ h: Hydrator; clock: FakeClock; st: Awaited<ReturnType<typeof buildStack>> }> {
  const st = await buildStack(new Prng(31), { regionSize: REGION, size: 16 * REGION, initialDisk: 'garbage' });
  await st.hydrator.stop();
  const clock = new FakeClock();
  const h = new Hydrator(st.pd, { batchBytes: 8 * REGION, chunkBytes: REGION, maxYieldMs: 0, rateLimit: bytesPerSecond, clock });
  return { h, clock, st };
}

describe('the background restore under a rate limit', () => {
  it('paces a new rate from the moment it is set: bytes copied under a slower rate are no debt, and a wait in progress ends', async () => {
    // 1 byte per second: after the first region the restore owes 4096 s
    const { h, clock, st } = await limitedHydrator(1);
    let progress = once(h, 'progress');
    h.start();
    await progress;
    await settle();
    assert.equal(h.progress().done, 1, 'one region, then the pacing wait');
    // 8 KiB/s: the next region goes at once (the wait of the old rate ends), then 0.5 s per region
    progress = once(h, 'progress');
    h.setRateLimit(2 * REGION);
    await progress;
    await settle();
    assert.equal(h.progress().done, 2, 'the new rate ended the wait of the old one');
    await clock.advance(499);
    await settle();
    assert.equal(h.progress().done, 2, 'and paces at 8 KiB/s from the moment it was set');
    progress = once(h, 'progress');
    await clock.advance(1);
    await progress;
    assert.equal(h.progress().done, 3);
    // the limit lifted: the rest at once, with no time passing
    const idle = once(h, 'idle');
    h.setRateLimit(null);
    await idle;
    assert.equal(st.log.pendingCount, 0);
    assert.ok(st.disk.snapshot().equals(st.modelBytes), 'the disk is the model');
    await h.stop();
    assert.equal(clock.pendingTimers, 0, 'no pacing timer left');
  });

  it('a stop ends a pacing wait at once', async () => {
    const { h, clock } = await limitedHydrator(1);
    const progress = once(h, 'progress');
    h.start();
    await progress;
    await settle();
    assert.equal(h.running, true, 'waiting for its pace');
    await h.stop();
    assert.equal(h.running, false);
    assert.equal(clock.pendingTimers, 0);
  });
});
