/**
 * `snapback maintenance add|list|remove` and `snapback thaw --boots N`: through the running
 * daemon's control socket when one runs on the state directory (it schedules the windows), else
 * on the state directory's settings (the windows apply from the daemon's next start). A thaw
 * changes the mode, which the daemon owns: it needs the daemon.
 */
import type { MaintenanceStatus, MaintenanceWindow, MaintenanceWindowInput } from '../api/maintenance.js';
import { MaintenanceSchedule } from '../maintenance/schedule.js';
import { parseWindow } from '../maintenance/maintenance-component.js';
import { StateStore } from '../state/state-store.js';
import { StateDir } from '../storage/state-dir.js';
import { SnapbackError } from '../errors.js';
import { callDaemon } from './control-client.js';
import { out } from './output.js';

export interface MaintenanceAddOptions {
  stateDir: string;
  schedule: string;
  timeZone?: string;
  duration: number;
  grace?: number;
  after?: 'capture' | 'discard';
  modelName?: string;
  wakeMac?: string;
  wakeAddress?: string;
  wakePort?: number;
}

/** The state directory's settings (no daemon runs): `fn` reads and changes them. */
async function offline<T>(stateDir: string, what: string, fn: (store: StateStore) => Promise<T>): Promise<T> {
  const state = new StateDir(stateDir);
  state.assertNotInUse(what);
  const store = await StateStore.open(stateDir);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

const daemonRuns = (stateDir: string): boolean => new StateDir(stateDir).runningDaemon() !== null;
const socketOf = (stateDir: string): string => new StateDir(stateDir).controlSocket;

export async function maintenanceAdd(name: string, o: MaintenanceAddOptions): Promise<number> {
  const input: MaintenanceWindowInput = {
    name,
    schedule: o.schedule,
    durationMinutes: o.duration,
    ...(o.timeZone !== undefined ? { timeZone: o.timeZone } : {}),
    ...(o.grace !== undefined ? { graceSeconds: o.grace } : {}),
    ...(o.after !== undefined ? { after: o.after } : {}),
    ...(o.modelName !== undefined ? { modelName: o.modelName } : {}),
    ...(o.wakeMac !== undefined ? { wakeOnLan: { mac: o.wakeMac, ...(o.wakeAddress ? { address: o.wakeAddress } : {}), ...(o.wakePort ? { port: o.wakePort } : {}) } } : {}),
  };
  if (o.wakeMac === undefined && (o.wakeAddress !== undefined || o.wakePort !== undefined)) throw new SnapbackError('BAD_ARGUMENT', '--wake-address and --wake-port need --wake-mac');
  if (daemonRuns(o.stateDir)) {
    const s = (await callDaemon(socketOf(o.stateDir), 'POST', '/api/maintenance/windows', input)) as MaintenanceStatus;
    const added = s.windows.find((w) => w.window.name === name);
    out(`maintenance window ${name} added${added?.nextRun ? `; next: ${added.nextRun}` : ''}`);
    return 0;
  }
  const w = parseWindow(input);
  await offline(o.stateDir, 'maintenance add', async (store) => {
    const m = store.settings().maintenance;
    if (m.windows.some((x) => x.name === w.name)) throw new SnapbackError('ALREADY_EXISTS', `a maintenance window named "${w.name}" exists already`);
    await store.updateSettings({ maintenance: { ...m, windows: [...m.windows, w] } });
    await store.audit({ actor: 'cli', action: 'maintenance.add', details: { ...w } });
  });
  const next = MaintenanceSchedule.parse(w.schedule, w.timeZone).nextAfter(Date.now());
  out(`maintenance window ${name} added (it runs once the daemon runs)${next !== null ? `; next: ${new Date(next).toISOString()}` : ''}`);
  return 0;
}

export async function maintenanceRemove(name: string, o: { stateDir: string }): Promise<number> {
  if (daemonRuns(o.stateDir)) await callDaemon(socketOf(o.stateDir), 'DELETE', `/api/maintenance/windows/${encodeURIComponent(name)}`);
  else {
    await offline(o.stateDir, 'maintenance remove', async (store) => {
      const m = store.settings().maintenance;
      if (!m.windows.some((x) => x.name === name)) throw new SnapbackError('NOT_FOUND', `no maintenance window named "${name}"`);
      await store.updateSettings({ maintenance: { ...m, windows: m.windows.filter((x) => x.name !== name) } });
      await store.audit({ actor: 'cli', action: 'maintenance.remove', details: { name } });
    });
  }
  out(`maintenance window ${name} removed`);
  return 0;
}

export async function maintenanceList(o: { stateDir: string; json?: boolean }): Promise<number> {
  let status: MaintenanceStatus;
  if (daemonRuns(o.stateDir)) status = (await callDaemon(socketOf(o.stateDir), 'GET', '/api/maintenance')) as MaintenanceStatus;
  else {
    const m = await offline(o.stateDir, 'maintenance list', async (store) => store.settings().maintenance);
    const now = Date.now();
    status = { windows: m.windows.map((w) => ({ window: w, nextRun: iso(MaintenanceSchedule.parse(w.schedule, w.timeZone).nextAfter(now)) })), thawBoots: m.thawBoots, running: null, recent: [] };
  }
  if (o.json) {
    out(JSON.stringify(status, null, 2));
    return 0;
  }
  if (status.windows.length === 0) out('no maintenance windows');
  for (const { window: w, nextRun } of status.windows) out(`${w.name}  "${w.schedule}" ${w.timeZone}  ${w.durationMinutes} min, grace ${w.graceSeconds} s, then ${describeAfter(w)}${w.wakeOnLan ? `, Wake-on-LAN ${w.wakeOnLan.mac}` : ''}  next: ${nextRun ?? 'never'}`);
  if (status.thawBoots > 0) out(`thawed for the next ${status.thawBoots} boot(s)`);
  if (status.running) out(`running: ${status.running.window} (${status.running.step ?? 'starting'}) since ${status.running.startedAt}`);
  for (const r of status.recent.slice(0, 5)) out(`last: ${r.window} at ${r.startedAt}: ${r.result ?? '?'}${r.message ? ` (${r.message})` : ''}`);
  return 0;
}

export async function thawBoots(o: { stateDir: string; boots: number }): Promise<number> {
  await callDaemon(socketOf(o.stateDir), 'POST', '/api/maintenance/thaw-boots', { boots: o.boots });
  out(o.boots > 0 ? `thawed for the next ${o.boots} boot(s), then frozen` : 'thawed-boots counter withdrawn (the mode stays as it is)');
  return 0;
}

function describeAfter(w: MaintenanceWindow): string {
  return w.after === 'capture' ? `capture as "${w.modelName}" and activate` : 'discard';
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}
