/** Events: the audit log (who did what, when), newest first, live. */
import { getJson } from '../api.js';
import { errorText, fmtTime, h } from '../dom.js';
import { on } from '../live.js';
import type { AuditEntry } from '../../../appliance/api/audit.js';
import type { Page } from './page.js';

const PAGE = 100;

function detailsText(d: Record<string, unknown> | undefined): string {
  if (!d) return '';
  return Object.entries(d)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(', ');
}

function row(e: AuditEntry): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-audit': e.id, 'data-action': e.action },
    h('td', { 'data-label': 'When' }, fmtTime(e.at)),
    h('td', { 'data-label': 'Who' }, e.actor),
    h('td', { 'data-label': 'What' }, h('code', null, e.action)),
    h('td', { class: 'details', 'data-label': 'Details' }, detailsText(e.details)),
  );
}

export const eventsPage: Page = {
  title: 'Events',
  render(root) {
    const body = h('tbody', { id: 'audit-body' });
    const more = h('button', { type: 'button', class: 'btn', id: 'audit-more', hidden: true }, 'Older entries');
    const msg = h('p', { class: 'muted' });
    root.append(
      h(
        'section',
        { class: 'card card-wide' },
        h('h2', null, 'Audit log'),
        msg,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table stack-on-phone', id: 'audit-table' },
            h('thead', null, h('tr', null, ['When', 'Who', 'What', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
            body,
          ),
        ),
        more,
      ),
    );
    const seen = new Set<number>();
    let oldest: number | null = null;
    const add = (list: AuditEntry[], where: 'top' | 'bottom'): void => {
      const rows = list.filter((e) => !seen.has(e.id));
      for (const e of rows) seen.add(e.id);
      if (where === 'top') body.prepend(...rows.sort((a, b) => b.id - a.id).map(row));
      else body.append(...rows.map(row));
      for (const e of list) oldest = oldest === null ? e.id : Math.min(oldest, e.id);
    };
    const load = (before?: number): void => {
      getJson<{ entries: AuditEntry[] }>(`/api/audit?limit=${PAGE}${before ? `&before=${before}` : ''}`)
        .then(({ entries }) => {
          add(entries, before ? 'bottom' : 'top');
          more.hidden = entries.length < PAGE;
          msg.textContent = seen.size ? '' : 'Nothing recorded yet.';
        })
        .catch((err: unknown) => {
          msg.textContent = `Could not load the log: ${errorText(err)}`;
        });
    };
    more.addEventListener('click', () => load(oldest ?? undefined));
    load();
    const offs = [
      on<AuditEntry>('audit', (e) => {
        add([e], 'top');
        msg.textContent = '';
      }),
      on<boolean>('connection', (up) => up && load()),
    ];
    return () => {
      for (const off of offs) off();
    };
  },
};
