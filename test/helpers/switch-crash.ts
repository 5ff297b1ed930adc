/**
 * The model-switch crash test's rig (test/unit/model-switch-crash.test.ts): a storage stack on
 * fault-injecting devices with a second model B that differs from the first (A) in chosen
 * regions, a seeded workload on A (writes, flushes, session ends, part of a restore), then a
 * switch to B with the power cut at a chosen write or flush, and the checks on what the cut
 * left: the log names A with its invariants and the host's data, or B with D wherever the disk
 * may differ from B; the host reads A's view or B, never a mix.
 */
import assert from 'node:assert/strict';
import { Prng } from './prng.js';
import { buildStack, randomShape, HostReference, MODEL_ID, type Stack } from './storage-rig.js';
import { FaultDevice, memoryDevice, isPowerLost } from './fault-device.js';
import { RegionLog } from '../../appliance/storage/region-log.js';
import { ProtectedDisk } from '../../appliance/storage/protected-disk.js';
import { Hydrator } from '../../appliance/storage/hydrator.js';
import { Manifest } from '../../appliance/storage/manifest.js';
import { digestRegionsInto, DIGEST_LENGTHS } from '../../appliance/storage/hash-functions.js';
import { planSwitch, switchModel, adoptCapturedModel, type SwitchPlan } from '../../appliance/storage/model-switch.js';

export const MODEL_B_ID = 'cd'.repeat(32);
/** The model a capture makes of the host's view (adoptWithCut). */
export const MODEL_C_ID = 'ef'.repeat(32);

/** A manifest of `bytes` at this region size (sha256), with the id the test gives it. */
function manifestOf(bytes: Buffer, regionSize: number, id: string): Manifest {
  const count = Math.ceil(bytes.length / regionSize);
  const digests = Buffer.alloc(count * DIGEST_LENGTHS.sha256);
  digestRegionsInto('sha256', bytes, regionSize, digests);
  const m = Manifest.fromDigests({ name: id.slice(0, 4), size: bytes.length, regionSize, hash: 'sha256', createdAt: '', image: { size: bytes.length, mtimeMs: 0, ino: 0 } }, digests);
  // the log names models by id: keep the rig's fixed ids (the id's own hashing is not under test)
  return new Manifest({ ...m.json, id }, m.allDigests);
}

export interface SwitchScenario {
  stack: Stack;
  modelB: Buffer;
  plan: SwitchPlan;
  /** What the host reads under A once every acknowledged write is flushed (all of them are, before the switch). */
  viewA: Buffer;
  /** No region was dirty when the switch began: B must then have exactly the planned regions pending. */
  cleanBefore: boolean;
  /** Write log regions whose bytes differ between A and B (the plan may name more: a manifest region spans several). */
  trulyDiffering: Set<number>;
}

