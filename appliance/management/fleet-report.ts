/** What the appliance tells the fleet about itself, made from its status (fleet.ts's info and state). */
import type { ApplianceInfo, ApplianceState } from '../api/fleet.js';
import type { ApplianceStatus } from '../session/appliance-service.js';

export function applianceInfo(name: string, s: ApplianceStatus): ApplianceInfo {
  return { name, version: s.daemon.version, diskSize: s.disk.size, startedAt: s.daemon.startedAt };
}

/** The state without its timestamp (what decides whether there is anything new to publish). */
export type StateBody = Omit<ApplianceState, 'updatedAt'>;

export function applianceState(s: ApplianceStatus): StateBody {
  const errors: string[] = [];
  for (const c of s.components) if (c.state === 'failed' && c.name !== 'management') errors.push(`${c.name}: ${c.problem ?? 'failed'}`);
  if (s.hydration.lastError) errors.push(`restore: ${s.hydration.lastError}`);
  if (s.stateDir.writeError) errors.push(`state file: ${s.stateDir.writeError}`);
  if (s.disk.ioErrors > 0) errors.push(`disk: ${s.disk.ioErrors} I/O errors`);
  return {
    mode: s.mode,
    restoreMode: s.restoreMode,
    session: { number: s.session.number, startedAt: s.session.startedAt },
    model: { id: s.model.id, name: s.model.name },
    download: null,
    regions: { total: s.regions.total, pending: s.regions.pending, writtenThisSession: s.regions.writtenThisSession },
    errors,
  };
}
