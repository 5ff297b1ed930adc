/**
 * Adding a model on the Models page: upload an image from this computer (drag and drop or a file
 * chooser, with the upload's progress), import one from a URL or a path on the appliance
 * (optionally lazily: usable before it is downloaded), or capture what the host sees now
 * (offered while thawed, when the host's changes are kept).
 */
import { postJson, uploadFile, type Upload } from '../api.js';
import { errorText, fmtBytes, fmtRate, h, notify, pct, setText } from '../dom.js';
import type { ModelCaptureRequest, ModelImportJob, ModelImportRequest, ModelRecord } from '../../../appliance/api/models.js';
import type { ApplianceStatus } from '../../../appliance/api/status.js';

/** How often the list is reloaded while an upload runs. */
const LIST_EVERY_MS = 1000;

/** A model name from a file name: without its extension, at most 100 characters. */
function nameOfFile(fileName: string): string {
  return fileName.replace(/\.(img|raw|bin|iso)$/i, '').slice(0, 100) || 'model';
}

/** What the upload must hash to: from a manifest file chosen with the image. */
interface ExpectedManifest {
  id: string;
  regionSize: number;
  hash: string;
}

/** Reads a manifest file (only its small fields are used) and checks it is for `image`. */
async function readManifest(m: File, image: File): Promise<ExpectedManifest> {
  let j: unknown;
  try {
    j = JSON.parse(await m.text());
  } catch {
    throw new Error(`${m.name} is not JSON`);
  }
  const o = j as Partial<Record<'id' | 'regionSize' | 'hash' | 'size', unknown>>;
  if (typeof o.id !== 'string' || typeof o.regionSize !== 'number' || typeof o.hash !== 'string' || typeof o.size !== 'number') {
    throw new Error(`${m.name} is not a Snapback manifest`);
  }
  if (o.size !== image.size) throw new Error(`${m.name} describes ${fmtBytes(o.size)} (${o.size} bytes) but ${image.name} is ${image.size} bytes`);
  return { id: o.id, regionSize: o.regionSize, hash: o.hash };
}