/** Builds the stack on A, runs the seeded workload to completion (no power cut yet), and plans the switch to B. */
export async function prepareSwitch(seed: number): Promise<SwitchScenario> {
  const rng = new Prng(seed);
  const shape = randomShape(rng);
  const stack = await buildStack(rng, shape);
  const { pd, hydrator, log } = stack;
  const a = stack.modelBytes;
  const rs = shape.regionSize;
  // B: A with some regions changed, some in one byte only
  const modelB = Buffer.from(a);
  const trulyDiffering = new Set<number>();
  for (let r = 0; r < log.regionCount; r++) {
    if (!rng.chance(0.3)) continue;
    const off = r * rs;
    const end = Math.min(shape.size, off + rs);
    if (rng.chance(0.3)) {
      const i = off + rng.int(end - off);
      modelB[i] = modelB[i]! ^ rng.range(1, 255);
    } else rng.bytes(end - off).copy(modelB, off);
    if (!modelB.subarray(off, end).equals(a.subarray(off, end))) trulyDiffering.add(r);
  }
  // the manifests' regions: as the log's, twice as large, or half (not under 4 KiB)
  const mrs = rng.pick([rs, rs * 2, Math.max(4096, rs / 2)]);
  const plan = planSwitch(manifestOf(a, mrs, log.info.modelId), manifestOf(modelB, mrs, MODEL_B_ID), { regionSize: rs, regionCount: log.regionCount, diskSize: shape.size });
  // the session on A before the switch
  const ref = new HostReference(a);
  const style = rng.pick(['restored', 'written', 'mixed'] as const);
  if (style !== 'written') await hydrator.runToCompletion();
  if (style !== 'restored') {
    for (let i = rng.range(1, 12); i > 0; i--) {
      const length = Math.min(shape.size, rng.pick([512, 4096, rs, 2 * rs, rng.range(1, 2 * rs)]));
      const offset = rng.int(shape.size - length + 1);
      const data = rng.chance(0.15) ? Buffer.alloc(length) : rng.bytes(length);
      const w = ref.issue(offset, data);
      await pd.write(offset, data);
      w.acked = true;
      if (rng.chance(0.2)) {
        const keepWrites = rng.chance(0.5);
        await pd.endSession({ keepWrites });
        if (!keepWrites) ref.reset(a);
      }
    }
    if (style === 'mixed') hydrator.start(); // restoring in the background when the switch comes
  }
  await pd.flush();
  const viewA = await pd.read(0, shape.size);
  assert.ok(viewA.equals(ref.current()), 'before the switch the host does not read what it wrote');
  return { stack, modelB, plan, viewA, cleanBefore: log.dirtyCount === 0, trulyDiffering };
}

/** The switch, with the power cut at write/flush number `cutAt` from its start (Infinity: none). */
export async function switchWithCut(sc: SwitchScenario, cutAt: number): Promise<{ completed: boolean; opsUsed: number }> {
  const { stack } = sc;
  const { domain } = stack;
  const modelB = new FaultDevice('modelB', sc.modelB, domain);
  const start = domain.ops;
  domain.crashAt = start + cutAt;
  let completed = false;
  try {
    await switchModel(stack.pd, stack.hydrator, modelB, sc.plan);
    completed = true;
    // the restore from B runs on, and the host writes: the cut may come here too
    stack.hydrator.start();
    await stack.pd.write(0, Buffer.alloc(Math.min(512, stack.pd.size), 7)).catch((e: unknown) => {
      if (!isPowerLost(e)) throw e;
    });
    await stack.hydrator.stop();
  } catch (e) {
    if (!isPowerLost(e)) throw e;
  }
  await stack.hydrator.stop().catch(() => undefined);
  const opsUsed = domain.ops - start;
  domain.lost = true;
  return { completed, opsUsed };
}

/**
 * Reopens what a cut left and checks it; says which model is in force: A, or the one the
 * operation puts in force (B after switchWithCut, C after adoptWithCut). Whichever it is, the
 * log has D wherever the disk differs from it, the host reads that model's view (B, or what it
 * read before), and a full restore makes the disk equal to it.
 */
