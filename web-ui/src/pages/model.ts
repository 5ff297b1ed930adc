/** Model: the active model image and "verify now" with progress. */
import { ApiError, getJson, postJson } from '../api.js';
import { errorText, fmtBytes, fmtInt, fmtRate, fmtTime, h, notify, pct, setText } from '../dom.js';
import { on } from '../live.js';
import type { ModelVerifyStatus } from '../../../appliance/api/model.js';
import type { ApplianceStatus } from '../../../appliance/api/status.js';
import type { Page } from './page.js';

interface ModelInfo {
  model: ApplianceStatus['model'];
  canVerify: boolean;
  verify: ModelVerifyStatus | null;
}

export const modelPage: Page = {
  title: 'Model',
  render(root) {
    const btn = h('button', { type: 'button', class: 'btn btn-primary', id: 'btn-verify' }, 'Verify now');
    const bar = h('progress', { id: 'verify-bar', max: 100, value: 0, hidden: true });
    const dl = h('dl', { class: 'facts', id: 'model-facts' });
    root.append(
      h('section', { class: 'card card-wide' }, h('h2', null, 'Active model'), dl),
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
    const offs = [on<ModelVerifyStatus>('model-verify', showVerify), on<boolean>('connection', (up) => up && load())];
    return () => {
      for (const off of offs) off();
    };
  },
};
