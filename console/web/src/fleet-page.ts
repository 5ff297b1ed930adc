/**
 * The fleet: every appliance in a live table (name, group, online, frozen/thawed, session and its
 * age, active model, download progress, last seen, errors), filtered by name or group and shown a
 * page of rows at a time so that a fleet of thousands stays quick, with a selection and the
 * actions on it (or on a whole group).
 */
import type { ApplianceRecord, CatalogueModel, GroupRecord } from '../../../appliance/api/console.js';
import { getJson, postJson } from './api.js';
import { sendAction, type Target } from './actions.js';
import { on } from './console-live.js';
import type { Page } from './pages/page.js';
import { clear, errorText, fmtDuration, fmtTime, h, notify, pct } from './dom.js';

/** Rows shown at once: the DOM holds one page, whatever the fleet's size. */
const PAGE_SIZE = 100;

export const fleetPage: Page = {
  title: 'Fleet',
  render(main) {
    const all = new Map<string, ApplianceRecord>();
    const selected = new Set<string>();
    let page = 0;
    let groups: GroupRecord[] = [];
    let models: CatalogueModel[] = [];

    const summary = h('p', { id: 'fleet-summary', class: 'muted' }, 'Loading…');
    const filter = h('input', { type: 'search', id: 'fleet-filter', placeholder: 'Filter by name or group', 'aria-label': 'Filter by name or group' });
    const groupSel = h('select', { id: 'fleet-group', 'aria-label': 'Group' });
    const selInfo = h('span', { id: 'fleet-selection', class: 'muted' });
    const restoreSel = h('select', { id: 'restore-mode', 'aria-label': 'Restore mode' }, h('option', { value: 'instant' }, 'instant'), h('option', { value: 'eager' }, 'eager'));
    const modelSel = h('select', { id: 'assign-model', 'aria-label': 'Model to assign' });
    const moveSel = h('select', { id: 'move-group', 'aria-label': 'Move to group' });
    const mwName = h('input', { type: 'text', id: 'mw-name', value: 'nightly', size: '8', 'aria-label': 'Maintenance window name' });
    const mwSchedule = h('input', { type: 'text', id: 'mw-schedule', value: '0 2 * * *', size: '10', 'aria-label': 'Maintenance schedule (cron: minute hour day month weekday)' });
    const mwMinutes = h('input', { type: 'number', id: 'mw-minutes', value: '60', min: '1', max: '1440', 'aria-label': 'Maintenance duration (minutes)' });
    const mwAfter = h('select', { id: 'mw-after', 'aria-label': 'After the window' }, h('option', { value: 'discard' }, 'then discard'), h('option', { value: 'capture' }, 'then capture'));
    const body = h('tbody', { id: 'fleet-rows' });
    const selectPage = h('input', { type: 'checkbox', id: 'select-page', 'aria-label': 'Select the rows on this page' });
    const pageInfo = h('span', { id: 'fleet-page-info', class: 'muted' });
    const prev = h('button', { type: 'button', class: 'btn btn-small', id: 'fleet-prev' }, '‹ Previous');
    const next = h('button', { type: 'button', class: 'btn btn-small', id: 'fleet-next' }, 'Next ›');

    const btn = (id: string, label: string, onclick: () => void, cls = 'btn btn-small'): HTMLButtonElement => h('button', { type: 'button', class: cls, id, onclick }, label);

    /** The selection if there is one, else the group chosen in the filter, else nobody. */
    function target(): Target | null {
      if (selected.size > 0) return { appliances: [...selected].sort() };
      if (groupSel.value && groupSel.value !== '*none') return { group: groupSel.value };
      return null;
    }
    function act(action: Parameters<typeof sendAction>[0]): void {
      const t = target();
      if (!t) {
        notify('Select appliances, or choose a group, first.', 'error');
        return;
      }
      void sendAction(action, t);
    }
    async function moveToGroup(): Promise<void> {
      if (selected.size === 0) {
        notify('Select the appliances to move first.', 'error');
        return;
      }
      const group = moveSel.value === '' ? null : moveSel.value;
      let failed = 0;
      for (const name of selected) {
        try {
          upsert([await postJson<ApplianceRecord>(`/api/appliances/${encodeURIComponent(name)}/group`, { group })]);
        } catch (err) {
          failed++;
          notify(`${name}: ${errorText(err)}`, 'error');
        }
      }
      if (failed === 0) notify(group ? `Moved ${selected.size} to “${group}”.` : `Took ${selected.size} out of their group.`);
    }

    const toolbar = h(
      'div',
      { class: 'actions', id: 'fleet-actions' },
      selInfo,
      btn('act-end-session', 'End session', () => act({ action: 'end-session' }), 'btn btn-small btn-danger'),
      btn('act-freeze', 'Freeze', () => act({ action: 'freeze' })),
      btn('act-thaw', 'Thaw', () => act({ action: 'thaw' })),
      h('span', { class: 'inline-form' }, restoreSel, btn('act-restore-mode', 'Set restore mode', () => act({ action: 'restore-mode', mode: restoreSel.value === 'eager' ? 'eager' : 'instant' }))),
      h('span', { class: 'inline-form' }, modelSel, btn('act-assign-model', 'Assign model', () => (modelSel.value ? act({ action: 'assign-model', model: modelSel.value }) : notify('Upload a model on the Models page first.', 'error')))),
      h('span', { class: 'inline-form' }, moveSel, btn('act-move', 'Move to group', () => void moveToGroup())),
      h(
        'span',
        { class: 'inline-form', id: 'maintenance-form' },
        mwName,
        mwSchedule,
        mwMinutes,
        mwAfter,
        btn('act-set-maintenance', 'Set maintenance window', () =>
          act({ action: 'set-maintenance', windows: [{ name: mwName.value.trim(), schedule: mwSchedule.value.trim(), durationMinutes: Number(mwMinutes.value), after: mwAfter.value === 'capture' ? 'capture' : 'discard' }] }),
        ),
      ),
    );

    main.append(
      h(
        'section',
        { class: 'card card-wide' },
        h('div', { class: 'card-head' }, h('h2', null, 'Fleet'), summary),
        h('div', { class: 'fleet-tools' }, filter, groupSel),
        toolbar,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table stack-on-phone', id: 'fleet-table' },
            h(
              'thead',
              null,
              h('tr', null, h('th', null, selectPage), ...['Name', 'Group', 'Online', 'Mode', 'Session', 'Model', 'Download', 'Last seen', 'Errors'].map((t) => h('th', null, t))),
            ),
            body,
          ),
        ),
        h('div', { class: 'pager' }, prev, pageInfo, next),
      ),
    );

    function matching(): ApplianceRecord[] {
      const q = filter.value.trim().toLowerCase();
      const g = groupSel.value;
      const rows: ApplianceRecord[] = [];
      for (const a of all.values()) {
        if (g === '*none' ? a.group !== null : g !== '' && a.group !== g) continue;
        if (q && !a.name.toLowerCase().includes(q) && !(a.group ?? '').toLowerCase().includes(q)) continue;
        rows.push(a);
      }
      return rows.sort((x, y) => x.name.localeCompare(y.name));
    }

    function modeCell(a: ApplianceRecord): HTMLElement {
      if (!a.mode) return h('td', { 'data-label': 'Mode' }, '—');
      return h('td', { 'data-label': 'Mode' }, h('span', { class: 'badge', 'data-mode': a.mode }, a.mode), a.restoreMode ? h('span', { class: 'muted small' }, ` ${a.restoreMode}`) : null);
    }

    function downloadCell(a: ApplianceRecord): HTMLElement {
      const d = a.download;
      const td = h('td', { 'data-label': 'Download', class: 'download' });
      if (!d) td.append('—');
      else if (d.state === 'done') td.append('complete');
      else {
        const p = pct(d.regionsDone, d.regionsTotal);
        td.append(h('progress', { max: 100, value: p.toFixed(1) }), ` ${p.toFixed(0)}%`);
        if (d.state === 'stalled') td.append(h('span', { class: 'error small' }, ` stalled${d.lastError ? `: ${d.lastError}` : ''}`));
      }
      return td;
    }

    function rowOf(a: ApplianceRecord, now: number): HTMLTableRowElement {
      const box = h('input', { type: 'checkbox', 'aria-label': `Select ${a.name}`, checked: selected.has(a.name) });
      box.addEventListener('change', () => {
        if (box.checked) selected.add(a.name);
        else selected.delete(a.name);
        tr.classList.toggle('selected', box.checked);
        showSelection();
      });
      const age = a.sessionStartedAt ? fmtDuration(now - Date.parse(a.sessionStartedAt), true) : null;
      const tr = h(
        'tr',
        { 'data-name': a.name, 'data-online': String(a.online), class: selected.has(a.name) ? 'selected' : null },
        h('td', null, box),
        h('td', { 'data-label': 'Name', class: 'name' }, a.name),
        h('td', { 'data-label': 'Group', class: 'group' }, a.group ?? '—'),
        h('td', { 'data-label': 'Online', class: 'online' }, h('span', { class: 'online-dot', 'data-online': String(a.online) }), a.online ? 'online' : 'offline'),
        modeCell(a),
        h('td', { 'data-label': 'Session', class: 'session' }, a.session === null ? '—' : `#${a.session}`, age ? h('span', { class: 'muted small' }, ` ${age}`) : null),
        h('td', { 'data-label': 'Model', class: 'model' }, a.model ?? '—', a.assigned && a.assigned.model !== a.model ? h('span', { class: 'muted small' }, ` → ${a.assigned.model}`) : null),
        downloadCell(a),
        h('td', { 'data-label': 'Last seen', class: 'last-seen' }, a.online ? 'now' : fmtTime(a.lastSeen)),
        h('td', { 'data-label': 'Errors', class: 'errors' }, a.errors.length ? h('span', { class: 'error' }, a.errors.join('; ')) : '—'),
      );
      return tr;
    }

    function showSelection(): void {
      const t = target();
      selInfo.textContent = selected.size > 0 ? `${selected.size} selected:` : t && 'group' in t ? `Group “${t.group}”:` : 'Select appliances or a group:';
    }

    function draw(): void {
      const rows = matching();
      const pages = Math.max(1, Math.ceil(rows.length / PAGE_SIZE));
      page = Math.min(page, pages - 1);
      const shown = rows.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
      const now = Date.now();
      body.replaceChildren(...shown.map((a) => rowOf(a, now)));
      if (shown.length === 0) body.append(h('tr', null, h('td', { colspan: 10, class: 'muted' }, all.size === 0 ? 'No appliance has connected yet. Enroll one with a code (snapback console enroll-code create).' : 'No appliance matches.')));
      selectPage.checked = shown.length > 0 && shown.every((a) => selected.has(a.name));
      let online = 0;
      for (const a of all.values()) if (a.online) online++;
      summary.textContent = `${all.size} appliances, ${online} online`;
      pageInfo.textContent = rows.length === 0 ? '' : `${page * PAGE_SIZE + 1}–${page * PAGE_SIZE + shown.length} of ${rows.length}`;
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
      main.dataset.rows = String(rows.length);
      showSelection();
    }

    // Live updates arrive in bursts (one event per 250 ms with the changed records): one redraw per frame.
    let pending = false;
    function redraw(): void {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => {
        pending = false;
        draw();
      });
    }
    function upsert(records: ApplianceRecord[]): void {
      for (const r of records) all.set(r.name, r);
      redraw();
    }

    function fillGroups(): void {
      const keep = groupSel.value;
      clear(groupSel);
      groupSel.append(h('option', { value: '' }, 'All groups'), h('option', { value: '*none' }, 'In no group'), ...groups.map((g) => h('option', { value: g.name }, g.name)));
      groupSel.value = [...groupSel.options].some((o) => o.value === keep) ? keep : '';
      clear(moveSel);
      moveSel.append(...groups.map((g) => h('option', { value: g.name }, g.name)), h('option', { value: '' }, '(no group)'));
    }
    function fillModels(): void {
      clear(modelSel);
      if (models.length === 0) modelSel.append(h('option', { value: '' }, '(no models)'));
      else modelSel.append(...models.map((m) => h('option', { value: m.id }, m.name)));
    }

    filter.addEventListener('input', () => {
      page = 0;
      draw();
    });
    groupSel.addEventListener('change', () => {
      page = 0;
      draw();
    });
    prev.addEventListener('click', () => {
      page--;
      draw();
    });
    next.addEventListener('click', () => {
      page++;
      draw();
    });
    selectPage.addEventListener('change', () => {
      const rows = matching().slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
      for (const a of rows) {
        if (selectPage.checked) selected.add(a.name);
        else selected.delete(a.name);
      }
      draw();
    });

    const off = on<ApplianceRecord[]>('appliances', upsert);
    // Session ages and "last seen" move with the clock.
    const tick = setInterval(redraw, 5000);
    fillGroups();
    fillModels();
    Promise.all([getJson<ApplianceRecord[]>('/api/appliances'), getJson<GroupRecord[]>('/api/groups'), getJson<CatalogueModel[]>('/api/models')])
      .then(([a, g, m]) => {
        groups = g;
        models = m;
        fillGroups();
        // The Groups page links here with its group chosen.
        const want = sessionStorage.getItem('fleet-group');
        sessionStorage.removeItem('fleet-group');
        if (want && groups.some((x) => x.name === want)) groupSel.value = want;
        fillModels();
        // Records that arrived live meanwhile are newer than the list.
        for (const r of a) if (!all.has(r.name)) all.set(r.name, r);
        draw();
        main.dataset.loaded = 'true';
      })
      .catch((err: unknown) => {
        summary.textContent = `Cannot load the fleet: ${errorText(err)}`;
        summary.className = 'error';
      });
    return () => {
      off();
      clearInterval(tick);
    };
  },
};
