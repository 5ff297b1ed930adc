/**
 * `snapback model download-rate NAME|ID RATE`: the background download rate of a model still
 * arriving from its URL (lazy provisioning). Through the running daemon, which applies it at
 * once; without one, kept in the model's directory for the next start.
 */
import type { ModelDownload } from '../api/models.js';
import { SnapbackError } from '../errors.js';
import { ModelLibrary } from '../storage/model-library.js';
import { formatSize } from '../storage/sizes.js';
import { StateDir } from '../storage/state-dir.js';
import { readDownloadInfo, saveDownloadRate } from '../storage/url-import.js';
import { callDaemon } from './control-client.js';
import { out } from './output.js';

export async function modelDownloadRate(ref: string, rate: number | null, o: { stateDir: string }): Promise<number> {
  const state = new StateDir(o.stateDir);
  const shown = rate === null ? 'unlimited' : `${formatSize(rate)}/s`;
  if (state.runningDaemon() !== null) {
    const d = (await callDaemon(state.controlSocket, 'PATCH', `/api/models/${encodeURIComponent(ref)}/download`, { rateLimitBytesPerSecond: rate })) as ModelDownload;
    out(`download rate: ${shown} (${d.regionsDone} of ${d.regionsTotal} regions here)`);
    return 0;
  }
  const entry = await new ModelLibrary(state).resolve(ref);
  if (entry.record.complete || !(await readDownloadInfo(entry.dir))) throw new SnapbackError('BAD_ARGUMENT', `model "${entry.record.name}" is not being downloaded`);
  await saveDownloadRate(entry, rate);
  out(`download rate: ${shown} (from the next start of the daemon)`);
  return 0;
}
