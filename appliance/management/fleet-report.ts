/** What the appliance tells the fleet about itself, made from its status (fleet.ts's info and state). */
import type { ApplianceInfo, ApplianceState } from '../api/fleet.js';
import type { ModelDownload } from '../api/models.js';
import type { ApplianceStatus } from '../session/appliance-service.js';

export function applianceInfo(name: string, s: ApplianceStatus): ApplianceInfo {
  return { name, version: s.daemon.version, diskSize: s.disk.size, startedAt: s.daemon.startedAt };
}

/** The state without its timestamp (what decides whether there is anything new to publish). */
export type StateBody = Omit<ApplianceState, 'updatedAt'>;

/** `download`: the active model's download while it still arrives (lazy provisioning), else null. */
export function applianceState(s: ApplianceStatus, download: ModelDownload | null): StateBody {
  const errors: string[] = [];
  // Every part with a problem (failed, or running with one: a stalled download), but the fleet link itself.
  for (const c of s.components) if ((c.state === 'failed' || c.problem !== null) && c.name !== 'management') errors.push(`${c.name}: ${c.problem ?? 'failed'}`);
  if (s.hydration.lastError) errors.push(`restore: ${s.hydration.lastError}`);
  if (s.stateDir.writeError) errors.push(`state file: ${s.stateDir.writeError}`);
  if (s.disk.ioErrors > 0) errors.push(`disk: ${s.disk.ioErrors} I/O errors`);
  return {
    mode: s.mode,
    restoreMode: s.restoreMode,
    session: { number: s.session.number, startedAt: s.session.startedAt },
    model: { id: s.model.id, name: s.model.name },
    download: download && download.state !== 'done' ? download : null,
    regions: { total: s.regions.total, pending: s.regions.pending, writtenThisSession: s.regions.writtenThisSession },
    errors,
  };
}
