/**
 * Models: the active model, the library of models (activate, rename, remove), adding one (upload,
 * URL import, capture while thawed), and "verify now" of the active one with progress. The list
 * follows changes live: an audit entry of a model action (from here, the CLI or a script) or a
 * change of the active model reloads it, and it is polled while an import or a download runs.
 */
import { ApiError, getJson, postJson } from '../api.js';
import { errorText, fmtBytes, fmtInt, fmtRate, fmtTime, h, notify, pct, setText } from '../dom.js';
import { latestStatus, on } from '../live.js';
import type { AuditEntry } from '../../../appliance/api/audit.js';
import type { ModelVerifyStatus } from '../../../appliance/api/model.js';
import type { ModelList } from '../../../appliance/api/models.js';
import type { ApplianceStatus } from '../../../appliance/api/status.js';
import { captureCard, importCard, uploadCard } from './model-add.js';
import { libraryView } from './model-library.js';
import type { Page } from './page.js';

/** How often the list is polled while an import or a download runs. */
const POLL_MS = 1000;

interface ModelInfo {
  model: ApplianceStatus['model'];
  canVerify: boolean;
  verify: ModelVerifyStatus | null;
}

export const modelPage: Page = {
  title: 'Models',
  render(root) {
    let poll: number | null = null;
    let loading = false;
    let again = false;
    const loadList = (): void => {
      if (loading) {
        again = true;
        return;
      }
      loading = true;
      getJson<ModelList>('/api/models')
        .then((list) => {
          library.show(list);
          const busy = list.imports.some((j) => j.state === 'running') || list.models.some((m) => m.download !== null && m.download.state !== 'done');
          if (busy && poll === null) poll = window.setInterval(loadList, POLL_MS);
          if (!busy && poll !== null) {
            window.clearInterval(poll);
            poll = null;
          }
        })
        .catch((err: unknown) => notify(`Could not load the models: ${errorText(err)}`, 'error'))
        .finally(() => {
          loading = false;
          if (again) {
            again = false;
            loadList();
          }
        });
    };
    const changed = (): void => {
      loadList();
      load();
    };
    const library = libraryView(changed);
    const capture = captureCard(changed);
    const btn = h('button', { type: 'button', class: 'btn btn-primary', id: 'btn-verify' }, 'Verify now');
    const bar = h('progress', { id: 'verify-bar', max: 100, value: 0, hidden: true });
    const dl = h('dl', { class: 'facts', id: 'model-facts' });
    root.append(
      h('section', { class: 'card card-wide' }, h('h2', null, 'Active model'), dl),
      library.element,
      h('div', { class: 'grid grid-3' }, uploadCard(changed), importCard(changed), capture.element),
      h(
        'section',
        { class: 'card card-wide' },
        h('h2', null, 'Verify'),
        h('p', { class: 'muted' }, 'Reads the whole model image and checks every region against the hash in its manifest.'),
        h('div', { class: 'actions' }, btn),
        bar,
        h('p', { id: 'verify-text' }),
      ),
    );
    const fact = (k: string, v: string, id: string): HTMLElement[] => [h('dt', null, k), h('dd', { id }, v)];
    const showVerify = (v: ModelVerifyStatus | null): void => {
      const text = root.querySelector('#verify-text');
      if (!v || v.state === 'idle') {
        bar.hidden = true;
        setText(text, 'Not verified since the daemon started.');
        return;
      }
      bar.hidden = false;
      bar.value = pct(v.regionsDone, v.regionsTotal);
      bar.dataset.state = v.state;
      btn.disabled = v.state === 'running';
      text?.setAttribute('data-state', v.state);
      if (v.state === 'running') {
        setText(text, `Verifying: ${fmtInt(v.regionsDone)} of ${fmtInt(v.regionsTotal)} regions, ${fmtRate(v.bytesPerSecond)}`);
      } else if (v.state === 'passed') {
        setText(text, `Passed: all ${fmtInt(v.regionsTotal)} regions match the manifest (finished ${fmtTime(v.finishedAt)}).`);
      } else {
        setText(
          text,
          `Failed${v.error ? `: ${v.error}` : ''}${v.badRegions.length ? ` — ${v.badRegions.length} region(s) differ, first: ${v.badRegions.slice(0, 5).join(', ')}` : ''} (finished ${fmtTime(v.finishedAt)}).`,
        );
      }
    };
    const load = (): void => {
      getJson<ModelInfo>('/api/model')
        .then((m) => {
          dl.replaceChildren(
            ...fact('Name', m.model.name, 'model-name'),
            ...fact('Size', `${fmtBytes(m.model.size)} (${fmtInt(m.model.size)} bytes)`, 'model-size'),
            ...fact('Region size', fmtBytes(m.model.regionSize), 'model-region-size'),
            ...fact('Regions', fmtInt(Math.ceil(m.model.size / m.model.regionSize)), 'model-regions'),
            ...fact('Id', m.model.id, 'model-id'),
          );
          btn.disabled = !m.canVerify || m.verify?.state === 'running';
          if (!m.canVerify) btn.title = 'This daemon cannot verify from the web UI; use `snapback verify` on the appliance.';
          showVerify(m.verify);
        })
        .catch((err: unknown) => notify(`Could not load the model: ${errorText(err)}`, 'error'));
    };
    btn.addEventListener('click', () => {
      btn.disabled = true;
      postJson<ModelVerifyStatus>('/api/model/verify', {})
        .then((v) => showVerify(v))
        .catch((err: unknown) => {
          btn.disabled = false;
          notify(err instanceof ApiError && err.code === 'BUSY' ? 'A verification is already running.' : `Could not start: ${errorText(err)}`, 'error');
        });
    });
    load();
    loadList();
    capture.show(latestStatus);
    if (!latestStatus) void getJson<ApplianceStatus>('/api/status').then((s) => capture.show(s), () => undefined);
    let activeId = latestStatus?.model.id ?? null;
    const offs = [
      on<ModelVerifyStatus>('model-verify', showVerify),
      on<boolean>('connection', (up) => up && changed()),
      on<AuditEntry>('audit', (e) => e.action.startsWith('model') && loadList()),
      on<ApplianceStatus>('status', (s) => {
        capture.show(s);
        if (s.model.id !== activeId) {
          activeId = s.model.id;
          changed();
        }
      }),
    ];
    return () => {
      for (const off of offs) off();
      if (poll !== null) window.clearInterval(poll);
    };
  },
};
