/**
 * The web UI in a real Chromium, against the HTTP component and a fake appliance: first-run
 * password setup, the dashboard updating live, ending a session and watching the restore,
 * thaw and freeze (each confirmed), the other pages, the audit log showing each action,
 * logout and login; at desktop and phone widths. Screenshots go to docs/screenshots.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { modelLibraryRoutes } from '../../appliance/http/routes/model-library-routes.js';
import type { ModelService } from '../../appliance/session/model-service.js';
import { fakeModelLibrary } from '../helpers/fake-model-library.js';
import { Client, PASSWORD, startHarness, type Harness } from '../helpers/http-harness.js';
import { VIEWPORTS, useChromium, usePage, VIEWPORT_NAMES, shot, waitData, waitText } from '../helpers/browser.js';

// The test compiles without the DOM lib, so page-side functions reach the DOM through an
// untyped `globalThis.document`. (They must be functions: the app's CSP forbids eval, which
// string predicates would need.)

async function text(page: Page, sel: string): Promise<string> {
  return ((await page.textContent(sel)) ?? '').trim();
}

async function waitCount(page: Page, sel: string, atLeast: number): Promise<void> {
  await page.waitForFunction(({ sel, n }) => (globalThis as any).document.querySelectorAll(sel).length >= n, { sel, n: atLeast });
}

async function cells(page: Page, rowSel: string): Promise<string[][]> {
  return page.evaluate(
    (rowSel) => Array.from((globalThis as any).document.querySelectorAll(rowSel), (r: any) => Array.from(r.querySelectorAll('td'), (td: any) => String(td.textContent ?? ''))),
    rowSel,
  );
}

async function dataOf(page: Page, rowSel: string, key: string): Promise<string[]> {
  return page.evaluate(({ rowSel, key }) => Array.from((globalThis as any).document.querySelectorAll(rowSel), (r: any) => String(r.dataset[key] ?? '')), { rowSel, key });
}

describe('web UI in Chromium (fake appliance)', function () {
  const chromium = useChromium();

  for (const vp of VIEWPORT_NAMES) {
    describe(`at ${vp} width (${VIEWPORTS[vp].width}x${VIEWPORTS[vp].height})`, () => {
      let hx: Harness;
      let libraryDir: string;
      let models: ModelService;
      // No page errors, console errors (CSP violations) or requests off the appliance.
      const tab = usePage(chromium, vp);
      let page: Page;

      before(async () => {
        libraryDir = await mkdtemp(join(tmpdir(), 'snapback-webui-library-'));
        models = await fakeModelLibrary(libraryDir);
        hx = await startHarness({ fake: { regions: 8192 }, routes: [(api, store) => modelLibraryRoutes(api, { models, store })] });
        page = tab.page;
      });
      after(async () => {
        await hx?.close();
        await models?.close();
        await rm(libraryDir, { recursive: true, force: true });
      });

      it('first run: asks for a new password (there is no default), then shows the dashboard', async () => {
        await page.goto(hx.url + '/');
        await page.waitForURL(/\/login$/);
        await page.waitForSelector('#setup-form');
        assert.match(await text(page, 'h1'), /Welcome/);
        // Mismatched passwords are caught before anything is sent.
        await page.fill('#new-password', PASSWORD);
        await page.fill('#confirm-password', PASSWORD + 'x');
        await page.click('#setup-submit');
        await waitText(page, '#setup-error', 'The two passwords differ.');
        assert.equal(hx.store.hasAdminPassword(), false);
        await page.fill('#confirm-password', PASSWORD);
        await shot(page, vp, 'first-run-setup');
        await page.click('#setup-submit');
        await page.waitForURL(/\/$/);
        await page.waitForSelector('#session-number');
        await waitText(page, '#session-number', '1');
        assert.equal(hx.store.hasAdminPassword(), true);
      });

      it('the dashboard updates live as the host writes', async () => {
        await page.waitForSelector('#live.live-on');
        await waitText(page, '#regions-written', '0');
        await waitText(page, '#host-state', 'NBD client');
        await waitText(page, '#mode', 'Frozen');
        // The host writes: a file system's metadata near the start, a file in the middle.
        const written = [...Array.from({ length: 40 }, (_, i) => i), ...Array.from({ length: 300 }, (_, i) => 3000 + i), 8191];
        hx.service.write(written);
        await waitText(page, '#regions-written', String(written.length));
        await waitData(page, '#region-map', 'written', String(written.length));
        await waitText(page, '#bytes-changed', '21.3 MiB');
        assert.equal(await text(page, '#regions-clean'), (8192 - written.length).toLocaleString('en-US'));
        // More writes arrive while we watch.
        hx.service.write(Array.from({ length: 60 }, (_, i) => 6000 + i * 2));
        await waitText(page, '#regions-written', String(written.length + 60));
        await waitData(page, '#region-map', 'written', String(written.length + 60));
        await shot(page, vp, 'dashboard');
      });

      it('ending a session asks first; then the restore progress is shown until it is done', async () => {
        await page.click('#btn-end-session');
        await page.waitForSelector('dialog.confirm[open]');
        assert.match(await text(page, 'dialog.confirm h2'), /End the session and restore now\?/);
        await shot(page, vp, 'confirm-end-session', false);
        // Cancel changes nothing.
        await page.click('dialog.confirm [data-action=cancel]');
        await page.waitForSelector('dialog.confirm', { state: 'detached' });
        assert.equal(hx.service.sessionNumber, 1);
        assert.deepEqual(hx.service.calls, []);

        await page.click('#btn-end-session');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#session-number', '2');
        await waitText(page, '#regions-written', '0');
        await waitText(page, '#regions-pending', '401');
        await waitText(page, '#hydration-text', 'Restoring: 0 of 401 regions (0.0 %)');
        await waitData(page, '#region-map', 'pending', '401');
        // The restore runs (driven by the test, step by step).
        hx.service.hydrateStep(150);
        await waitText(page, '#hydration-text', 'Restoring: 150 of 401 regions (37.4 %)');
        assert.equal(await page.getAttribute('#hydration-bar', 'value'), '37.4');
        await waitData(page, '#region-map', 'pending', '251');
        await shot(page, vp, 'dashboard-restoring');
        hx.service.hydrateStep(1000);
        await waitText(page, '#regions-pending', '0');
        await waitText(page, '#hydration-text', /^Nothing to restore/);
        assert.deepEqual(hx.service.calls, ['endSession:api']);
      });

      it('thaw and freeze, each after a confirmation', async () => {
        await page.click('#btn-toggle-mode');
        await page.waitForSelector('dialog.confirm[open]');
        assert.match(await text(page, 'dialog.confirm h2'), /Thaw the disk\?/);
        await shot(page, vp, 'confirm-thaw', false);
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#mode', 'Thawed');
        await page.waitForSelector('#thawed-banner:not([hidden])');
        assert.equal(hx.service.mode, 'thawed');
        await shot(page, vp, 'dashboard-thawed');

        await page.click('#btn-toggle-mode');
        await page.waitForSelector('dialog.confirm[open]');
        assert.match(await text(page, 'dialog.confirm h2'), /Freeze the disk\?/);
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#mode', 'Frozen');
        await page.waitForSelector('#thawed-banner[hidden]', { state: 'attached' });
        assert.equal(hx.service.mode, 'frozen');
      });

      it('the Events page shows each action in the audit log, and new ones arrive live', async () => {
        await page.click('#nav a[data-page=events]');
        await page.waitForSelector('#audit-body tr');
        await waitCount(page, '#audit-body tr', 4);
        assert.deepEqual((await dataOf(page, '#audit-body tr', 'action')).slice(0, 4), ['mode.set', 'mode.set', 'session.end', 'auth.password-set']);
        const rows = await cells(page, '#audit-body tr');
        assert.equal(rows[0]?.[1], 'admin');
        assert.match(rows[0]?.[3] ?? '', /mode.*frozen/);
        // A change made elsewhere (the CLI on the appliance) shows up without a reload.
        await hx.store.audit({ actor: 'cli', action: 'restore-mode.set', details: { request: { restoreMode: 'eager' } } });
        await waitData(page, '#audit-body tr', 'action', 'restore-mode.set');
        await shot(page, vp, 'events');
      });

      it('the Sessions page lists the history and exports CSV', async () => {
        await page.click('#nav a[data-page=sessions]');
        await page.waitForSelector('#sessions-body tr[data-session="1"]');
        const first = (await cells(page, '#sessions-body tr[data-session="1"]'))[0] ?? [];
        assert.equal(first[4], 'web UI / API / CLI');
        assert.equal(first[6], '401');
        assert.equal(first[8], '1.5s');
        assert.equal(await text(page, '#sessions-body tr[data-session="2"] td:nth-child(3)'), 'running');
        await shot(page, vp, 'sessions');
        const [download] = await Promise.all([page.waitForEvent('download'), page.click('#csv-export')]);
        assert.equal(download.suggestedFilename(), 'snapback-sessions.csv');
        const path = await download.path();
        const csv = await readFile(path, 'utf8');
        assert.match(csv, /^number,startedAt,endedAt,endReason,mode,regionsWritten/);
        assert.match(csv, /\r\n1,[^,]+,[^,]+,api,frozen,401,/);
      });

      it('the Model page shows the model and verifies it with progress', async () => {
        await page.click('#nav a[data-page=model]');
        await waitText(page, '#model-name', 'lab-image-2024');
        await waitText(page, '#model-region-size', '64.0 KiB');
        await page.click('#btn-verify');
        await page.waitForSelector('#verify-bar:not([hidden])');
        await waitText(page, '#verify-text', /^Passed: all 8,192 regions match/);
        await shot(page, vp, 'model');
        assert.ok(hx.store.listAudit().some((e) => e.action === 'model.verify'));
        // The library: the active model, a version captured from it, a URL model still arriving.
        await page.waitForSelector('#models-body tr[data-name=win11-lab]');
        assert.deepEqual(await dataOf(page, '#models-body tr[data-model]', 'name'), ['lab-image-2024', 'lab-image-2025-01', 'win11-lab']);
        assert.deepEqual(await dataOf(page, '#models-body tr[data-model]', 'active'), ['true', 'false', 'false']);
        await waitText(page, '#models-body tr[data-name=lab-image-2025-01] td[data-label=Parent]', 'lab-image-2024');
        await waitText(page, '#models-body tr[data-name=lab-image-2025-01] td[data-label=Source]', 'captured in session 12');
        await waitText(page, '#models-body tr[data-name=win11-lab] td[data-label=State]', 'Downloading: 23 of 64 regions (35 %), 12.5 MiB/s');
        await shot(page, vp, 'models');
      });

      it('the Settings page changes the rate, and creates and revokes an API token', async () => {
        await page.click('#nav a[data-page=settings]');
        await page.waitForSelector('#policy-form[data-loaded]');
        await page.waitForSelector('#tokens-body[data-loaded]');
        assert.equal(await page.locator('#policy-usb').count(), 0, 'no session-end control that nothing applies');
        await page.fill('#hydration-rate-input', '16');
        await page.click('#policy-save');
        await waitText(page, '.notice-ok:last-child', 'Settings saved.');
        assert.equal(hx.store.settings().hydrationRateBytesPerSecond, 16 * 1024 * 1024);
        assert.equal(hx.service.hydrationRate, 16 * 1024 * 1024);

        await page.fill('#token-name', 'monitoring');
        await page.click('#token-create');
        await page.waitForSelector('#new-token-value');
        const token = await text(page, '#new-token-value');
        assert.match(token, /^sbk_/);
        await page.waitForSelector('#tokens-body tr[data-token-row]');
        const api = new Client(hx.url);
        assert.equal((await api.req('GET', '/api/status', { bearer: token })).status, 200);
        await shot(page, vp, 'settings');

        await page.click('#tokens-body button[data-token]');
        await page.waitForSelector('dialog.confirm[open]');
        await page.click('dialog.confirm [data-action=confirm]');
        await page.waitForSelector('#tokens-body tr[data-token-row]', { state: 'detached' });
        assert.equal((await api.req('GET', '/api/status', { bearer: token })).status, 401);

        // Restore mode through the Settings form.
        await page.check('#restore-eager');
        await page.click('#mode-save');
        await waitText(page, '.notice-ok:last-child', 'Restore mode: eager.');
        assert.equal(hx.service.restoreMode, 'eager');
        const actions = hx.store.listAudit({ limit: 10 }).map((e) => e.action);
        for (const a of ['settings.update', 'token.create', 'token.revoke', 'restore-mode.set']) assert.ok(actions.includes(a), a);
      });

      it('the Settings page adds a maintenance window, thaws for N boots and removes the window', async () => {
        await page.click('#nav a[data-page=settings]');
        await page.waitForSelector('#maintenance-card [data-loaded]');
        await page.fill('#mw-name', 'weekly');
        await page.fill('#mw-schedule', '0 3 * * 6');
        await page.fill('#mw-zone', 'Europe/Berlin');
        await page.fill('#mw-duration', '45');
        await page.selectOption('#mw-after', 'capture');
        await page.click('#maintenance-add');
        await waitText(page, '.notice-ok:last-child', 'Maintenance window weekly added.');
        await page.waitForSelector('#maintenance-body tr[data-window-row=weekly]');
        const [row] = await cells(page, '#maintenance-body tr[data-window-row]');
        assert.match(row?.join(' | ') ?? '', /weekly \| 0 3 \* \* 6 \(Europe\/Berlin\), 45 min \| capture “\{window\}-\{date\}-\{time\}” \| \S/);
        assert.deepEqual(hx.store.settings().maintenance.windows.map((w) => [w.name, w.timeZone, w.durationMinutes, w.after]), [['weekly', 'Europe/Berlin', 45, 'capture']]);
        // a schedule that does not parse is refused with its reason (here through the API: the page shows the same message)
        const api = new Client(hx.url);
        await api.login(PASSWORD);
        const bad = await api.req('POST', '/api/maintenance/windows', { body: { name: 'bad', schedule: '0 25 * * *', durationMinutes: 5 } });
        assert.equal(bad.status, 400);
        assert.match(String((bad.json as { message?: string }).message), /schedule "0 25 \* \* \*" does not parse/);

        await page.fill('#thaw-boots', '2');
        await page.click('#thaw-boots-save');
        await waitText(page, '#maintenance-thaw-state', 'Thawed for the next 2 boot(s).');
        assert.equal(hx.service.status().mode, 'thawed');
        await shot(page, vp, 'settings-maintenance');

        await page.click('#maintenance-body button[data-window=weekly]');
        await page.waitForSelector('dialog.confirm[open]');
        await page.click('dialog.confirm [data-action=confirm]');
        await page.waitForSelector('#maintenance-body tr[data-window-row]', { state: 'detached' });
        assert.deepEqual(hx.store.settings().maintenance.windows, []);
        const actions = hx.store.listAudit({ limit: 20 }).map((e) => e.action);
        for (const a of ['maintenance.add', 'maintenance.thaw-boots', 'maintenance.remove']) assert.ok(actions.includes(a), a);
        await hx.service.setMode('frozen');
      });

      it('logs out, refuses a wrong password, logs in again', async () => {
        await page.click('#logout');
        await page.waitForURL(/\/login$/);
        await page.waitForSelector('#login-form');
        // The app is gone without the login.
        const res = await page.request.get(hx.url + '/api/status');
        assert.equal(res.status(), 401);
        await page.fill('#password', 'not the password');
        await page.click('#login-submit');
        await waitText(page, '#login-error', 'Wrong password.');
        await page.fill('#password', '');
        await shot(page, vp, 'login');
        await page.fill('#password', PASSWORD);
        await page.click('#login-submit');
        await page.waitForURL(/\/$/);
        await waitText(page, '#session-number', '2');
        const actions = hx.store.listAudit({ limit: 5 }).map((e) => e.action);
        assert.deepEqual(actions.slice(0, 3), ['auth.login', 'auth.login-failed', 'auth.logout']);
      });
    });
  }
});
