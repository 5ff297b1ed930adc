/**
 * The model library on the Models page: every model (name, size, id, source, created, parent,
 * whether it is the active one, a lazy model's download), the imports still running, and the
 * actions on a model: activate (confirmed, saying when it takes effect), rename, remove (not the
 * active one).
 */
import { request, postJson } from '../api.js';
import { askText, confirmAction, confirmWithOption, errorText, fmtBytes, fmtInt, fmtRate, fmtTime, h, notify, pct } from '../dom.js';
import type { ModelActivateReply, ModelActivateRequest, ModelActivationCancelReply, ModelImportJob, ModelList, ModelRecord, ModelRenameRequest, ModelSource } from '../../../appliance/api/models.js';

export function sourceText(s: ModelSource): string {
  switch (s.kind) {
    case 'file':
      return `file ${s.path}`;
    case 'upload':
      return s.fileName ? `upload of ${s.fileName}` : 'upload';
    case 'url':
      return s.url;
    case 'capture':
      return `captured in session ${s.session}`;
  }
}

const shortId = (id: string): string => id.slice(0, 12);
const modelPath = (m: ModelRecord): string => `/api/models/${encodeURIComponent(m.id)}`;

/** The state cell: active, ready, or a lazy model's download with its progress. */
function stateCell(m: ModelRecord): HTMLElement {
  const td = h('td', { 'data-label': 'State', class: 'model-state' });
  const d = m.download;
  if (d && d.state !== 'done') {
    const p = pct(d.regionsDone, d.regionsTotal);
    td.dataset.state = d.state;
    td.append(
      h('progress', { class: 'download-bar', max: 100, value: p }),
      h(
        'span',
        { class: d.state === 'stalled' ? 'bad' : 'muted small' },
        d.state === 'stalled'
          ? `Model download stalled${d.lastError ? `: ${d.lastError}` : ''}; it resumes by itself`
          : `Downloading: ${fmtInt(d.regionsDone)} of ${fmtInt(d.regionsTotal)} regions (${Math.floor(p)} %), ${fmtRate(d.bytesPerSecond)}`,
      ),
    );
  } else {
    td.dataset.state = m.complete ? 'ready' : 'incomplete';
    td.append(m.complete ? 'Ready' : 'Incomplete');
  }
  if (m.active) td.prepend(h('span', { class: 'badge badge-active' }, 'Active'), ' ');
  if (m.pendingActivation) td.prepend(h('span', { class: 'badge badge-pending', title: 'An activation waits for the next session end' }, 'Active after the next session end'), ' ');
  return td;
}

export interface LibraryView {
  element: HTMLElement;
  show(list: ModelList): void;
}