/** The upload card: `changed` runs when an upload ends (the list reloads). */
export function uploadCard(changed: () => void): HTMLElement {
  const input = h('input', { type: 'file', id: 'upload-file', multiple: true });
  const chosen = h('p', { id: 'upload-chosen', class: 'muted' }, 'Drop a disk image here, or choose one.');
  const zone = h(
    'label',
    { class: 'drop-zone', id: 'drop-zone', for: 'upload-file' },
    h('strong', null, 'Drop a disk image here'),
    h('span', { class: 'muted small' }, 'or click to choose a file; add its .manifest.json to have it checked'),
    input,
  );
  const name = h('input', { type: 'text', id: 'upload-name', maxlength: 100, required: true, placeholder: 'model name' });
  const start = h('button', { type: 'submit', class: 'btn btn-primary', id: 'btn-upload', disabled: true }, 'Upload');
  const cancel = h('button', { type: 'button', class: 'btn', id: 'btn-upload-cancel', hidden: true }, 'Cancel');
  const bar = h('progress', { id: 'upload-bar', max: 100, value: 0, hidden: true });
  const text = h('p', { id: 'upload-text', class: 'muted' });
  const form = h(
    'form',
    { id: 'upload-form', class: 'stack' },
    zone,
    chosen,
    h('label', { for: 'upload-name' }, 'Name'),
    name,
    h('div', { class: 'actions' }, start, cancel),
    bar,
    text,
  );
  let file: File | null = null;
  let manifest: ExpectedManifest | null = null;
  let upload: Upload<ModelRecord> | null = null;

  /** The image, and optionally its manifest (IMAGE.manifest.json) chosen or dropped with it. */
  const choose = async (files: FileList | null | undefined): Promise<void> => {
    const all = [...(files ?? [])];
    const f = all.find((x) => !x.name.endsWith('.manifest.json'));
    const m = all.find((x) => x.name.endsWith('.manifest.json'));
    if (!f || upload) return;
    manifest = null;
    if (m) {
      try {
        manifest = await readManifest(m, f);
      } catch (err) {
        notify(`Not used: ${errorText(err)}`, 'error');
        return;
      }
    }
    file = f;
    setText(chosen, `${f.name} (${fmtBytes(f.size)})${manifest ? `, checked against ${m?.name ?? 'its manifest'}` : ''}`);
    chosen.classList.remove('muted');
    if (!name.value || name.dataset.auto === 'true') {
      name.value = nameOfFile(f.name);
      name.dataset.auto = 'true';
    }
    start.disabled = false;
  };
  name.addEventListener('input', () => (name.dataset.auto = 'false'));
  input.addEventListener('change', () => void choose(input.files));
  zone.addEventListener('dragover', (ev) => {
    ev.preventDefault();
    zone.classList.add('drag-over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('drag-over'));
  zone.addEventListener('drop', (ev) => {
    ev.preventDefault();
    zone.classList.remove('drag-over');
    void choose(ev.dataTransfer?.files);
  });

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = file;
    const n = name.value.trim();
    if (!f || !n || upload) return;
    const startedAt = performance.now();
    const q = new URLSearchParams({ name: n, fileName: f.name });
    if (manifest) {
      q.set('manifestId', manifest.id);
      q.set('regionSize', String(manifest.regionSize));
      q.set('hash', manifest.hash);
    }
    start.disabled = true;
    cancel.hidden = false;
    bar.hidden = false;
    bar.value = 0;
    form.dataset.state = 'uploading';
    let listedAt = 0;
    upload = uploadFile<ModelRecord>(`/api/models/upload?${q.toString()}`, f, (sent, total) => {
      bar.value = pct(sent, total);
      // the daemon lists the upload as an import job: the list follows it while it runs
      if (performance.now() - listedAt > LIST_EVERY_MS) {
        listedAt = performance.now();
        changed();
      }
      const secs = (performance.now() - startedAt) / 1000;
      setText(
        text,
        sent < total
          ? `Uploading: ${fmtBytes(sent)} of ${fmtBytes(total)}${secs > 1 ? `, ${fmtRate(sent / secs)}` : ''}`
          : 'Uploaded; the appliance is writing and checking the last of it…',
      );
    });
    upload.done
      .then((m) => {
        form.dataset.state = 'done';
        setText(text, `Uploaded “${m.name}” (${fmtBytes(m.size)}).`);
        notify(`Model ${m.name} added.`);
        file = null;
        manifest = null;
        form.reset();
        setText(chosen, 'Drop a disk image here, or choose one.');
        chosen.classList.add('muted');
      })
      .catch((err: unknown) => {
        form.dataset.state = 'failed';
        setText(text, `Upload failed: ${errorText(err)}`);
        notify(`Upload failed: ${errorText(err)}`, 'error');
        start.disabled = file === null;
      })
      .finally(() => {
        upload = null;
        cancel.hidden = true;
        bar.hidden = form.dataset.state !== 'done';
        changed();
      });
  });
  cancel.addEventListener('click', () => upload?.abort());

  return h('section', { class: 'card' }, h('h2', null, 'Upload an image'), form);
}

/** The URL import card. */
export function importCard(changed: () => void): HTMLElement {
  const url = h('input', { type: 'text', id: 'import-url', required: true, placeholder: 'https://server/images/lab.img', inputmode: 'url' });
  const name = h('input', { type: 'text', id: 'import-name', maxlength: 100, required: true, placeholder: 'model name' });
  const lazy = h('input', { type: 'checkbox', id: 'import-lazy' });
  const form = h(
    'form',
    { id: 'import-form', class: 'stack' },
    h('label', { for: 'import-url' }, 'URL (http or https), or a path on the appliance'),
    url,
    h('label', { for: 'import-name' }, 'Name'),
    name,
    h(
      'label',
      { class: 'check', for: 'import-lazy' },
      lazy,
      h('span', null, 'Lazy: usable at once, fetched region by region as the host reads (needs IMAGE.manifest.json beside the image)'),
    ),
    h('button', { type: 'submit', class: 'btn btn-primary', id: 'btn-import' }, 'Import'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    postJson('/api/models/import', { source: url.value.trim(), name: name.value.trim(), ...(lazy.checked ? { lazy: true } : {}) } satisfies ModelImportRequest)
      .then(() => {
        notify(`Importing ${name.value.trim()}…`);
        form.reset();
      })
      .catch((err: unknown) => notify(`Not imported: ${errorText(err)}`, 'error'))
      .finally(changed);
  });
  return h('section', { class: 'card' }, h('h2', null, 'Import from a URL'), form);
}

export interface CaptureView {
  element: HTMLElement;
  /** Shows the form only while thawed. */
  show(status: ApplianceStatus | null): void;
}

/** The capture card. */
export function captureCard(changed: () => void): CaptureView {
  const name = h('input', { type: 'text', id: 'capture-name', maxlength: 100, required: true, placeholder: 'e.g. lab-2026-12' });
  const activate = h('input', { type: 'checkbox', id: 'capture-activate' });
  const btn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'btn-capture' }, 'Capture');
  const hint = h(
    'p',
    { id: 'capture-hint', class: 'muted' },
    'Capture is offered while the appliance is thawed (Dashboard → Thaw): boot the host, install updates, then capture the result as a new model.',
  );
  const form = h(
    'form',
    { id: 'capture-form', class: 'stack', hidden: true },
    h('p', { class: 'muted small' }, 'A new model from what the host sees now; its parent is the active model.'),
    h('label', { for: 'capture-name' }, 'Name'),
    name,
    h('label', { class: 'check', for: 'capture-activate' }, activate, h('span', null, 'Activate it: the current disk becomes the baseline, nothing is restored')),
    btn,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    btn.disabled = true;
    // Answered at once; the capture runs as an import job in the list.
    postJson<ModelImportJob>('/api/models/capture', { name: name.value.trim(), ...(activate.checked ? { activate: true } : {}) } satisfies ModelCaptureRequest)
      .then((job) => {
        notify(`Capturing ${job.name}${activate.checked ? '; it becomes the active model when done' : ''}…`);
        form.reset();
      })
      .catch((err: unknown) => notify(`Not captured: ${errorText(err)}`, 'error'))
      .finally(() => {
        btn.disabled = false;
        changed();
      });
  });
  const element = h('section', { class: 'card', id: 'capture-card' }, h('h2', null, 'Capture'), hint, form);
  return {
    element,
    show(s) {
      const thawed = s?.mode === 'thawed';
      form.hidden = !thawed;
      hint.hidden = thawed;
    },
  };
}
