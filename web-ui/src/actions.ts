/**
 * The actions that change the disk or the appliance's behaviour, each behind a confirmation
 * where one is disruptive (end session / restore now, thaw, freeze).
 */
import { getJson, postJson } from './api.js';
import { confirmAction, errorText, notify } from './dom.js';
import { setStatus } from './live.js';
import type { ProtectionMode, RestoreMode } from '../../appliance/api/common.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';

async function refreshStatus(): Promise<void> {
  setStatus(await getJson<ApplianceStatus>('/api/status'));
}

export async function endSession(s: ApplianceStatus | null): Promise<boolean> {
  const thawed = s?.mode === 'thawed';
  const ok = await confirmAction({
    title: 'End the session and restore now?',
    message: thawed
      ? 'The host loses the disk for a moment while the session ends. The appliance is thawed: changes are kept, nothing is restored.'
      : `The host loses the disk for a moment, and every block it changed in session ${s?.session.number ?? ''} goes back to the model. ` +
        'Anything the host has not saved elsewhere is lost. Do this only while the host is off or can lose its disk.',
    confirmLabel: thawed ? 'End session' : 'End session and restore',
    danger: true,
  });
  if (!ok) return false;
  try {
    // Answered at once (202); the dashboard follows the end and the restore live.
    await postJson('/api/session/end', {});
    notify(`Ending session ${s?.session.number ?? ''}…`);
    await refreshStatus();
    return true;
  } catch (err) {
    notify(`Could not end the session: ${errorText(err)}`, 'error');
    return false;
  }
}

export async function setMode(mode: ProtectionMode): Promise<boolean> {
  const ok = await confirmAction(
    mode === 'thawed'
      ? {
          title: 'Thaw the disk?',
          message:
            'While thawed, what the host writes is kept across sessions: nothing is restored until you freeze again. ' +
            'Use it for maintenance (installing updates), then freeze.',
          confirmLabel: 'Thaw',
          danger: true,
        }
      : {
          title: 'Freeze the disk?',
          message:
            'From the next session on, every change the host makes is restored from the model at power-cycle. ' +
            'Changes made while thawed that differ from the model will be restored too.',
          confirmLabel: 'Freeze',
        },
  );
  if (!ok) return false;
  try {
    await postJson('/api/mode', { mode });
    notify(mode === 'thawed' ? 'Thawed.' : 'Frozen.');
    await refreshStatus();
    return true;
  } catch (err) {
    notify(`Could not change the mode: ${errorText(err)}`, 'error');
    return false;
  }
}

export async function setRestoreMode(mode: RestoreMode): Promise<boolean> {
  try {
    await postJson('/api/restore-mode', { restoreMode: mode });
    notify(`Restore mode: ${mode}.`);
    await refreshStatus();
    return true;
  } catch (err) {
    notify(`Could not change the restore mode: ${errorText(err)}`, 'error');
    return false;
  }
}
