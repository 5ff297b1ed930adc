/**
 * The model catalogue: upload an image (streamed to the console with a progress bar), list the
 * models with the URL appliances provision from, remove one.
 */
import type { CatalogueModel } from '../../../appliance/api/console.js';
import { authState, getJson, request } from './api.js';
import type { Page } from './pages/page.js';
import { confirmAction, errorText, fmtBytes, fmtTime, h, notify } from './dom.js';

/** Uploads with XMLHttpRequest: fetch() reports no upload progress. */
function upload(file: File, name: string, csrf: string, onProgress: (done: number, total: number) => void): Promise<CatalogueModel> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/models?name=${encodeURIComponent(name)}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.total || file.size));
    xhr.addEventListener('load', () => {
      let body: unknown = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON: a proxy's page */
      }
      if (xhr.status === 201) resolve(body as CatalogueModel);
      else {
        const e = body as { message?: unknown } | null;
        reject(new Error(typeof e?.message === 'string' ? e.message : `HTTP ${xhr.status}`));
      }
    });
    xhr.addEventListener('error', () => reject(new Error('the upload broke off (network error)')));
    xhr.addEventListener('abort', () => reject(new Error('upload cancelled')));
    xhr.send(file);
  });
}

export const cataloguePage: Page = {
  title: 'Models',
  render(main) {
    const list = h('tbody', { id: 'model-rows' });
    const file = h('input', { type: 'file', id: 'model-file', required: true, 'aria-label': 'Image file' });
    const name = h('input', { type: 'text', id: 'model-name', placeholder: 'win11-2026-03', required: true, maxlength: 100, 'aria-label': 'Model name' });
    const bar = h('progress', { id: 'upload-progress', max: 100, value: 0, hidden: true });
    const status = h('span', { id: 'upload-status', class: 'muted' });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary', id: 'model-upload' }, 'Upload');
    const form = h('form', { id: 'model-form', class: 'inline-form' }, file, name, submit, bar, status);
    main.append(
      h(
        'section',
        { class: 'card card-wide' },
        h('div', { class: 'card-head' }, h('h2', null, 'Models')),
        h('p', { class: 'muted' }, 'Appliances provision a model lazily from its URL (and the manifest beside it); assign one on the Fleet page.'),
        form,
        h(
          'div',
          { class: 'table-wrap' },
          h('table', { class: 'table stack-on-phone', id: 'model-table' }, h('thead', null, h('tr', null, ...['Name', 'Size', 'Added', 'URL', ''].map((t) => h('th', null, t)))), list),
        ),
      ),
    );

    file.addEventListener('change', () => {
      const f = file.files?.[0];
      if (f && !name.value) name.value = f.name.replace(/\.(img|raw|bin)$/i, '');
    });

    function row(m: CatalogueModel): HTMLTableRowElement {
      return h(
        'tr',
        { 'data-model': m.id },
        h('td', { 'data-label': 'Name', class: 'name' }, m.name),
        h('td', { 'data-label': 'Size', class: 'num' }, fmtBytes(m.size)),
        h('td', { 'data-label': 'Added' }, fmtTime(m.createdAt)),
        h('td', { 'data-label': 'URL', class: 'url' }, h('code', null, m.url)),
        h('td', null, h('button', { type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'remove', onclick: () => void remove(m) }, 'Remove')),
      );
    }

    async function remove(m: CatalogueModel): Promise<void> {
      const ok = await confirmAction({ title: `Remove model ${m.name}?`, message: 'Appliances still provisioning it from the console can no longer fetch its regions.', confirmLabel: 'Remove', danger: true });
      if (!ok) return;
      try {
        await request('DELETE', `/api/models/${encodeURIComponent(m.id)}`);
        notify(`Model ${m.name} removed.`);
        load();
      } catch (err) {
        notify(errorText(err), 'error');
      }
    }

    function load(): void {
      getJson<CatalogueModel[]>('/api/models')
        .then((ms) => {
          list.replaceChildren(...ms.map(row));
          if (ms.length === 0) list.append(h('tr', null, h('td', { colspan: 5, class: 'muted' }, 'No models yet.')));
          main.dataset.loaded = 'true';
        })
        .catch((err: unknown) => notify(`Cannot load the models: ${errorText(err)}`, 'error'));
    }

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const f = file.files?.[0];
      if (!f) return;
      submit.disabled = true;
      bar.hidden = false;
      bar.value = 0;
      status.textContent = 'Uploading…';
      authState()
        .then((s) =>
          upload(f, name.value.trim(), s.csrfToken ?? '', (done, total) => {
            bar.value = total > 0 ? (done / total) * 100 : 0;
            status.textContent = done < total ? `${fmtBytes(done)} of ${fmtBytes(total)}` : 'Hashing…';
          }),
        )
        .then((m) => {
          status.textContent = `Uploaded ${m.name}.`;
          notify(`Model ${m.name} uploaded.`);
          form.reset();
          load();
        })
        .catch((err: unknown) => {
          status.textContent = '';
          notify(`Upload failed: ${errorText(err)}`, 'error');
        })
        .finally(() => {
          submit.disabled = false;
          bar.hidden = true;
        });
    });
    load();
    return () => undefined;
  },
};
