/**
 * DOM helpers: elements built with `h()` (text only through textContent, never innerHTML),
 * number and time formatting, a confirmation dialog and notices.
 */
type Child = Node | string | number | null | undefined | false;
type Attr = string | number | boolean | null | undefined | ((ev: Event) => void);

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs?: Record<string, Attr> | null,
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

export function append(el: Element, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'number' ? String(c) : c);
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function setText(el: Element | null, text: string): void {
  if (el && el.textContent !== text) el.textContent = text;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${UNITS[u]}`;
}

export function fmtRate(bytesPerSecond: number | null | undefined): string {
  if (bytesPerSecond === null || bytesPerSecond === undefined) return 'unlimited';
  return `${fmtBytes(bytesPerSecond)}/s`;
}

export function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

/** A duration; `wholeSeconds` for a running clock (no milliseconds or tenths). */
export function fmtDuration(ms: number | null | undefined, wholeSeconds = false): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—';
  if (!wholeSeconds && ms < 1000) return `${Math.round(ms)} ms`;
  if (!wholeSeconds && ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  let s = Math.round(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  s -= mm * 60;
  if (d > 0) return `${d}d ${hh}h ${mm}m`;
  if (hh > 0) return `${hh}h ${mm}m ${s}s`;
  if (mm > 0) return `${mm}m ${s}s`;
  return `${s}s`;
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function pct(done: number, total: number): number {
  if (total <= 0) return 100;
  return Math.max(0, Math.min(100, (done / total) * 100));
}

export interface ConfirmOptions {
  title: string;
  message: string;
  confirmLabel: string;
  danger?: boolean;
}

/** A modal confirmation; resolves true only when the user presses the confirm button. */
export function confirmAction(o: ConfirmOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const cancel = h('button', { type: 'button', class: 'btn', 'data-action': 'cancel' }, 'Cancel');
    const ok = h('button', { type: 'button', class: o.danger ? 'btn btn-danger' : 'btn btn-primary', 'data-action': 'confirm' }, o.confirmLabel);
    const dlg = h(
      'dialog',
      { class: 'confirm', 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, o.title),
      h('p', null, o.message),
      h('div', { class: 'dialog-actions' }, cancel, ok),
    );
    let answered = false;
    const done = (v: boolean): void => {
      if (answered) return;
      answered = true;
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    cancel.addEventListener('click', () => done(false));
    ok.addEventListener('click', () => done(true));
    dlg.addEventListener('cancel', () => done(false));
    dlg.addEventListener('close', () => done(false));
    document.body.append(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

export interface ChoiceOptions extends ConfirmOptions {
  /** A checkbox in the dialog (off at first); `message` follows it when it changes. */
  option: { id: string; label: string; messageWhenOn: string };
}

/** A modal confirmation with one checkbox: resolves its value when confirmed, null otherwise. */
export function confirmWithOption(o: ChoiceOptions): Promise<boolean | null> {
  const box = h('input', { type: 'checkbox', id: o.option.id });
  const text = h('p', { id: `${o.option.id}-message` }, o.message);
  box.addEventListener('change', () => setText(text, box.checked ? o.option.messageWhenOn : o.message));
  return modal(o, [text, h('label', { class: 'check', for: o.option.id }, box, o.option.label)], () => box.checked);
}

/** A modal asking for one line of text: resolves it (trimmed) when confirmed, null otherwise. */
export function askText(o: { title: string; label: string; value: string; confirmLabel: string; maxLength: number }): Promise<string | null> {
  const input = h('input', { type: 'text', id: 'ask-text', value: o.value, maxlength: o.maxLength, required: true });
  return modal({ ...o, message: '' }, [h('label', { for: 'ask-text' }, o.label), input], () => input.value.trim() || null, input);
}

/** The dialog behind the confirmations: `value()` is read when the confirm button is pressed. */
function modal<T>(o: ConfirmOptions, body: HTMLElement[], value: () => T, focus?: HTMLElement): Promise<T | null> {
  return new Promise((resolve) => {
    const cancel = h('button', { type: 'button', class: 'btn', 'data-action': 'cancel' }, 'Cancel');
    const ok = h('button', { type: 'submit', class: o.danger ? 'btn btn-danger' : 'btn btn-primary', 'data-action': 'confirm' }, o.confirmLabel);
    const form = h('form', { method: 'dialog', class: 'stack' }, ...body, h('div', { class: 'dialog-actions' }, cancel, ok));
    const dlg = h('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-title' }, h('h2', { id: 'confirm-title' }, o.title), form);
    let answered = false;
    const done = (v: T | null): void => {
      if (answered) return;
      answered = true;
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    cancel.addEventListener('click', () => done(null));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      done(value());
    });
    dlg.addEventListener('cancel', () => done(null));
    dlg.addEventListener('close', () => done(null));
    document.body.append(dlg);
    dlg.showModal();
    (focus ?? cancel).focus();
  });
}

/** A short notice at the bottom of the screen. */
export function notify(message: string, kind: 'ok' | 'error' = 'ok'): void {
  let box = document.getElementById('notices');
  if (!box) {
    box = h('div', { id: 'notices', role: 'status', 'aria-live': 'polite' });
    document.body.append(box);
  }
  const n = h('div', { class: `notice notice-${kind}` }, message);
  box.append(n);
  setTimeout(() => n.remove(), kind === 'error' ? 8000 : 4000);
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
