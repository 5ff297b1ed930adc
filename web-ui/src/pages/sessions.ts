/** Sessions: the history (start, end, why it ended, regions and bytes changed, restore time), CSV export. */
import { getJson } from '../api.js';
import { clear, errorText, fmtBytes, fmtDuration, fmtInt, fmtTime, h } from '../dom.js';
import { on } from '../live.js';
import type { SessionRecord } from '../../../appliance/api/sessions.js';
import type { Page } from './page.js';

const REASON: Record<string, string> = {
  'daemon-start': 'appliance started',
  api: 'web UI / API / CLI',
  console: 'fleet console',
  button: 'reset button',
  'host-power-off': 'host powered off',
  'usb-reconnect': 'USB power-cycle',
  'gadget-watchdog': 'USB gadget rebuilt',
  maintenance: 'maintenance window',
};

export const sessionsPage: Page = {
  title: 'Sessions',
  render(root) {
    const body = h('tbody', { id: 'sessions-body' });
    const msg = h('p', { class: 'muted', id: 'sessions-msg' }, 'Loading…');
    root.append(
      h(
        'section',
        { class: 'card card-wide' },
        h(
          'div',
          { class: 'card-head' },
          h('h2', null, 'Session history'),
          h('a', { class: 'btn', id: 'csv-export', href: '/api/export/sessions.csv', download: 'snapback-sessions.csv' }, 'Export CSV'),
        ),
        msg,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'table stack-on-phone', id: 'sessions-table' },
            h(
              'thead',
              null,
              h(
                'tr',
                null,
                ['#', 'Started', 'Ended', 'Length', 'Why it ended', 'Mode', 'Regions', 'Bytes', 'Restore time'].map((t) => h('th', { scope: 'col' }, t)),
              ),
            ),
            body,
          ),
        ),
      ),
    );
    const load = (): void => {
      getJson<SessionRecord[] | { sessions: SessionRecord[] }>('/api/sessions')
        .then((r) => {
          const list = (Array.isArray(r) ? r : r.sessions).slice().sort((a, b) => b.number - a.number);
          clear(body);
          setMsg(list.length ? '' : 'No sessions yet.');
          for (const s of list) {
            const len = s.endedAt ? Date.parse(s.endedAt) - Date.parse(s.startedAt) : null;
            body.append(
              h(
                'tr',
                { 'data-session': s.number },
                h('td', { 'data-label': 'Session' }, String(s.number)),
                h('td', { 'data-label': 'Started' }, fmtTime(s.startedAt)),
                h('td', { 'data-label': 'Ended' }, s.endedAt ? fmtTime(s.endedAt) : h('span', { class: 'badge badge-live' }, 'running')),
                h('td', { 'data-label': 'Length' }, len === null ? '—' : fmtDuration(len)),
                h('td', { 'data-label': 'Why it ended' }, s.endReason ? (REASON[s.endReason] ?? s.endReason) : '—'),
                h('td', { 'data-label': 'Mode' }, s.mode),
                h('td', { class: 'num', 'data-label': 'Regions' }, fmtInt(s.regionsWritten)),
                h('td', { class: 'num', 'data-label': 'Bytes' }, fmtBytes(s.bytesWritten)),
                h(
                  'td',
                  { class: 'num', 'data-label': 'Restore time' },
                  s.restoreMs !== null ? fmtDuration(s.restoreMs) : s.endedAt && s.mode === 'frozen' ? 'in progress' : '—',
                ),
              ),
            );
          }
        })
        .catch((err: unknown) => setMsg(`Could not load the history: ${errorText(err)}`));
    };
    const setMsg = (t: string): void => {
      msg.textContent = t;
      msg.hidden = t === '';
    };
    load();
    const offs = [on('session-ended', load), on<boolean>('connection', (up) => up && load())];
    const timer = setInterval(load, 15_000);
    return () => {
      for (const off of offs) off();
      clearInterval(timer);
    };
  },
};
