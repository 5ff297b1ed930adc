/**
 * `snapback model activate` and `snapback model capture`: through the running daemon's control
 * socket when one runs on the state directory, otherwise on the state directory itself (the
 * model switcher over an engine opened here; an activation without --now then waits for the
 * daemon's start, which ends the session).
 */
import cliProgress from 'cli-progress';
import type { ModelActivateReply, ModelActivateRequest, ModelActivationCancelReply, ModelCaptureRequest, ModelImportJob } from '../api/models.js';
import { openEngine } from '../storage/engine.js';
import { ModelLibrary } from '../storage/model-library.js';
import { StateDir } from '../storage/state-dir.js';
import { ModelSwitcher } from '../session/model-switcher.js';
import { SnapbackError } from '../errors.js';
import { callDaemon } from './control-client.js';
import { jobFailure } from './model-commands.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');

/** A byte progress bar on a terminal (nothing otherwise). */
function byteBar(label: string): { update(done: number, total: number): void; stop(): void } {
  if (!process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} MiB | ETA {eta}s`, stream: process.stderr }, cliProgress.Presets.shades_classic);
  let started = false;
  return {
    update(done, total) {
      const d = Math.floor(done / 1048576);
      const t = Math.max(1, Math.ceil(total / 1048576));
      if (!started) {
        bar.start(t, d);
        started = true;
      } else {
        bar.setTotal(t);
        bar.update(d);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** Opens the state directory's engine and a model switcher on it (no daemon runs), runs `fn`, closes. */
async function offline<T>(stateDir: string, what: string, fn: (switcher: ModelSwitcher) => Promise<T>): Promise<T> {
  const state = new StateDir(stateDir);
  state.assertNotInUse(what);
  const engine = await openEngine(stateDir);
  try {
    return await fn(new ModelSwitcher(engine, new ModelLibrary(state), null));
  } finally {
    await engine.close();
  }
}

function describeActivation(name: string, id: string, takesEffect: string, regions: number): string {
  return takesEffect === 'now'
    ? `model ${name} (${id.slice(0, 12)}) is active; ${regions} regions are restored from it`
    : `model ${name} (${id.slice(0, 12)}) will be active from the next session end; ${regions} regions will be restored from it`;
}

export async function modelActivate(ref: string | undefined, o: { stateDir: string; now?: boolean; cancel?: boolean }): Promise<number> {
  if (o.cancel) {
    if (ref !== undefined || o.now) throw new SnapbackError('BAD_ARGUMENT', '--cancel withdraws the pending activation: give it no model and no --now');
    return modelActivateCancel(o.stateDir);
  }
  if (ref === undefined) throw new SnapbackError('BAD_ARGUMENT', 'name the model to activate (its name, id or unique id prefix), or give --cancel to withdraw a pending activation');
  const state = new StateDir(o.stateDir);
  if (state.runningDaemon() !== null) {
    const r = (await callDaemon(state.controlSocket, 'POST', `/api/models/${encodeURIComponent(ref)}/activate`, { now: o.now ?? false } satisfies ModelActivateRequest)) as ModelActivateReply;
    out(describeActivation(r.model.name, r.model.id, r.takesEffect, r.regionsToRestore));
    return 0;
  }
  const a = await offline(o.stateDir, 'model activate', (s) => s.activate(ref, { now: o.now ?? false }));
  if (a.method === 'all') out(`the two models cannot be compared region by region (${a.reason}): every region is restored`);
  out(
    a.takesEffect === 'next-session-end'
      ? `model ${a.model.record.name} (${a.model.record.id.slice(0, 12)}) will be active when the daemon starts (it ends the session); ${a.regionsToRestore} regions will be restored from it`
      : describeActivation(a.model.record.name, a.model.record.id, a.takesEffect, a.regionsToRestore),
  );
  return 0;
}

/** `snapback model activate --cancel`: the activation waiting for the next session end is withdrawn. */
async function modelActivateCancel(stateDir: string): Promise<number> {
  const state = new StateDir(stateDir);
  const cancelled =
    state.runningDaemon() !== null
      ? ((await callDaemon(state.controlSocket, 'POST', '/api/models/activation/cancel')) as ModelActivationCancelReply).cancelled
      : await offline(stateDir, 'model activate --cancel', async (s) => {
          const m = await s.cancelActivation();
          return m ? { name: m.record.name, id: m.record.id } : null;
        });
  out(cancelled ? `the activation of model ${cancelled.name} (${cancelled.id.slice(0, 12)}) is cancelled; the active model stays` : 'no activation was pending');
  return 0;
}

export async function modelCapture(o: { stateDir: string; name: string; activate?: boolean }): Promise<number> {
  const state = new StateDir(o.stateDir);
  const bar = byteBar('capturing');
  try {
    if (state.runningDaemon() !== null) {
      let job = (await callDaemon(state.controlSocket, 'POST', '/api/models/capture', { name: o.name, activate: o.activate ?? false } satisfies ModelCaptureRequest)) as ModelImportJob;
      while (job.state === 'running') {
        await new Promise((r) => setTimeout(r, 200));
        job = (await callDaemon(state.controlSocket, 'GET', `/api/models/imports/${job.id}`)) as ModelImportJob;
        if (job.bytesTotal) bar.update(job.bytesDone, job.bytesTotal);
      }
      bar.stop();
      if (job.state === 'failed' || !job.modelId) throw jobFailure(job, 'the capture');
      out(`captured model ${job.name}${o.activate ? ', now the active model (nothing is restored)' : ''}`);
      out(job.modelId);
      return 0;
    }
    const c = await offline(o.stateDir, 'model capture', (s) => s.capture({ name: o.name, activate: o.activate ?? false, onProgress: (d, t) => bar.update(d, t) }));
    bar.stop();
    out(`captured model ${c.model.record.name}: ${c.writtenRegions} changed regions copied over ${c.copy === 'reflink' ? 'a reflink' : 'a copy'} of its parent${c.activated ? '; now the active model (nothing is restored)' : ''}`);
    out(c.model.record.id);
    return 0;
  } finally {
    bar.stop();
  }
}
