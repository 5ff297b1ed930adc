/**
 * The Models page in a real Chromium against the real daemon (`snapback serve`): upload an image
 * by drag and drop (desktop) or the file chooser with its manifest (phone) and watch its progress, see it listed
 * with the manifest hashing the same bytes gives, rename it, activate it (the confirmation says
 * when the switch takes effect: at the next session end, or now; until then it is listed as
 * pending, the dashboard says so, and the activation can be cancelled), capture what the host wrote
 * while thawed (offered only then), import from a path on the appliance, remove a model (never
 * the active one), and every action in the audit log.
 * Screenshots go to docs/screenshots (daemon-models-*).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { DEFAULT_MANIFEST_HASH, createManifest } from '../../appliance/storage/manifest.js';
import { setFirstPassword, useChromium, usePage, VIEWPORT_NAMES, shot, waitText } from '../helpers/browser.js';
import { exited, initState, snapback, snapbackOk, startServe, webUiUrl } from '../helpers/cli.js';
import { PASSWORD, controlRequest } from '../helpers/http-harness.js';
import { nbdsh } from '../helpers/nbd-clients.js';
import { patternBytes } from '../helpers/prng.js';

const MIB = 1 << 20;
/** The same size as the disk: a model to switch to must be. */
const UPLOAD = 8 * MIB;

/** The rows of the models table as "name[*]" (* = active). */
async function modelRows(page: Page): Promise<string[]> {
  return page.evaluate(() =>
    Array.from((globalThis as any).document.querySelectorAll('#models-body tr[data-model]'), (r: any) => `${r.dataset.name}${r.dataset.active === 'true' ? '*' : ''}`),
  );
}

async function waitRows(page: Page, want: string[]): Promise<void> {
  await page.waitForFunction(
    (want) => Array.from((globalThis as any).document.querySelectorAll('#models-body tr[data-model]'), (r: any) => `${r.dataset.name}${r.dataset.active === 'true' ? '*' : ''}`).join(',') === want,
    want.join(','),
  );
}

