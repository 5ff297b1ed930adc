/**
 * Groups ("room 101"): make one, see its members, act on all of them, remove it. Appliances are
 * put in a group from the Fleet page's selection.
 */
import type { GroupRecord } from '../../../appliance/api/console.js';
import { getJson, postJson, request } from './api.js';
import { sendAction } from './actions.js';
import { on } from './console-live.js';
import type { Page } from './pages/page.js';
import { confirmAction, errorText, h, notify } from './dom.js';

export const groupsPage: Page = {
  title: 'Groups',
  render(main) {
    const list = h('tbody', { id: 'group-rows' });
    const name = h('input', { type: 'text', id: 'group-name', placeholder: 'room 101', required: true, maxlength: 64, 'aria-label': 'Group name' });
    const desc = h('input', { type: 'text', id: 'group-description', placeholder: 'Description (optional)', maxlength: 500, 'aria-label': 'Description' });
    const form = h('form', { id: 'group-form', class: 'inline-form' }, name, desc, h('button', { type: 'submit', class: 'btn btn-primary', id: 'group-create' }, 'Create group'));
    main.append(
      h(
        'section',
        { class: 'card card-wide' },
        h('div', { class: 'card-head' }, h('h2', null, 'Groups')),
        form,
        h('div', { class: 'table-wrap' }, h('table', { class: 'table stack-on-phone', id: 'group-table' }, h('thead', null, h('tr', null, ...['Group', 'Description', 'Members', ''].map((t) => h('th', null, t)))), list)),
      ),
    );

    function row(g: GroupRecord): HTMLTableRowElement {
      const act = (action: 'end-session' | 'freeze' | 'thaw'): void => void sendAction({ action }, { group: g.name });
      return h(
        'tr',
        { 'data-group': g.name },
        h('td', { 'data-label': 'Group' }, h('a', { href: `#/fleet`, onclick: () => sessionStorage.setItem('fleet-group', g.name) }, g.name)),
        h('td', { 'data-label': 'Description' }, g.description || '—'),
        h('td', { 'data-label': 'Members', class: 'members' }, g.members.length ? `${g.members.length}: ${g.members.slice(0, 8).join(', ')}${g.members.length > 8 ? ', …' : ''}` : 'none'),
        h(
          'td',
          { class: 'actions' },
          h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'end-session', onclick: () => act('end-session') }, 'End session'),
          h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'freeze', onclick: () => act('freeze') }, 'Freeze'),
          h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'thaw', onclick: () => act('thaw') }, 'Thaw'),
          h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'remove', onclick: () => void remove(g) }, 'Remove'),
        ),
      );
    }

    async function remove(g: GroupRecord): Promise<void> {
      const ok = await confirmAction({ title: `Remove group “${g.name}”?`, message: `Its ${g.members.length} members stay in the fleet, in no group.`, confirmLabel: 'Remove', danger: true });
      if (!ok) return;
      try {
        await request('DELETE', `/api/groups/${encodeURIComponent(g.name)}`);
        notify(`Group “${g.name}” removed.`);
        load();
      } catch (err) {
        notify(errorText(err), 'error');
      }
    }

    function load(): void {
      getJson<GroupRecord[]>('/api/groups')
        .then((gs) => {
          list.replaceChildren(...gs.map(row));
          if (gs.length === 0) list.append(h('tr', null, h('td', { colspan: 4, class: 'muted' }, 'No groups yet.')));
          main.dataset.loaded = 'true';
        })
        .catch((err: unknown) => notify(`Cannot load the groups: ${errorText(err)}`, 'error'));
    }

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      postJson('/api/groups', desc.value.trim() ? { name: name.value, description: desc.value.trim() } : { name: name.value })
        .then(() => {
          notify(`Group “${name.value.trim()}” created.`);
          name.value = '';
          desc.value = '';
          load();
        })
        .catch((err: unknown) => notify(errorText(err), 'error'));
    });
    // Membership changes show up as changed appliance records.
    let timer: ReturnType<typeof setTimeout> | null = null;
    const off = on('appliances', () => {
      timer ??= setTimeout(() => {
        timer = null;
        load();
      }, 1000);
    });
    load();
    return () => {
      off();
      if (timer) clearTimeout(timer);
    };
  },
};
