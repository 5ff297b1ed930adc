/**
 * A model switch under power cuts: for each seeded scenario (a session on model A: writes,
 * flushes, session ends, part of a restore, the restore running), the switch to model B is run
 * once with the power cut at each of its writes and flushes in turn, and once more past its end
 * (the restore from B and a host write follow). After each cut: the log names A, whose
 * invariants hold and whose session reads as the host left it, or B, with D wherever the disk
 * may differ from B and the host reading B; a full restore then makes the disk equal to the
 * model in force. Never a mix. SWITCH_SEED=N runs one seed.
 */
import assert from 'node:assert/strict';
import { prepareSwitch, switchWithCut, checkAfterCut, assertPendingIsPlan, adoptWithCut, MODEL_B_ID, MODEL_C_ID } from '../helpers/switch-crash.js';
import { FaultDevice } from '../helpers/fault-device.js';
import { switchModel } from '../../appliance/storage/model-switch.js';

const SEEDS = Number(process.env.SWITCH_SEEDS ?? 60);

describe('model switch under power cuts', function () {
  this.timeout(600_000);

  it(`leaves the old model or the new one in force, never a mix, with a power cut at every write and flush of a switch (${SEEDS} scenarios)`, async () => {
    const only = process.env.SWITCH_SEED;
    const seeds = only ? [Number(only)] : Array.from({ length: SEEDS }, (_, i) => 7000 + i);
    let cuts = 0;
    const inForce = { A: 0, B: 0 };
    for (const seed of seeds) {
      for (let cutAt = 1; ; cutAt++) {
        const sc = await prepareSwitch(seed);
        let result;
        try {
          result = await switchWithCut(sc, cutAt);
          inForce[await checkAfterCut(sc, result.completed, 'B')]++;
        } catch (err) {
          (err as Error).message = `seed ${seed}, cut at write/flush ${cutAt} of the switch (rerun with SWITCH_SEED=${seed}): ${(err as Error).message}`;
          throw err;
        }
        cuts++;
        if (result.completed) break;
        assert.ok(cutAt < 10_000, 'the switch never completes');
      }
    }
    // both outcomes were reached (a test that never saw one of them would prove little)
    assert.ok(inForce.A > 0 && inForce.B > 0, `outcomes: ${JSON.stringify(inForce)} over ${cuts} cuts`);
  });

  it('a switch from a disk with nothing dirty marks exactly the regions whose digests differ as pending, and the host then reads the new model', async () => {
    let checked = 0;
    for (let seed = 7000; seed < 7000 + SEEDS; seed++) {
      const sc = await prepareSwitch(seed);
      if (!sc.cleanBefore) continue;
      const { pd, hydrator, domain, log } = sc.stack;
      await hydrator.stop(); // nothing restored after the switch: the pending set is the plan's
      await switchModel(pd, hydrator, new FaultDevice('modelB', sc.modelB, domain), sc.plan);
      assert.equal(log.info.modelId, MODEL_B_ID);
      assertPendingIsPlan(sc, log);
      assert.equal(log.pendingCount, sc.plan.regions);
      assert.ok((await pd.read(0, pd.size)).equals(sc.modelB), `seed ${seed}: the host does not read the new model`);
      checked++;
    }
    assert.ok(checked >= 5, `only ${checked} scenarios had nothing dirty`);
  });

  it(`capture --activate: a power cut at every write and flush leaves the old model or the captured one in force, and the host reads the same bytes either way (${SEEDS} scenarios)`, async () => {
    const seeds = process.env.SWITCH_SEED ? [Number(process.env.SWITCH_SEED)] : Array.from({ length: SEEDS }, (_, i) => 7000 + i);
    const inForce = { A: 0, C: 0 };
    for (const seed of seeds) {
      for (let cutAt = 1; ; cutAt++) {
        const sc = await prepareSwitch(seed);
        try {
          const { completed } = await adoptWithCut(sc, cutAt);
          inForce[await checkAfterCut(sc, completed, 'C')]++;
          if (completed) break;
        } catch (err) {
          (err as Error).message = `seed ${seed}, cut at write/flush ${cutAt} (rerun with SWITCH_SEED=${seed}): ${(err as Error).message}`;
          throw err;
        }
      }
    }
    assert.ok(inForce.A > 0 && inForce.C > 0, `outcomes: ${JSON.stringify(inForce)}`);
  });

  it('capture --activate restores nothing: afterwards exactly the regions pending before are pending, the written ones are clean', async () => {
    let withWrites = 0;
    for (let seed = 7000; seed < 7000 + SEEDS; seed++) {
      const sc = await prepareSwitch(seed);
      const { log, pd } = sc.stack;
      const writtenBefore = log.writtenCount;
      const { completed, pendingBefore } = await adoptWithCut(sc, Infinity);
      assert.ok(completed);
      assert.equal(log.info.modelId, MODEL_C_ID);
      for (let r = 0; r < log.regionCount; r++) assert.equal(log.isPending(r), pendingBefore.has(r), `seed ${seed}: region ${r} ${pendingBefore.has(r) ? 'was pending and is not' : 'is pending after the adoption'}`);
      assert.equal(log.writtenCount, 0);
      sc.stack.domain.lost = false;
      sc.stack.domain.crashAt = Infinity;
      assert.ok((await pd.read(0, pd.size)).equals(sc.viewA), `seed ${seed}: the host's view changed`);
      if (writtenBefore > 0) withWrites++;
    }
    assert.ok(withWrites >= 5, `only ${withWrites} scenarios had written regions`);
  });
});