export async function checkAfterCut<N extends 'B' | 'C'>(sc: SwitchScenario, completed: boolean, next: N): Promise<'A' | N> {
  const { stack } = sc;
  const size = stack.pd.size;
  const rs = stack.pd.regionSize;
  const a = stack.modelBytes;
  const nextId = next === 'B' ? MODEL_B_ID : MODEL_C_ID;
  const diskImg = stack.disk.crashImage();
  const logImg = stack.logDev.crashImage();
  const rng = new Prng(5);
  const { log } = await RegionLog.open(memoryDevice('log', logImg, rng));
  const id = log.info.modelId;
  assert.ok(id === MODEL_ID || id === nextId, `the log names neither model: ${id}`);
  const which: 'A' | N = id === nextId ? next : 'A';
  if (completed) assert.equal(which, next, `the ${next === 'B' ? 'switch' : 'adoption'} completed, yet after the power cut the log names the old model`);
  const inForce = which === 'A' ? a : next === 'B' ? sc.modelB : sc.viewA;
  // invariant 1 for the model in force: D wherever the disk differs from it
  for (let r = 0; r < log.regionCount; r++) {
    const s = r * rs;
    const e = Math.min(size, s + rs);
    if (!diskImg.subarray(s, e).equals(inForce.subarray(s, e))) assert.ok(log.isDirty(r), `${which} in force: region ${r} differs from it without D`);
  }
  const disk = memoryDevice('disk', diskImg, rng);
  const pd = new ProtectedDisk({ disk, model: memoryDevice('model', inForce, rng), log });
  const seen = await pd.read(0, size);
  if (which === 'B') {
    // the new model in force: the host reads B (the small write after the switch aside)
    const head = Math.min(512, size);
    const rest = seen.subarray(head).equals(sc.modelB.subarray(head));
    const first = seen.subarray(0, head);
    assert.ok(rest && (first.equals(sc.modelB.subarray(0, head)) || first.equals(Buffer.alloc(head, 7))), 'B in force after the cut, but the host does not read B');
    if (sc.cleanBefore && !completed) assertPendingIsPlan(sc, log);
  } else {
    // A's session goes on, or C is that session's view made a model: the host reads what it read before
    assert.ok(seen.equals(sc.viewA), `${which} in force after the cut, but the host does not read what it read before`);
  }
  // and a full restore makes the disk equal to the model in force
  await pd.endSession({ keepWrites: false });
  await new Hydrator(pd, { batchBytes: rs * 4, chunkBytes: rs, maxYieldMs: 0 }).runToCompletion();
  assert.equal(log.pendingCount, 0);
  assert.ok(disk.snapshot().subarray(0, size).equals(inForce), `after a full restore the disk differs from ${which}`);
  return which;
}

/** Nothing was dirty before the switch and nothing restored since: the planned regions are pending, no others. */
export function assertPendingIsPlan(sc: SwitchScenario, log: RegionLog): void {
  for (let r = 0; r < log.regionCount; r++) {
    const planned = (sc.plan.differing[r >> 3]! & (1 << (r & 7))) !== 0;
    assert.equal(log.isPending(r), planned, planned ? `region ${r} differs between the models but is not pending` : `region ${r} is the same in both models but pending`);
  }
  // and the plan names every region whose bytes differ
  for (const r of sc.trulyDiffering) assert.ok((sc.plan.differing[r >> 3]! & (1 << (r & 7))) !== 0, `region ${r} differs between the models but the plan misses it`);
}

/**
 * Capture --activate at the storage level: the host's view (viewA) becomes model C, put in force
 * with the power cut at write/flush `cutAt` (Infinity: none). Host I/O is stopped meanwhile, as
 * the capture does it.
 */
export async function adoptWithCut(sc: SwitchScenario, cutAt: number): Promise<{ completed: boolean; pendingBefore: Set<number> }> {
  const { pd, hydrator, log, domain } = sc.stack;
  await hydrator.stop();
  const written = new Uint8Array(Math.ceil(log.regionCount / 8));
  const pendingBefore = new Set<number>();
  for (let r = 0; r < log.regionCount; r++) {
    if (log.isWritten(r)) written[r >> 3] = written[r >> 3]! | (1 << (r & 7));
    if (log.isPending(r)) pendingBefore.add(r);
  }
  const modelC = new FaultDevice('modelC', sc.viewA, domain);
  domain.crashAt = domain.ops + cutAt;
  let completed = false;
  await pd.quiesce();
  try {
    await adoptCapturedModel(pd, hydrator, modelC, MODEL_C_ID, written);
    completed = true;
  } catch (e) {
    if (!isPowerLost(e)) throw e;
  } finally {
    pd.resume();
  }
  domain.lost = true;
  return { completed, pendingBefore };
}
