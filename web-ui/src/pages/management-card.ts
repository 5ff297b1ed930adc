/**
 * The Settings page's fleet card: the management URL (a broker, or a console to enroll with),
 * the appliance's name in the fleet, and the link's connection state (GET/POST /api/management).
 */
import { getJson, postJson } from '../api.js';
import { errorText, fmtTime, h, notify, setText } from '../dom.js';
import { on } from '../live.js';
import type { ManagementStatus, ManagementUpdate } from '../../../appliance/api/management.js';
import type { ApplianceStatus } from '../../../appliance/api/status.js';

const STATE_TEXT: Record<ManagementStatus['connection']['state'], string> = {
  off: 'not managed',
  enrolling: 'enrolling at the console…',
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting',
  failed: 'failed',
};

export function managementCard(): { element: HTMLElement; dispose(): void } {
  const url = h('input', { type: 'text', id: 'management-url', placeholder: 'mqtts://broker:8883 or https://console', autocomplete: 'off', spellcheck: 'false' });
  const name = h('input', { type: 'text', id: 'management-name', maxlength: 64, autocomplete: 'off', spellcheck: 'false' });
  const code = h('input', { type: 'text', id: 'management-code', autocomplete: 'off', spellcheck: 'false', placeholder: 'only to enroll at a console' });
  const user = h('input', { type: 'text', id: 'management-username', autocomplete: 'off', placeholder: 'optional' });
  const pass = h('input', { type: 'password', id: 'management-password', autocomplete: 'new-password', placeholder: 'unchanged' });
  const state = h('span', { class: 'badge', id: 'management-state' }, '—');
  const detail = h('p', { class: 'muted small', id: 'management-detail' });
  const off = h('button', { type: 'button', class: 'btn', id: 'management-off' }, 'Stop managing');

  const form = h(
    'form',
    { id: 'management-form', class: 'stack' },
    h('h2', null, 'Fleet management'),
    h('p', { class: 'badges' }, state),
    detail,
    h('label', { for: 'management-url' }, 'Management URL'),
    url,
    h('label', { for: 'management-name' }, 'Appliance name (default: the host name)'),
    name,
    h('label', { for: 'management-code' }, 'Enrollment code'),
    code,
    h('label', { for: 'management-username' }, 'Broker user (without enrollment)'),
    user,
    h('label', { for: 'management-password' }, 'Broker password'),
    pass,
    h('p', null, h('button', { type: 'submit', class: 'btn btn-primary', id: 'management-save' }, 'Connect'), ' ', off),
  );

  let loadedUrl: string | null = null;
  let poll: ReturnType<typeof setTimeout> | null = null;
  let disposed = false;
  const show = (m: ManagementStatus): void => {
    // A link on its way (connecting, enrolling, reconnecting) is looked at again shortly.
    if (poll) clearTimeout(poll);
    poll = !disposed && ['connecting', 'enrolling', 'reconnecting'].includes(m.connection.state) ? setTimeout(load, 1000) : null;
    form.dataset.loaded = 'true';
    form.dataset.state = m.connection.state;
    setText(state, STATE_TEXT[m.connection.state]);
    state.classList.toggle('badge-live', m.connection.state === 'connected');
    const parts = [
      m.broker ? `Broker ${m.broker}${m.username ? ` as ${m.username}` : ''}` : null,
      m.enrolledAt ? `enrolled ${fmtTime(m.enrolledAt)}` : null,
      m.connection.lastConnectedAt ? `last connected ${fmtTime(m.connection.lastConnectedAt)}` : null,
      m.connection.problem,
    ].filter(Boolean);
    setText(detail, parts.length ? parts.join(' · ') : 'This appliance reports to no fleet console.');
    off.hidden = m.url === null;
    if (!form.contains(document.activeElement)) {
      url.value = m.url ?? '';
      name.value = m.applianceName;
      if (m.url !== loadedUrl) user.value = m.username ?? '';
    }
    loadedUrl = m.url;
  };
  function load(): void {
    getJson<ManagementStatus>('/api/management').then(show, (err: unknown) => notify(`Could not load the fleet settings: ${errorText(err)}`, 'error'));
  }
  const save = (body: ManagementUpdate, done: string): void => {
    postJson<ManagementStatus>('/api/management', body)
      .then((m) => {
        code.value = '';
        pass.value = '';
        show(m);
        notify(done);
      })
      .catch((err: unknown) => notify(`Not saved: ${errorText(err)}`, 'error'));
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const u = url.value.trim();
    if (!u) {
      notify('Give a management URL (mqtt://, mqtts:// or https://), or use “Stop managing”.', 'error');
      return;
    }
    const body: ManagementUpdate = { url: u, applianceName: name.value.trim() || null };
    if (code.value.trim()) body.enrollmentCode = code.value.trim();
    if (user.value.trim() && !/^https?:/i.test(u)) body.username = user.value.trim();
    if (pass.value && !/^https?:/i.test(u)) body.password = pass.value;
    save(body, 'Fleet settings saved; connecting.');
  });
  off.addEventListener('click', () => save({ url: null }, 'This appliance no longer reports to a fleet console.'));

  // The link's state changes show in the status (its component); reload the card when it does.
  let lastSeen = '';
  const offStatus = on<ApplianceStatus>('status', (s) => {
    const c = JSON.stringify(s.components.find((x) => x.name === 'management') ?? null);
    if (c !== lastSeen) {
      lastSeen = c;
      load();
    }
  });
  load();
  return {
    element: form,
    dispose: () => {
      disposed = true;
      if (poll) clearTimeout(poll);
      offStatus();
    },
  };
}
