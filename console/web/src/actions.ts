/**
 * Sending the console's actions (end session, freeze, thaw, restore mode, assign a model, set a
 * maintenance window)
 * to one appliance, a selection or a group, after a confirmation, and saying what was sent.
 */
import type { ConsoleAction, ConsoleActionInput } from '../../../appliance/api/console.js';
import { postJson } from './api.js';
import { confirmAction, errorText, notify } from './dom.js';

/** Whom an action goes to: named appliances, or every member of a group. */
export type Target = { appliances: string[] } | { group: string };

export function describeTarget(t: Target): string {
  if ('group' in t) return `every appliance in group “${t.group}”`;
  return t.appliances.length === 1 ? `appliance ${t.appliances[0]}` : `${t.appliances.length} appliances`;
}

const LABELS: Record<ConsoleAction['action'], string> = {
  'end-session': 'End session',
  freeze: 'Freeze',
  thaw: 'Thaw',
  'restore-mode': 'Set restore mode',
  'assign-model': 'Assign model',
  'set-maintenance': 'Set maintenance',
};

/** Confirms, sends, and resolves with the ids of the commands made (empty when cancelled or refused). */
export async function sendAction(action: ConsoleActionInput, target: Target): Promise<string[]> {
  const what =
    action.action === 'assign-model'
      ? `Assign model ${action.model ?? action.name ?? ''}`
      : action.action === 'set-maintenance'
        ? `Set maintenance window ${action.windows?.map((w) => `${w.name} (${w.schedule})`).join(', ') ?? ''}`
        : LABELS[action.action] + (action.action === 'restore-mode' ? ` to ${action.mode}` : '');
  const ok = await confirmAction({
    title: `${what}?`,
    message:
      `This goes to ${describeTarget(target)}.` +
      (action.action === 'end-session' ? ' Each ends its host session: the host must be off or rebooting, or its changes are restored away.' : '') +
      (action.action === 'set-maintenance' ? ' It replaces the maintenance windows each appliance has.' : ''),
    confirmLabel: what,
    danger: action.action === 'end-session' || action.action === 'thaw',
  });
  if (!ok) return [];
  try {
    let ids: string[];
    if ('group' in target) ids = (await postJson<{ commands: { id: string }[] }>(`/api/groups/${encodeURIComponent(target.group)}/actions`, action)).commands.map((c) => c.id);
    else if (target.appliances.length === 1) ids = [(await postJson<{ id: string }>(`/api/appliances/${encodeURIComponent(target.appliances[0]!)}/actions`, action)).id];
    else ids = (await postJson<{ commands: { id: string }[] }>('/api/actions', { appliances: target.appliances, ...action })).commands.map((c) => c.id);
    notify(`${what}: ${ids.length} command${ids.length === 1 ? '' : 's'} sent. Results on the Commands page.`);
    return ids;
  } catch (err) {
    notify(`${what} failed: ${errorText(err)}`, 'error');
    return [];
  }
}
