/**
 * The Settings page's maintenance card: the maintenance windows with their next start, adding
 * and removing one, "thawed for the next N boots", and the running and last windows
 * (GET /api/maintenance, POST /api/maintenance/windows, DELETE …/windows/NAME,
 * POST /api/maintenance/thaw-boots).
 */
import { getJson, postJson, request } from '../api.js';
import { confirmAction, errorText, fmtTime, h, notify } from '../dom.js';
import type { MaintenanceStatus, MaintenanceWindowInput } from '../../../appliance/api/maintenance.js';

export function maintenanceCard(): { element: HTMLElement; dispose(): void } {
  const body = h('tbody', { id: 'maintenance-body' });
  const runs = h('ul', { id: 'maintenance-runs', class: 'muted small' });
  const counter = h('p', { id: 'maintenance-thaw-state', class: 'muted small' });
  const name = h('input', { type: 'text', id: 'mw-name', required: true, maxlength: 40, placeholder: 'e.g. weekly' });
  const schedule = h('input', { type: 'text', id: 'mw-schedule', required: true, placeholder: '0 3 * * 6', spellcheck: 'false' });
  const zone = h('input', { type: 'text', id: 'mw-zone', value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC', spellcheck: 'false' });
  const duration = h('input', { type: 'number', id: 'mw-duration', required: true, min: 1, max: 1440, value: 60 });
  const grace = h('input', { type: 'number', id: 'mw-grace', min: 10, max: 3600, value: 300 });
  const after = h('select', { id: 'mw-after' }, h('option', { value: 'discard' }, 'Discard (freeze and restore)'), h('option', { value: 'capture' }, 'Capture a new model and activate it'));
  const mac = h('input', { type: 'text', id: 'mw-wake-mac', placeholder: 'optional: Wake-on-LAN MAC', spellcheck: 'false' });
  const boots = h('input', { type: 'number', id: 'thaw-boots', min: 0, max: 1000, value: 1 });

  const addForm = h(
    'form',
    { id: 'maintenance-form', class: 'stack' },
    h('label', { for: 'mw-name' }, 'Name'),
    name,
    h('label', { for: 'mw-schedule' }, 'Schedule (cron: minute hour day month weekday)'),
    schedule,
    h('label', { for: 'mw-zone' }, 'Time zone'),
    zone,
    h('label', { for: 'mw-duration' }, 'Host runs for (minutes)'),
    duration,
    h('label', { for: 'mw-grace' }, 'Shutdown grace before a forced off (seconds)'),
    grace,
    h('label', { for: 'mw-after' }, 'Afterwards'),
    after,
    h('label', { for: 'mw-wake-mac' }, 'Power on by Wake-on-LAN (MAC)'),
    mac,
    h('button', { type: 'submit', class: 'btn btn-primary', id: 'maintenance-add' }, 'Add window'),
  );
  const thawForm = h(
    'form',
    { id: 'thaw-boots-form', class: 'inline-form' },
    h('label', { for: 'thaw-boots' }, 'Thawed for the next'),
    boots,
    h('span', null, 'boots, then frozen'),
    h('button', { type: 'submit', class: 'btn', id: 'thaw-boots-save' }, 'Thaw'),
  );

  const element = h(
    'div',
    { class: 'stack' },
    h('h2', null, 'Maintenance windows'),
    h('p', { class: 'muted small' }, 'At each start the host is powered on thawed, runs, is shut down by its power button (forced off only after the grace period), then its disk is captured as a new model or discarded. Needs the host power button and power LED wired (docs/maintenance.md).'),
    h('div', { class: 'table-wrap' }, h('table', { class: 'table stack-on-phone', id: 'maintenance-table' }, h('thead', null, h('tr', null, ['Name', 'Schedule', 'Then', 'Next start', ''].map((t) => h('th', { scope: 'col' }, t)))), body)),
    addForm,
    counter,
    thawForm,
    runs,
  );

  let disposed = false;
  const show = (s: MaintenanceStatus): void => {
    if (disposed) return;
    element.dataset.loaded = 'true';
    body.replaceChildren(
      ...(s.windows.length
        ? s.windows.map(({ window: w, nextRun }) => {
            const remove = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-window': w.name }, 'Remove');
            remove.addEventListener('click', () => {
              void confirmAction({ title: `Remove the maintenance window “${w.name}”?`, message: 'It no longer runs.', confirmLabel: 'Remove', danger: true }).then((ok) => {
                if (!ok) return;
                request('DELETE', `/api/maintenance/windows/${encodeURIComponent(w.name)}`)
                  .then(() => load())
                  .catch((err: unknown) => notify(`Not removed: ${errorText(err)}`, 'error'));
              });
            });
            return h(
              'tr',
              { 'data-window-row': w.name },
              h('td', { 'data-label': 'Name' }, w.name),
              h('td', { 'data-label': 'Schedule' }, `${w.schedule} (${w.timeZone}), ${w.durationMinutes} min`),
              h('td', { 'data-label': 'Then' }, w.after === 'capture' ? `capture “${w.modelName}”` : 'discard'),
              h('td', { 'data-label': 'Next start' }, nextRun ? fmtTime(nextRun) : 'never'),
              h('td', null, remove),
            );
          })
        : [h('tr', null, h('td', { colspan: 5, class: 'muted' }, 'No maintenance windows.'))]),
    );
    counter.textContent = s.thawBoots > 0 ? `Thawed for the next ${s.thawBoots} boot(s).` : '';
    const lines = [
      ...(s.running ? [`Running: ${s.running.window} (${s.running.step ?? 'starting'}) since ${fmtTime(s.running.startedAt)}`] : []),
      ...s.recent.slice(0, 5).map((r) => `${r.window} ${fmtTime(r.startedAt)}: ${r.result ?? '?'}${r.message ? ` — ${r.message}` : ''}`),
    ];
    runs.replaceChildren(...lines.map((l) => h('li', null, l)));
  };
  const load = (): void => {
    getJson<MaintenanceStatus>('/api/maintenance')
      .then(show)
      .catch((err: unknown) => notify(`Could not load the maintenance windows: ${errorText(err)}`, 'error'));
  };

  addForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const w: MaintenanceWindowInput = {
      name: name.value.trim(),
      schedule: schedule.value.trim(),
      timeZone: zone.value.trim() || 'UTC',
      durationMinutes: Number(duration.value),
      graceSeconds: Number(grace.value || 300),
      after: after.value === 'capture' ? 'capture' : 'discard',
      ...(mac.value.trim() ? { wakeOnLan: { mac: mac.value.trim() } } : {}),
    };
    postJson<MaintenanceStatus>('/api/maintenance/windows', w)
      .then((s) => {
        addForm.reset();
        show(s);
        notify(`Maintenance window ${w.name} added.`);
      })
      .catch((err: unknown) => notify(`Not added: ${errorText(err)}`, 'error'));
  });
  thawForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    postJson<MaintenanceStatus>('/api/maintenance/thaw-boots', { boots: Number(boots.value) })
      .then((s) => {
        show(s);
        notify(s.thawBoots > 0 ? `Thawed for the next ${s.thawBoots} boot(s).` : 'Thawed-boots counter withdrawn.');
      })
      .catch((err: unknown) => notify(`Not changed: ${errorText(err)}`, 'error'));
  });

  load();
  return {
    element,
    dispose() {
      disposed = true;
    },
  };
}
