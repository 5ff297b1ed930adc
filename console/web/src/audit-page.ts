/** The console's audit log: who did what and when, newest first, with new entries live. */
import type { AuditEntry } from '../../../appliance/api/audit.js';
import { getJson } from './api.js';
import { on } from './console-live.js';
import type { Page } from './pages/page.js';
import { errorText, fmtTime, h, notify } from './dom.js';

export const auditPage: Page = {
  title: 'Audit log',
  render(main) {
    const body = h('tbody', { id: 'audit-rows' });
    main.append(
      h(
        'section',
        { class: 'card card-wide' },
        h('div', { class: 'card-head' }, h('h2', null, 'Audit log')),
        h('div', { class: 'table-wrap' }, h('table', { class: 'table stack-on-phone', id: 'audit-table' }, h('thead', null, h('tr', null, ...['When', 'Who', 'What', 'Details'].map((t) => h('th', null, t)))), body)),
      ),
    );
    const row = (e: AuditEntry): HTMLTableRowElement =>
      h(
        'tr',
        { 'data-id': e.id, 'data-action': e.action },
        h('td', { 'data-label': 'When' }, fmtTime(e.at)),
        h('td', { 'data-label': 'Who' }, e.actor),
        h('td', { 'data-label': 'What', class: 'action' }, e.action),
        h('td', { 'data-label': 'Details', class: 'details' }, e.details ? JSON.stringify(e.details) : ''),
      );
    const seen = new Set<number>();
    const off = on<AuditEntry | AuditEntry[]>('audit', (d) => {
      for (const e of Array.isArray(d) ? d : [d]) {
        if (seen.has(e.id)) continue;
        seen.add(e.id);
        body.prepend(row(e));
      }
    });
    getJson<{ entries: AuditEntry[] }>('/api/audit?limit=200')
      .then(({ entries }) => {
        for (const e of entries) {
          if (seen.has(e.id)) continue;
          seen.add(e.id);
          body.append(row(e));
        }
        main.dataset.loaded = 'true';
      })
      .catch((err: unknown) => notify(`Cannot load the audit log: ${errorText(err)}`, 'error'));
    return off;
  },
};
