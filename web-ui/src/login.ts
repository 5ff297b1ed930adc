/**
 * The login page (the only page served without a login). On first start, when no password is
 * set, it asks the administrator to choose one instead; from another machine that also needs
 * the one-time setup code the appliance wrote to its state directory and its log.
 */
import { ApiError, authState, postJson } from './api.js';
import { clear, errorText, h } from './dom.js';

const root = document.getElementById('login-root');

async function main(): Promise<void> {
  if (!root) return;
  let state;
  try {
    state = await authState();
  } catch (err) {
    show(h('p', { class: 'error' }, `Cannot reach the appliance: ${errorText(err)}`));
    return;
  }
  if (state.authenticated && state.via === 'login') {
    location.replace('/');
    return;
  }
  if (!state.passwordSet) show(setupForm(state.minPasswordLength, state.setupCodeRequired));
  else show(loginForm());
}

function show(el: Element): void {
  if (!root) return;
  clear(root);
  root.append(el);
  root.querySelector<HTMLInputElement>('input[type=password]')?.focus();
}

function loginForm(): HTMLFormElement {
  const msg = h('p', { class: 'error', role: 'alert', id: 'login-error' });
  const pw = h('input', { type: 'password', id: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const btn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'login-submit' }, 'Log in');
  const form = h(
    'form',
    { id: 'login-form', class: 'stack' },
    h('h1', null, 'Log in to Snapback'),
    // A username field (read-only) helps password managers file the password correctly.
    h('input', { type: 'text', name: 'username', value: 'admin', autocomplete: 'username', hidden: true, readonly: true }),
    h('label', { for: 'password' }, 'Administrator password'),
    pw,
    btn,
    msg,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    btn.disabled = true;
    postJson('/api/auth/login', { password: pw.value })
      .then(() => location.replace('/'))
      .catch((err: unknown) => {
        msg.textContent = err instanceof ApiError && err.code === 'BAD_CREDENTIALS' ? 'Wrong password.' : errorText(err);
        pw.select();
      })
      .finally(() => {
        btn.disabled = false;
      });
  });
  return form;
}

function setupForm(minLength: number, codeRequired: boolean): HTMLFormElement {
  const msg = h('p', { class: 'error', role: 'alert', id: 'setup-error' });
  const code = h('input', {
    type: 'text',
    id: 'setup-code',
    name: 'setup-code',
    autocomplete: 'one-time-code',
    autocapitalize: 'characters',
    spellcheck: 'false',
    required: true,
    placeholder: 'XXXX-XXXX-XXXX-XXXX',
  });
  const codePart = codeRequired
    ? [
        h(
          'p',
          { id: 'setup-code-help' },
          'You are connecting from another machine, so the appliance asks for its one-time setup code. Find it on the appliance: ',
          h('code', null, 'sudo cat /var/lib/snapback/setup-code'),
          ' (or the state directory you chose), or in its log: ',
          h('code', null, 'journalctl -u snapback'),
          '.',
        ),
        h('label', { for: 'setup-code' }, 'Setup code'),
        code,
      ]
    : [];
  const pw = h('input', { type: 'password', id: 'new-password', autocomplete: 'new-password', required: true, minlength: minLength });
  const pw2 = h('input', { type: 'password', id: 'confirm-password', autocomplete: 'new-password', required: true, minlength: minLength });
  const btn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'setup-submit' }, 'Set password');
  const form = h(
    'form',
    { id: 'setup-form', class: 'stack' },
    h('h1', null, 'Welcome to Snapback'),
    h(
      'p',
      null,
      'This appliance has no administrator password yet. Choose one now: it protects every setting and action, ' +
        `and there is no default. At least ${minLength} characters.`,
    ),
    ...codePart,
    h('input', { type: 'text', name: 'username', value: 'admin', autocomplete: 'username', hidden: true, readonly: true }),
    h('label', { for: 'new-password' }, 'New password'),
    pw,
    h('label', { for: 'confirm-password' }, 'Repeat it'),
    pw2,
    btn,
    msg,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    msg.textContent = '';
    if (pw.value !== pw2.value) {
      msg.textContent = 'The two passwords differ.';
      return;
    }
    btn.disabled = true;
    postJson('/api/auth/setup', codeRequired ? { password: pw.value, setupCode: code.value } : { password: pw.value })
      .then(() => location.replace('/'))
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.code === 'BAD_SETUP_CODE') {
          msg.textContent = 'Wrong setup code. Copy it again from the appliance.';
          code.select();
        } else msg.textContent = errorText(err);
      })
      .finally(() => {
        btn.disabled = false;
      });
  });
  return form;
}

void main();
