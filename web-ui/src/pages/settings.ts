/** Settings: mode, restore mode, hydration rate, password, fleet management, maintenance windows, API tokens. */
import { ApiError, getJson, postJson, request } from '../api.js';
import { setMode, setRestoreMode } from '../actions.js';
import { confirmAction, errorText, fmtTime, h, notify } from '../dom.js';
import { latestStatus, on } from '../live.js';
import type { ApiTokenInfo } from '../../../appliance/api/auth.js';
import type { Settings } from '../../../appliance/api/settings.js';
import type { ApplianceStatus } from '../../../appliance/api/status.js';
import type { Page } from './page.js';
import { managementCard } from './management-card.js';
import { maintenanceCard } from './maintenance-card.js';

const MIB = 1024 * 1024;

function radio(name: string, value: string, label: string, hint: string): HTMLElement {
  return h(
    'label',
    { class: 'choice' },
    h('input', { type: 'radio', name, value, id: `${name}-${value}` }),
    h('span', null, h('strong', null, label), h('small', { class: 'muted' }, hint)),
  );
}

export const settingsPage: Page = {
  title: 'Settings',
  render(root) {
    // ---- protection and restore mode ----
    const modeForm = h(
      'form',
      { id: 'mode-form', class: 'stack' },
      h('h2', null, 'Protection'),
      h(
        'fieldset',
        null,
        h('legend', null, 'Mode'),
        radio('mode', 'frozen', 'Frozen', 'every session starts from the model'),
        radio('mode', 'thawed', 'Thawed (maintenance)', 'changes are kept across sessions'),
      ),
      h(
        'fieldset',
        null,
        h('legend', null, 'Restore'),
        radio('restore', 'instant', 'Instant', 'the host boots at once; changed regions are read from the model until copied back'),
        radio('restore', 'eager', 'Eager', 'every changed region is copied back before the host gets its disk'),
      ),
      h('button', { type: 'submit', class: 'btn btn-primary', id: 'mode-save' }, 'Apply'),
    );
    const showModes = (s: ApplianceStatus | null): void => {
      if (!s) return;
      const m = modeForm.querySelector<HTMLInputElement>(`#mode-${s.mode}`);
      const r = modeForm.querySelector<HTMLInputElement>(`#restore-${s.restoreMode}`);
      if (m && !modeForm.contains(document.activeElement)) m.checked = true;
      if (r && !modeForm.contains(document.activeElement)) r.checked = true;
    };
    modeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const s = latestStatus;
      const fd = new FormData(modeForm);
      const mode = fd.get('mode');
      const restore = fd.get('restore');
      void (async () => {
        if ((restore === 'instant' || restore === 'eager') && restore !== s?.restoreMode) await setRestoreMode(restore);
        if ((mode === 'frozen' || mode === 'thawed') && mode !== s?.mode) await setMode(mode);
      })();
    });

    // ---- hydration rate ----
    const rate = h('input', { type: 'number', id: 'hydration-rate-input', name: 'rate', min: 0.0625, max: 10240, step: 'any', placeholder: 'unlimited' });
    const policyForm = h(
      'form',
      { id: 'policy-form', class: 'stack' },
      h('h2', null, 'Sessions and restore'),
      h(
        'p',
        { class: 'muted small' },
        'Starting the appliance, the reset button and the web UI always end a session; a host that only sleeps keeps its session. Which USB and power-LED transitions end one is set with the hardware, in gadget.json and gpio.json on the appliance (docs/gadget.md, docs/gpio.md).',
      ),
      h('label', { for: 'hydration-rate-input' }, 'Background restore rate limit (MiB/s, empty for unlimited)'),
      rate,
      h('button', { type: 'submit', class: 'btn btn-primary', id: 'policy-save' }, 'Save'),
    );
    const showSettings = (s: Settings): void => {
      policyForm.dataset.loaded = 'true';
      rate.value = s.hydrationRateBytesPerSecond === null ? '' : String(Math.round((s.hydrationRateBytesPerSecond / MIB) * 1000) / 1000);
    };
    policyForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = rate.value.trim();
      const bps = v === '' ? null : Math.round(Number(v) * MIB);
      if (bps !== null && !(bps > 0)) {
        notify('The rate must be a positive number, or empty for unlimited.', 'error');
        return;
      }
      postJson<Settings>('/api/settings', { hydrationRateBytesPerSecond: bps })
        .then((s) => {
          showSettings(s);
          notify('Settings saved.');
        })
        .catch((err: unknown) => notify(`Not saved: ${errorText(err)}`, 'error'));
    });

    // ---- password ----
    const cur = h('input', { type: 'password', id: 'pw-current', autocomplete: 'current-password', required: true });
    const nw = h('input', { type: 'password', id: 'pw-new', autocomplete: 'new-password', required: true, minlength: 8 });
    const nw2 = h('input', { type: 'password', id: 'pw-repeat', autocomplete: 'new-password', required: true, minlength: 8 });
    const pwForm = h(
      'form',
      { id: 'password-form', class: 'stack' },
      h('h2', null, 'Password'),
      h('input', { type: 'text', name: 'username', value: 'admin', autocomplete: 'username', hidden: true, readonly: true }),
      h('label', { for: 'pw-current' }, 'Current password'),
      cur,
      h('label', { for: 'pw-new' }, 'New password'),
      nw,
      h('label', { for: 'pw-repeat' }, 'Repeat the new password'),
      nw2,
      h('button', { type: 'submit', class: 'btn btn-primary', id: 'password-save' }, 'Change password'),
      h('p', { class: 'muted small' }, 'Other browsers logged in are logged out.'),
    );
    pwForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (nw.value !== nw2.value) {
        notify('The new passwords differ.', 'error');
        return;
      }
      postJson('/api/auth/password', { currentPassword: cur.value, newPassword: nw.value })
        .then(() => {
          pwForm.reset();
          notify('Password changed.');
        })
        .catch((err: unknown) =>
          notify(err instanceof ApiError && err.code === 'BAD_CREDENTIALS' ? 'The current password is wrong.' : `Not changed: ${errorText(err)}`, 'error'),
        );
    });

    // ---- API tokens ----
    const tokenBody = h('tbody', { id: 'tokens-body' });
    const tokenName = h('input', { type: 'text', id: 'token-name', maxlength: 64, required: true, placeholder: 'e.g. monitoring' });
    const newToken = h('div', { id: 'new-token', class: 'banner banner-ok', hidden: true });
    const tokenForm = h(
      'form',
      { id: 'token-form', class: 'inline-form' },
      h('label', { for: 'token-name' }, 'Name'),
      tokenName,
      h('button', { type: 'submit', class: 'btn btn-primary', id: 'token-create' }, 'Create token'),
    );
    const loadTokens = (): void => {
      getJson<{ tokens: ApiTokenInfo[] }>('/api/tokens')
        .then(({ tokens }) => {
          tokenBody.dataset.loaded = 'true';
          tokenBody.replaceChildren(
            ...(tokens.length
              ? tokens.map((t) => {
                  const revoke = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-token': t.id }, 'Revoke');
                  revoke.addEventListener('click', () => {
                    void confirmAction({
                      title: `Revoke the token “${t.name}”?`,
                      message: 'Scripts using it lose access at once.',
                      confirmLabel: 'Revoke',
                      danger: true,
                    }).then((ok) => {
                      if (!ok) return;
                      request('DELETE', `/api/tokens/${encodeURIComponent(t.id)}`)
                        .then(() => {
                          notify(`Token ${t.name} revoked.`);
                          loadTokens();
                        })
                        .catch((err: unknown) => notify(`Not revoked: ${errorText(err)}`, 'error'));
                    });
                  });
                  return h(
                    'tr',
                    { 'data-token-row': t.id },
                    h('td', { 'data-label': 'Name' }, t.name),
                    h('td', { 'data-label': 'Created' }, `${fmtTime(t.createdAt)} by ${t.createdBy}`),
                    h('td', { 'data-label': 'Last used' }, t.lastUsedAt ? fmtTime(t.lastUsedAt) : 'never'),
                    h('td', null, revoke),
                  );
                })
              : [h('tr', null, h('td', { colspan: 4, class: 'muted' }, 'No API tokens.'))]),
          );
        })
        .catch((err: unknown) => notify(`Could not load the tokens: ${errorText(err)}`, 'error'));
    };
    tokenForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      postJson<{ id: string; name: string; token: string }>('/api/tokens', { name: tokenName.value })
        .then((t) => {
          tokenForm.reset();
          newToken.hidden = false;
          newToken.replaceChildren(
            h('p', null, `Token “${t.name}” created. Copy it now: it is not shown again.`),
            h('code', { id: 'new-token-value', class: 'token' }, t.token),
          );
          loadTokens();
        })
        .catch((err: unknown) => notify(`Not created: ${errorText(err)}`, 'error'));
    });

    const fleet = managementCard();
    const maintenance = maintenanceCard();
    root.append(
      h(
        'div',
        { class: 'grid grid-2' },
        h('section', { class: 'card' }, modeForm),
        h('section', { class: 'card' }, policyForm),
        h('section', { class: 'card' }, pwForm),
        h('section', { class: 'card', id: 'management-card' }, fleet.element),
        h('section', { class: 'card card-span', id: 'maintenance-card' }, maintenance.element),
        h(
          'section',
          { class: 'card card-span' },
          h('h2', null, 'API tokens'),
          h('p', { class: 'muted small' }, 'For scripts: send “Authorization: Bearer TOKEN”. Stored hashed; revocable.'),
          tokenForm,
          newToken,
          h(
            'div',
            { class: 'table-wrap' },
            h(
              'table',
              { class: 'table stack-on-phone', id: 'tokens-table' },
              h('thead', null, h('tr', null, ['Name', 'Created', 'Last used', ''].map((t) => h('th', { scope: 'col' }, t)))),
              tokenBody,
            ),
          ),
        ),
      ),
    );

    showModes(latestStatus);
    getJson<Settings>('/api/settings')
      .then(showSettings)
      .catch((err: unknown) => notify(`Could not load the settings: ${errorText(err)}`, 'error'));
    if (!latestStatus) void getJson<ApplianceStatus>('/api/status').then(showModes, () => undefined);
    loadTokens();
    const offs = [on<ApplianceStatus>('status', showModes), on<Settings>('settings', showSettings), fleet.dispose, maintenance.dispose];
    return () => {
      for (const off of offs) off();
    };
  },
};
