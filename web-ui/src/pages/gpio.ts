/**
 * GPIO: the backend, live pin states (button, status LED, host power/reset switches, host power
 * LED), the host session as the GPIO sees it (a short press armed to end it, a failed end) and
 * host power actions. Actions that cut the host's power or restore ask for confirmation; each
 * is written to the audit log by the daemon. States refresh every second while the page is open.
 */
import { ApiError, getJson, postJson } from '../api.js';
import { confirmAction, errorText, fmtTime, h, notify, setText } from '../dom.js';
import type { GpioStatus, PowerAction } from '../../../appliance/api/gpio.js';
import type { Page } from './page.js';

type Action = PowerAction;

const ACTIONS: { action: Action; label: string; confirm: string | null; needs: 'power' | 'reset' | 'restore' }[] = [
  { action: 'on', label: 'Power on', confirm: null, needs: 'power' },
  { action: 'off', label: 'Shut down', confirm: 'Press the host’s power button briefly: its OS shuts down gracefully.', needs: 'power' },
  { action: 'force-off', label: 'Force off', confirm: 'Hold the host’s power button for 5 s: the host loses power at once, unsaved work is lost.', needs: 'power' },
  { action: 'reset', label: 'Reset', confirm: 'Press the host’s reset button: the host restarts at once.', needs: 'reset' },
  { action: 'restore-now', label: 'Restore now', confirm: 'Shut the host down, end the session (its changes are restored from the model), and power it on again.', needs: 'restore' },
];

/** Which GPIO backend drives the pins, and the chip that holds the BCM lines when it is known. */
function backendText(b: GpioStatus['backend']): string {
  if (!b) return 'Backend: none';
  return `Backend: ${b.kind}${b.chip ? ` · chip ${b.chip.label} (lines ${b.chip.base}–${b.chip.base + b.chip.ngpio - 1})` : ''}`;
}

/** The host session as the GPIO sees it: an end in progress, a short press armed to end it, a failed end. */
function sessionText(g: GpioStatus): string {
  const parts: string[] = [];
  if (g.session.ending) parts.push('ending now');
  if (g.button.armedEnd) parts.push(`end armed by ${g.button.armedEnd.by} since ${fmtTime(g.button.armedEnd.since)}: the session ends when the host powers off`);
  if (g.session.error) parts.push(`${g.session.error.message} (${fmtTime(g.session.error.at)})`);
  return `Session: ${parts.length ? parts.join(' · ') : 'no end pending'}`;
}

export const gpioPage: Page = {
  title: 'GPIO',
  render(root) {
    const summary = h('p', { id: 'gpio-summary' });
    const backend = h('p', { id: 'gpio-backend' });
    const session = h('p', { id: 'gpio-session' });
    const tbody = h('tbody', { id: 'gpio-pins' });
    const table = h('table', { class: 'table' }, h('thead', null, h('tr', null, h('th', null, 'Role'), h('th', null, 'BCM'), h('th', null, 'sysfs'), h('th', null, 'Direction'), h('th', null, 'Level'), h('th', null, 'State'))), tbody);
    const buttons = new Map<Action, HTMLButtonElement>();
    const actionRow = h('div', { class: 'actions' });
    for (const a of ACTIONS) {
      const b = h('button', { type: 'button', class: a.action === 'force-off' || a.action === 'restore-now' ? 'btn btn-danger' : 'btn', 'data-action': a.action }, a.label);
      buttons.set(a.action, b);
      actionRow.append(b);
      b.addEventListener('click', () => {
        const go = a.confirm ? confirmAction({ title: `${a.label}?`, message: a.confirm, confirmLabel: a.label, danger: a.action !== 'off' }) : Promise.resolve(true);
        void go.then((yes) => {
          if (!yes) return;
          b.disabled = true;
          postJson('/api/gpio/power', { action: a.action })
            .then(() => notify(`${a.label}: started`))
            .catch((err: unknown) => notify(err instanceof ApiError && err.code === 'BUSY' ? 'Another power action is running.' : `${a.label} failed: ${errorText(err)}`, 'error'))
            .finally(refresh);
        });
      });
    }
    const powerText = h('p', { id: 'gpio-power' });
    root.append(
      h('section', { class: 'card card-wide' }, h('h2', null, 'GPIO'), summary, backend, session, table),
      h('section', { class: 'card card-wide' }, h('h2', null, 'Host power'), powerText, actionRow),
    );

    const show = (g: GpioStatus): void => {
      root.dataset.gpio = g.available ? 'on' : 'off';
      setText(summary, g.available ? `Status LED: ${g.led.pattern}${g.button.wired ? ` · button ${g.button.pressed ? 'pressed' : 'released'}` : ''}` : `GPIO is off: ${g.reason ?? 'not available'}`);
      setText(backend, backendText(g.backend));
      setText(session, sessionText(g));
      tbody.replaceChildren(
        ...g.pins.map((p) =>
          h(
            'tr',
            { 'data-role': p.role },
            h('td', null, p.role),
            h('td', null, String(p.bcm)),
            h('td', null, p.sysfs === null ? '—' : String(p.sysfs)),
            h('td', null, p.direction),
            h('td', { class: 'pin-level' }, p.level === null ? '—' : String(p.level)),
            h('td', { class: 'pin-state' }, p.error ? `error: ${p.error}` : p.active === null ? '—' : p.active ? 'active' : 'inactive'),
          ),
        ),
      );
      const pw = g.power;
      const led = g.host.lit === null ? '' : g.host.blinking ? ' (LED blinking: asleep)' : g.host.lit ? ' (LED lit)' : ' (LED dark)';
      const hostText = g.host.senseWired ? `host power: ${g.host.power}${led}` : 'host power LED not wired';
      const running = pw.running ? ` · running: ${pw.running.action}${pw.running.phase ? ` (${pw.running.phase})` : ''} by ${pw.running.actor}` : '';
      const last = pw.last ? ` · last: ${pw.last.action} by ${pw.last.actor} at ${fmtTime(pw.last.at)}` : '';
      const err = pw.state === 'error' && pw.error?.message ? ` · error: ${pw.error.message}` : '';
      setText(powerText, `${hostText}${running}${last}${err}`);
      for (const a of ACTIONS) {
        const wired = a.needs === 'power' ? pw.wired.power : a.needs === 'reset' ? pw.wired.reset : pw.wired.power && pw.wired.led;
        const b = buttons.get(a.action)!;
        b.disabled = !g.available || !wired || pw.state === 'busy';
        b.title = wired ? '' : 'not wired (see docs/gpio.md)';
      }
    };
    const refresh = (): void => {
      getJson<GpioStatus>('/api/gpio')
        .then(show)
        .catch((err: unknown) => setText(summary, `Could not read GPIO: ${errorText(err)}`));
    };
    refresh();
    const timer = setInterval(refresh, 1000);
    return () => clearInterval(timer);
  },
};
