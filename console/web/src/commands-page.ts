/**
 * The commands sent to appliances and their results, newest first, updated live: queued (not
 * yet with the broker), sent, succeeded (with the appliance's result) or failed (with its error).
 */
import type { CommandRecord } from '../../../appliance/api/console.js';
import { getJson } from './api.js';
import { on } from './console-live.js';
import type { Page } from './pages/page.js';
import { errorText, fmtTime, h, notify } from './dom.js';

const LIMIT = 200;

function outcome(c: CommandRecord): string {
  if (c.error) return `${c.error.code}: ${c.error.message}`;
  if (c.result === null || c.result === undefined) return '—';
  return JSON.stringify(c.result);
}

export const commandsPage: Page = {
  title: 'Commands',
  render(main) {
    const byId = new Map<string, CommandRecord>();
    const body = h('tbody', { id: 'command-rows' });
    main.append(
      h(
        'section',
        { class: 'card card-wide' },
        h('div', { class: 'card-head' }, h('h2', null, 'Commands'), h('span', { class: 'muted' }, `the latest ${LIMIT}`)),
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table stack-on-phone', id: 'command-table' },
            h('thead', null, h('tr', null, ...['Sent', 'Appliance', 'Action', 'State', 'Result', 'By'].map((t) => h('th', null, t)))),
            body,
          ),
        ),
      ),
    );
    function draw(): void {
      const rows = [...byId.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id)).slice(0, LIMIT);
      body.replaceChildren(
        ...rows.map((c) =>
          h(
            'tr',
            { 'data-command': c.id, 'data-appliance': c.appliance, 'data-state': c.state },
            h('td', { 'data-label': 'Sent' }, fmtTime(c.createdAt)),
            h('td', { 'data-label': 'Appliance' }, c.appliance),
            h('td', { 'data-label': 'Action', class: 'action' }, c.action, Object.keys(c.args).length ? h('span', { class: 'muted small' }, ` ${JSON.stringify(c.args)}`) : null),
            h('td', { 'data-label': 'State' }, h('span', { class: 'cmd-state', 'data-state': c.state }, c.state)),
            h('td', { 'data-label': 'Result', class: 'details' }, outcome(c)),
            h('td', { 'data-label': 'By' }, c.actor),
          ),
        ),
      );
      if (rows.length === 0) body.append(h('tr', null, h('td', { colspan: 6, class: 'muted' }, 'No commands yet.')));
    }
    const off = on<CommandRecord[]>('commands', (cs) => {
      for (const c of cs) byId.set(c.id, c);
      draw();
    });
    getJson<CommandRecord[]>(`/api/commands?limit=${LIMIT}`)
      .then((cs) => {
        for (const c of cs) if (!byId.has(c.id)) byId.set(c.id, c);
        draw();
        main.dataset.loaded = 'true';
      })
      .catch((err: unknown) => notify(`Cannot load the commands: ${errorText(err)}`, 'error'));
    return off;
  },
};