/** The library card; `changed` runs after an action so the page reloads the list. */
export function libraryView(changed: () => void): LibraryView {
  const body = h('tbody', { id: 'models-body' });
  const imports = h('tbody', { id: 'imports-body' });
  const importsWrap = h(
    'div',
    { id: 'imports', hidden: true },
    h('h3', null, 'Imports'),
    h(
      'div',
      { class: 'table-wrap' },
      h('table', { class: 'table stack-on-phone' }, h('thead', null, h('tr', null, ['Name', 'From', 'Progress', ''].map((t) => h('th', { scope: 'col' }, t)))), imports),
    ),
  );
  const element = h(
    'section',
    { class: 'card card-wide' },
    h('h2', null, 'Library'),
    h(
      'div',
      { class: 'table-wrap' },
      h(
        'table',
        { class: 'table stack-on-phone', id: 'models-table' },
        h('thead', null, h('tr', null, ['Name', 'Size', 'Id', 'Source', 'Created', 'Parent', 'State', ''].map((t) => h('th', { scope: 'col' }, t)))),
        body,
      ),
    ),
    importsWrap,
  );

  const activate = async (m: ModelRecord): Promise<void> => {
    const now = await confirmWithOption({
      title: `Activate “${m.name}”?`,
      message:
        'It takes effect at the next session end (the host’s next power cycle, or End session): until then the host keeps the disk it has. ' +
        'Then only the regions that differ between the two models are restored.',
      confirmLabel: 'Activate',
      option: {
        id: 'activate-now',
        label: 'Now: end the current session and switch at once',
        messageWhenOn:
          'It takes effect now: the current session ends, the host loses its disk for a moment, and every region it changed or that differs between the two models is restored from the new one.',
      },
    });
    if (now === null) return;
    try {
      const body: ModelActivateRequest = now ? { now: true } : {};
      const r = await postJson<ModelActivateReply>(`${modelPath(m)}/activate`, body);
      notify(
        r.takesEffect === 'now'
          ? `${m.name} is active now; ${fmtInt(r.regionsToRestore)} regions are being restored.`
          : `${m.name} becomes active at the next session end (${fmtInt(r.regionsToRestore)} regions to restore then).`,
      );
    } catch (err) {
      notify(`Not activated: ${errorText(err)}`, 'error');
    }
    changed();
  };

  const cancelActivation = async (m: ModelRecord): Promise<void> => {
    try {
      const r = await postJson<ModelActivationCancelReply>('/api/models/activation/cancel', {});
      notify(r.cancelled ? `The activation of ${r.cancelled.name} is cancelled; the active model stays.` : 'No activation was pending.');
    } catch (err) {
      notify(`Not cancelled (${m.name}): ${errorText(err)}`, 'error');
    }
    changed();
  };

  const rename = async (m: ModelRecord): Promise<void> => {
    const name = await askText({ title: `Rename “${m.name}”`, label: 'New name', value: m.name, confirmLabel: 'Rename', maxLength: 100 });
    if (name === null || name === m.name) return;
    try {
      await request('PATCH', modelPath(m), { name } satisfies ModelRenameRequest);
      notify(`Renamed to ${name}.`);
    } catch (err) {
      notify(`Not renamed: ${errorText(err)}`, 'error');
    }
    changed();
  };

  const remove = async (m: ModelRecord): Promise<void> => {
    const ok = await confirmAction({
      title: `Remove “${m.name}”?`,
      message: `Its image and manifest (${fmtBytes(m.size)}) are deleted from the appliance.`,
      confirmLabel: 'Remove',
      danger: true,
    });
    if (!ok) return;
    try {
      await request('DELETE', modelPath(m));
      notify(`${m.name} removed.`);
    } catch (err) {
      notify(`Not removed: ${errorText(err)}`, 'error');
    }
    changed();
  };

  const modelRow = (m: ModelRecord, byId: Map<string, ModelRecord>): HTMLTableRowElement => {
    const parent = m.parent === null ? '—' : (byId.get(m.parent)?.name ?? shortId(m.parent));
    const act = h('button', { type: 'button', class: 'btn btn-small btn-primary', 'data-action': 'activate', disabled: m.active }, 'Activate');
    const ren = h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'rename' }, 'Rename');
    const rem = h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'remove', disabled: m.active || m.pendingActivation }, 'Remove');
    if (m.active) {
      act.title = 'This is the active model.';
      rem.title = 'The active model cannot be removed: activate another one first.';
    }
    if (m.pendingActivation) rem.title = 'It becomes the active model at the next session end: cancel that activation first.';
    const cancel = m.pendingActivation ? h('button', { type: 'button', class: 'btn btn-small', 'data-action': 'cancel-activation' }, 'Cancel activation') : null;
    cancel?.addEventListener('click', () => void cancelActivation(m));
    act.addEventListener('click', () => void activate(m));
    ren.addEventListener('click', () => void rename(m));
    rem.addEventListener('click', () => void remove(m));
    return h(
      'tr',
      { 'data-model': m.id, 'data-name': m.name, 'data-active': String(m.active) },
      h('td', { 'data-label': 'Name', class: 'model-name' }, h('strong', null, m.name)),
      h('td', { 'data-label': 'Size', class: 'num' }, fmtBytes(m.size)),
      h('td', { 'data-label': 'Id', title: m.id }, h('code', null, shortId(m.id))),
      h('td', { 'data-label': 'Source', class: 'model-source' }, sourceText(m.source)),
      h('td', { 'data-label': 'Created' }, fmtTime(m.createdAt)),
      h('td', { 'data-label': 'Parent' }, parent),
      stateCell(m),
      h('td', null, h('div', { class: 'row-actions' }, ...(cancel ? [cancel] : [act]), ren, rem)),
    );
  };

  const importRow = (j: ModelImportJob): HTMLTableRowElement => {
    const progress =
      j.state === 'failed'
        ? h('span', { class: 'bad' }, `Failed: ${j.error ?? 'unknown error'}`)
        : h(
            'span',
            { class: 'import-progress' },
            h('progress', { max: 100, value: j.bytesTotal ? pct(j.bytesDone, j.bytesTotal) : 0 }),
            h('span', { class: 'muted small' }, j.bytesTotal ? `${fmtBytes(j.bytesDone)} of ${fmtBytes(j.bytesTotal)}` : fmtBytes(j.bytesDone)),
          );
    return h(
      'tr',
      { 'data-import': j.id, 'data-state': j.state },
      h('td', { 'data-label': 'Name' }, j.name),
      h('td', { 'data-label': 'From', class: 'details' }, sourceText(j.source)),
      h('td', { 'data-label': 'Progress' }, progress),
      h('td', null, j.state === 'done' ? 'Done' : j.state === 'running' ? 'Running' : ''),
    );
  };

  const show = (list: ModelList): void => {
    const byId = new Map(list.models.map((m) => [m.id, m]));
    body.dataset.loaded = 'true';
    body.replaceChildren(
      ...(list.models.length ? list.models.map((m) => modelRow(m, byId)) : [h('tr', null, h('td', { colspan: 8, class: 'muted' }, 'No models.'))]),
    );
    const jobs = list.imports.filter((j) => j.state !== 'done');
    importsWrap.hidden = jobs.length === 0;
    imports.replaceChildren(...jobs.map(importRow));
  };

  return { element, show };
}