describe('the Models page in Chromium against the real daemon', function () {
  this.timeout(300_000);
  const chromium = useChromium();

  for (const vp of VIEWPORT_NAMES) {
    describe(`at ${vp} width`, () => {
      let dir: string;
      let state: string;
      let daemon: ChildProcess;
      let url: string;
      const tab = usePage(chromium, vp);
      let page: Page;
      const image = patternBytes(UPLOAD, 21);
      const cli = (...args: string[]): string => snapbackOk(state, args);

      before(async () => {
        dir = await mkdtemp(join(tmpdir(), 'snapback-models-ui-'));
        state = initState(dir, patternBytes(8 * MIB, 20), { name: 'lab-image', regionSize: '64K' }).state;
        await writeFile(join(dir, 'lab-v2.img'), image);
        daemon = await startServe(state);
        url = await webUiUrl(daemon);
        page = tab.page;
      });
      after(async () => {
        if (daemon && daemon.exitCode === null) {
          daemon.kill('SIGTERM');
          assert.equal((await exited(daemon)).code, 0);
        }
        await rm(dir, { recursive: true, force: true });
      });

      it('lists the library: the active model cannot be removed; capture is offered only while thawed', async () => {
        await page.goto(url + '/');
        await setFirstPassword(page, PASSWORD);
        await page.click('#nav a[data-page=model]');
        await waitRows(page, ['lab-image*']);
        assert.equal(await page.isDisabled('#models-body tr[data-name=lab-image] [data-action=remove]'), true);
        assert.equal(await page.isDisabled('#models-body tr[data-name=lab-image] [data-action=activate]'), true);
        assert.equal(await page.isVisible('#capture-form'), false);
        assert.equal(await page.isVisible('#capture-hint'), true);
        cli('mode', 'thawed');
        await page.waitForSelector('#capture-form', { state: 'visible' });
        assert.equal(await page.isVisible('#capture-hint'), false);
        await shot(page, vp, 'daemon-models-thawed');
        cli('mode', 'frozen');
        await page.waitForSelector('#capture-form', { state: 'hidden' });
      });

      it(`uploads an image by ${vp === 'desktop' ? 'drag and drop' : 'the file chooser'} with progress; it is listed with the manifest of its bytes`, async () => {
        // A slow link (Chromium's own throttling), so that the upload's progress can be seen.
        const cdp = await page.context().newCDPSession(page);
        await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 2 * MIB });
        if (vp === 'desktop') {
          const dt = await page.evaluateHandle((b64: string) => {
            const g = globalThis as any;
            const text: string = g.atob(b64);
            const bytes = new Uint8Array(text.length);
            for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
            const t = new g.DataTransfer();
            t.items.add(new g.File([bytes], 'lab-v2.img', { type: 'application/octet-stream' }));
            return t;
          }, image.toString('base64'));
          await page.dispatchEvent('#drop-zone', 'dragover', { dataTransfer: dt });
          await page.dispatchEvent('#drop-zone', 'drop', { dataTransfer: dt });
        } else {
          // The image with its manifest (made by `snapback model manifest`): the upload is checked
          // against it. First with the manifest of other bytes of the same size: refused.
          await writeFile(join(dir, 'other.img'), patternBytes(UPLOAD, 99));
          for (const img of ['lab-v2.img', 'other.img']) {
            const r = snapback(['model', 'manifest', join(dir, img)]);
            assert.equal(r.code, 0, r.stderr);
          }
          await page.setInputFiles('#upload-file', [join(dir, 'lab-v2.img'), join(dir, 'other.img.manifest.json')]);
          await waitText(page, '#upload-chosen', 'lab-v2.img (8.00 MiB), checked against other.img.manifest.json');
          await page.click('#btn-upload');
          await waitText(page, '#upload-text', /^Upload failed: the upload does not match its manifest/);
          // (the refused request is logged by Chromium as a failed load: expected here)
          assert.deepEqual(tab.problems.splice(0).filter((p) => !/status of 400/.test(p)), []);
          await waitRows(page, ['lab-image*']);
          await page.setInputFiles('#upload-file', [join(dir, 'lab-v2.img'), join(dir, 'lab-v2.img.manifest.json')]);
        }
        await waitText(page, '#upload-chosen', vp === 'desktop' ? 'lab-v2.img (8.00 MiB)' : 'lab-v2.img (8.00 MiB), checked against lab-v2.img.manifest.json');
        assert.equal(await page.inputValue('#upload-name'), 'lab-v2');
        await page.click('#btn-upload');
        await waitText(page, '#upload-text', /^Uploading: [\d.]+ (KiB|MiB) of 8\.00 MiB/);
        // The daemon lists it as an import while it arrives.
        await page.waitForSelector('#imports-body tr[data-state=running]');
        await shot(page, vp, 'daemon-models-uploading');
        await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
        await waitText(page, '#upload-text', 'Uploaded “lab-v2” (8.00 MiB).');
        await waitRows(page, ['lab-image*', 'lab-v2']);
        const want = await createManifest(join(dir, 'lab-v2.img'), { hash: DEFAULT_MANIFEST_HASH });
        assert.equal(await page.getAttribute('#models-body tr[data-name=lab-v2] td[data-label=Id]', 'title'), want.id);
        await waitText(page, '#models-body tr[data-name=lab-v2] td[data-label=Source]', 'upload of lab-v2.img');
        await page.waitForSelector('#imports-body tr[data-state=running]', { state: 'detached' });
        if (vp === 'phone') await waitText(page, '#imports-body tr[data-state=failed] td[data-label=Progress]', /^Failed: the upload does not match its manifest/);
      });

      it('renames a model; activates it (confirmed: it takes effect at the next session end), and it is active after that end', async () => {
        await page.click('#models-body tr[data-name=lab-v2] [data-action=rename]');
        await page.fill('dialog.confirm #ask-text', 'lab-2026-12');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitRows(page, ['lab-image*', 'lab-2026-12']);

        await page.click('#models-body tr[data-name=lab-2026-12] [data-action=activate]');
        await waitText(page, '#activate-now-message', /^It takes effect at the next session end/);
        await shot(page, vp, 'daemon-models-confirm-activate', false);
        await page.check('#activate-now');
        await waitText(page, '#activate-now-message', /^It takes effect now/);
        await page.uncheck('#activate-now');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '.notice-ok:last-child', /^lab-2026-12 becomes active at the next session end \(\d+ regions to restore then\)\.$/);
        await waitRows(page, ['lab-image*', 'lab-2026-12']);
        // Until then it is listed as pending (not removable, its activation can be cancelled), and the dashboard says so.
        const pendingRow = '#models-body tr[data-name=lab-2026-12]';
        await waitText(page, `${pendingRow} .badge-pending`, 'Active after the next session end');
        assert.equal(await page.isDisabled(`${pendingRow} [data-action=remove]`), true);
        await page.click('#nav a[data-page=dashboard]');
        await waitText(page, '#pending-model-banner', /^Model lab-2026-12 will be active after the next session end/);
        await page.click('#nav a[data-page=model]');
        await page.click(`${pendingRow} [data-action=cancel-activation]`);
        await waitText(page, '.notice-ok:last-child', 'The activation of lab-2026-12 is cancelled; the active model stays.');
        await page.waitForSelector(`${pendingRow} .badge-pending`, { state: 'detached' });
        assert.equal((await controlRequest(join(state, 'control.sock'), 'GET', '/api/status')).json.model.pendingActivation, null);
        await page.click(`${pendingRow} [data-action=activate]`);
        await page.click('dialog.confirm [data-action=confirm]');
        await page.waitForSelector(`${pendingRow} .badge-pending`);
        // The session ends (the host power-cycles): the switch is made.
        const end = await controlRequest(join(state, 'control.sock'), 'POST', '/api/session/end', {});
        assert.ok(end.status < 300, end.text);
        await waitRows(page, ['lab-image', 'lab-2026-12*']);
        assert.equal(await page.isDisabled('#models-body tr[data-name=lab-2026-12] [data-action=remove]'), true);
        const id = await page.getAttribute('#models-body tr[data-name=lab-2026-12] td[data-label=Id]', 'title');
        await waitText(page, '#model-id', id!);
      });

      it('captures what the host wrote while thawed, as a child of the active model', async () => {
        cli('mode', 'thawed');
        await page.waitForSelector('#capture-form', { state: 'visible' });
        await nbdsh(
          [
            `h.connect_uri(${JSON.stringify(`nbd+unix:///snapback?socket=${join(state, 'nbd.sock')}`)})`,
            `h.pwrite(b'\\x5a' * ${4 * MIB}, ${2 * MIB})`,
            'h.flush()',
            'h.shutdown()',
          ].join('\n'),
        );
        await page.fill('#capture-name', 'lab-2026-12-updates');
        await page.click('#btn-capture');
        await waitRows(page, ['lab-image', 'lab-2026-12*', 'lab-2026-12-updates']);
        await waitText(page, '#models-body tr[data-name=lab-2026-12-updates] td[data-label=Parent]', 'lab-2026-12');
        await waitText(page, '#models-body tr[data-name=lab-2026-12-updates] td[data-label=Source]', /^captured in session \d+$/);
        cli('mode', 'frozen');
        await page.waitForSelector('#capture-form', { state: 'hidden' });
      });

      it('activates a model now (confirmed): it is in force at once', async () => {
        await page.click('#models-body tr[data-name=lab-image] [data-action=activate]');
        await page.check('#activate-now');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '.notice-ok:last-child', /^lab-image is active now; \d+ regions are being restored\.$/);
        await waitRows(page, ['lab-image*', 'lab-2026-12', 'lab-2026-12-updates']);
      });

      it('imports from a path on the appliance through the import form', async () => {
        const path = join(dir, 'from-path.img');
        await writeFile(path, patternBytes(3 * MIB, 22));
        await page.fill('#import-url', path);
        await page.fill('#import-name', 'from-path');
        await page.click('#btn-import');
        await waitRows(page, ['lab-image*', 'lab-2026-12', 'lab-2026-12-updates', 'from-path']);
        await waitText(page, '#models-body tr[data-name=from-path] td[data-label=Source]', `file ${path}`);
        await shot(page, vp, 'daemon-models');
      });

      it('removes a model after confirmation; the daemon’s library agrees', async () => {
        await page.click('#models-body tr[data-name=from-path] [data-action=remove]');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitRows(page, ['lab-image*', 'lab-2026-12', 'lab-2026-12-updates']);
        const listed = (await controlRequest(join(state, 'control.sock'), 'GET', '/api/models')).json.models as { name: string; active: boolean }[];
        assert.deepEqual(listed.map((m) => `${m.name}${m.active ? '*' : ''}`).sort(), ['lab-2026-12', 'lab-2026-12-updates', 'lab-image*']);
      });

      it('the Events page shows every model action with who did it', async () => {
        await page.click('#nav a[data-page=events]');
        await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#audit-body tr').length >= 10);
        const rows: string[] = await page.evaluate(() =>
          Array.from((globalThis as any).document.querySelectorAll('#audit-body tr'), (r: any) => `${r.children[1].textContent} ${r.children[2].textContent}`),
        );
        assert.deepEqual(
          rows.filter((r) => / model\./.test(r)).slice(0, 9),
          [
            'admin model.remove',
            'admin model.import',
            'admin model.activate',
            'admin model.capture',
            'admin model.activate',
            'admin model.activate-cancel',
            'admin model.activate',
            'admin model.rename',
            'admin model.upload',
          ],
        );
        await shot(page, vp, 'daemon-models-events');
      });
    });
  }
});
