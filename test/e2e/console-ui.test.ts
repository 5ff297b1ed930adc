/**
 * The console's web UI in a real Chromium against the real console (in-process), a real
 * mosquitto whose password and ACL files the console keeps, and real appliance daemons enrolled
 * with codes: first-run password, the fleet table live (a daemon killed with kill -9 turns
 * offline in its row), an action from the table reaching the daemon it names, a group action
 * reaching every member, a catalogue upload. A second test fills the table with 1,000 simulated
 * appliances (light MQTT clients speaking the fleet protocol) and checks it stays paged and
 * filterable. Screenshots go to docs/screenshots (console-*).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import type { ApplianceRecord } from '../../appliance/api/console.js';
import type { ApplianceStatus } from '../../appliance/api/status.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import { ConsoleServer } from '../../console/server/console-server.js';
import { useChromium, newPage, shot, waitData } from '../helpers/browser.js';
import { exited, snapback, startServe } from '../helpers/cli.js';
import { PASSWORD } from '../helpers/http-harness.js';
import { consoleApi, startConsoleRig } from '../helpers/console-rig.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { ProtocolAppliance } from '../helpers/protocol-appliance.js';
import { Prng } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const SIZE = 4 << 20;

/** The rows' text of the fleet table, by appliance name. */
async function rowText(page: Page, name: string, cell: string): Promise<string> {
  return (await page.textContent(`#fleet-rows tr[data-name="${name}"] td.${cell}`)) ?? '';
}

async function confirm(page: Page): Promise<void> {
  await page.click('dialog.confirm [data-action=confirm]');
}

describe('the console web UI in Chromium (real console, mosquitto and appliance daemons)', function () {
  this.timeout(300_000);
  const chromium = useChromium();
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-console-ui-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('sets the first password, shows the fleet live, sends actions to one appliance and to a group, uploads a model and assigns it', async () => {
    const model = join(dir, 'model.img');
    writeFileSync(model, new Prng(7).bytes(SIZE));
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
    const { broker, server, token, base: url } = await startConsoleRig(dir);
    const base = url.replace(/\/$/, '');
    const children: ChildProcess[] = [];
    const p = await newPage(chromium.browser, 'desktop');
    const page = p.page;
    try {
      const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
        const res = await consoleApi<T>({ base: url, token }, method, path, body);
        assert.ok(res.status >= 200 && res.status < 300, `${method} ${path}: ${res.status}`);
        return res.body;
      };
      const status = async (state: string): Promise<ApplianceStatus> => (await callDaemon(join(state, 'control.sock'), 'GET', '/api/status')) as ApplianceStatus;
      const appliance = async (name: string): Promise<{ state: string; child: ChildProcess }> => {
        const state = join(dir, name);
        const r = snapback(['init', '--state-dir', state, '--model', model, '--disk', `${state}.disk`]);
        assert.equal(r.code, 0, r.stderr);
        const code = await api<{ code: string }>('POST', '/api/enroll-codes', { name });
        const child = await startServe(state, ['--management', base + '/', '--appliance-name', name, '--enrollment-code', code.code]);
        children.push(child);
        return { state, child };
      };

      // First run: the console has no password; from this machine no setup code is asked.
      await page.goto(base + '/');
      await page.waitForSelector('#setup-form');
      assert.equal(await page.isVisible('#setup-code'), false);
      await page.fill('#new-password', PASSWORD);
      await page.fill('#confirm-password', PASSWORD);
      await page.click('#setup-submit');
      await waitData(page, '#page', 'loaded', 'true');
      await page.waitForSelector('#live.live-on');

      // Two daemons enroll and appear in the table without a reload.
      const pc1 = await appliance('pc-01');
      const pc2 = await appliance('pc-02');
      await page.waitForSelector('#fleet-rows tr[data-name="pc-01"][data-online="true"]', { timeout: 60_000 });
      await page.waitForSelector('#fleet-rows tr[data-name="pc-02"][data-online="true"]', { timeout: 60_000 });
      const sessionShown = (name: string, n: number): Promise<unknown> =>
        page.waitForFunction(([nm, want]) => ((globalThis as any).document.querySelector(`#fleet-rows tr[data-name="${nm}"] td.session`)?.textContent ?? '').startsWith(`#${want}`), [name, n] as const, { timeout: 60_000 });
      await sessionShown('pc-01', (await status(pc1.state)).session.number);
      assert.match(await rowText(page, 'pc-01', 'model'), /model/);

      // One appliance: thaw pc-01 from its row's checkbox; pc-02 stays frozen.
      assert.equal((await status(pc1.state)).mode, 'frozen');
      await page.check('#fleet-rows tr[data-name="pc-01"] input[type=checkbox]');
      await page.click('#act-thaw');
      await confirm(page);
      await waitFor('pc-01 thawed', async () => (await status(pc1.state)).mode === 'thawed', 60_000);
      await page.waitForSelector('#fleet-rows tr[data-name="pc-01"] .badge[data-mode="thawed"]', { timeout: 60_000 });
      assert.equal((await status(pc2.state)).mode, 'frozen', 'pc-02 got nothing');

      // A group: make "room 101" on the Groups page, move both into it from the fleet table.
      await page.click('#nav a[data-page=groups]');
      await page.fill('#group-name', 'room 101');
      await page.click('#group-create');
      await page.waitForSelector('#group-rows tr[data-group="room 101"]');
      await page.click('#nav a[data-page=fleet]');
      await waitData(page, '#page', 'loaded', 'true');
      await page.check('#fleet-rows tr[data-name="pc-01"] input[type=checkbox]');
      await page.check('#fleet-rows tr[data-name="pc-02"] input[type=checkbox]');
      await page.selectOption('#move-group', 'room 101');
      await page.click('#act-move');
      await page.waitForFunction(() => [...(globalThis as any).document.querySelectorAll('#fleet-rows td.group')].every((td: any) => td.textContent === 'room 101'));

      // A group action: filter the table by the group (no selection) and end the session of every member.
      await page.uncheck('#fleet-rows tr[data-name="pc-01"] input[type=checkbox]');
      await page.uncheck('#fleet-rows tr[data-name="pc-02"] input[type=checkbox]');
      await page.selectOption('#fleet-group', 'room 101');
      await page.waitForFunction(() => /Group “room 101”/.test((globalThis as any).document.querySelector('#fleet-selection')?.textContent ?? ''));
      const before = [(await status(pc1.state)).session.number, (await status(pc2.state)).session.number];
      await page.click('#act-end-session');
      await confirm(page);
      await waitFor('both sessions ended', async () => (await status(pc1.state)).session.number > before[0]! && (await status(pc2.state)).session.number > before[1]!, 60_000);
      await sessionShown('pc-02', (await status(pc2.state)).session.number);
      await shot(page, 'desktop', 'console-fleet');

      // The commands' results: three answered commands (thaw, two end-sessions).
      await page.click('#nav a[data-page=commands]');
      await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#command-rows tr[data-state="succeeded"]').length === 3, null, { timeout: 60_000 });
      await shot(page, 'desktop', 'console-commands');

      // The catalogue: upload an image with its progress, then it is listed with its URL.
      await page.click('#nav a[data-page=models]');
      await waitData(page, '#page', 'loaded', 'true');
      const image = join(dir, 'lab-image.img'); // not the model the daemons already hold
      writeFileSync(image, new Prng(8).bytes(SIZE));
      await page.setInputFiles('#model-file', image);
      await page.fill('#model-name', 'lab-image');
      await page.click('#model-upload');
      await page.waitForSelector('#model-rows tr td.name:text-is("lab-image")', { timeout: 60_000 });
      const listed = await api<{ name: string; url: string }[]>('GET', '/api/models');
      assert.deepEqual(listed.map((m) => m.name), ['lab-image']);
      assert.equal(await page.textContent('#model-rows td.url code'), listed[0]!.url);
      await shot(page, 'desktop', 'console-models');

      // Assign the uploaded model to pc-01 from the fleet table: the daemon takes it (lazily, from the console's URL).
      await page.click('#nav a[data-page=fleet]');
      await waitData(page, '#page', 'loaded', 'true');
      await page.check('#fleet-rows tr[data-name="pc-01"] input[type=checkbox]');
      await page.selectOption('#assign-model', { label: 'lab-image' });
      await page.click('#act-assign-model');
      await confirm(page);
      const assigned = await waitFor(
        'the assign-model command answered',
        async () => (await api<{ action: string; state: string; result: unknown; error: unknown }[]>('GET', '/api/commands?appliance=pc-01')).find((c) => c.action === 'assign-model' && (c.state === 'succeeded' || c.state === 'failed')),
        60_000,
      );
      // pc-01 pulled it into its library from the console's URL (lazily). Whether it then takes
      // effect is the appliance's answer, shown on the Commands page: an appliance that cannot yet
      // activate a model whose regions are still arriving answers so.
      const library = async (state: string): Promise<string[]> => ((await callDaemon(join(state, 'control.sock'), 'GET', '/api/models')) as { models: { name: string }[] }).models.map((m) => m.name);
      assert.ok((await library(pc1.state)).includes('lab-image'), JSON.stringify(await library(pc1.state)));
      assert.equal((await library(pc2.state)).includes('lab-image'), false, 'pc-02 got nothing');
      await page.click('#nav a[data-page=commands]');
      await page.waitForSelector(`#command-rows tr[data-appliance="pc-01"][data-state="${assigned.state}"] td.action:has-text("assign-model")`);
      if (assigned.state === 'succeeded') assert.equal((assigned.result as { model: { name: string } }).model.name, 'lab-image');

      // The audit log shows what was done from the UI.
      await page.click('#nav a[data-page=audit]');
      await page.waitForSelector('#audit-rows tr[data-action="model.upload"]');

      // A maintenance window from the fleet page: pc-01 takes it (its own scheduler answers with the next run).
      await page.click('#nav a[data-page=fleet]');
      await waitData(page, '#page', 'loaded', 'true');
      await page.check('#fleet-rows tr[data-name="pc-01"] input[type=checkbox]');
      await page.fill('#mw-name', 'nightly');
      await page.fill('#mw-schedule', '30 1 * * *');
      await page.fill('#mw-minutes', '45');
      await page.click('#act-set-maintenance');
      await confirm(page);
      const mw = await waitFor(
        'the set-maintenance command answered',
        async () => (await api<{ action: string; state: string; result: unknown; error: unknown }[]>('GET', '/api/commands?appliance=pc-01')).find((c) => c.action === 'set-maintenance' && (c.state === 'succeeded' || c.state === 'failed')),
        60_000,
      );
      assert.equal(mw.state, 'succeeded', JSON.stringify(mw.error));
      const windows = (mw.result as { windows: { window: { name: string; schedule: string; durationMinutes: number }; nextRun: string | null }[] }).windows;
      assert.deepEqual(windows.map((w) => [w.window.name, w.window.schedule, w.window.durationMinutes]), [['nightly', '30 1 * * *', 45]]);
      assert.ok(windows[0]!.nextRun !== null);
      await page.uncheck('#fleet-rows tr[data-name="pc-01"] input[type=checkbox]');

      // At phone width the console's pages fit the screen (no sideways scrolling); screenshots of each.
      const phone = await newPage(chromium.browser, 'phone');
      try {
        await phone.context.addCookies(await p.context.cookies());
        for (const [pageName, shotName] of [['fleet', 'console-fleet'], ['commands', 'console-commands'], ['models', 'console-models'], ['audit', 'console-audit']] as const) {
          await phone.page.goto(`${base}/#/${pageName}`);
          await waitData(phone.page, '#page', 'loaded', 'true');
          const overflow = await phone.page.evaluate(() => (globalThis as any).document.documentElement.scrollWidth - (globalThis as any).innerWidth);
          assert.ok(overflow <= 0, `the ${pageName} page is ${overflow} px wider than a phone`);
          await shot(phone.page, 'phone', shotName);
        }
        assert.deepEqual(phone.problems, []);
      } finally {
        await phone.context.close();
      }

      // A daemon killed with kill -9 turns offline in its row (its last will).
      pc2.child.kill('SIGKILL');
      await exited(pc2.child);
      await page.waitForSelector('#fleet-rows tr[data-name="pc-02"][data-online="false"]', { timeout: 60_000 });
      assert.equal(await rowText(page, 'pc-02', 'online'), 'offline');
      assert.equal(await rowText(page, 'pc-01', 'online'), 'online');
      assert.deepEqual(p.problems, []);
    } finally {
      await p.context.close();
      for (const c of children) {
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        await exited(c);
      }
      await server.stop();
      await broker.stop();
    }
  });

  it('keeps 1,000 appliances paged and filterable, and a selection action reaches only the chosen ones', async () => {
    const N = 1000;
    const broker = await Mosquitto.start({ dir: join(dir, 'broker-1000'), maxQueuedMessages: 10 * N });
    const server = new ConsoleServer({ dataDir: join(dir, 'console-1000'), listen: { host: '127.0.0.1', port: 0 }, mqttUrl: broker.url, backoff: { minMs: 100, maxMs: 1000 } });
    const fleet: ProtocolAppliance[] = [];
    const p = await newPage(chromium.browser, 'desktop');
    const page = p.page;
    try {
      await server.start();
      const base = server.http.address().url.replace(/\/$/, '');
      const name = (i: number): string => `lab-${String(i).padStart(4, '0')}`;
      for (let i = 0; i < N; i += 50) {
        fleet.push(...(await Promise.all(Array.from({ length: Math.min(50, N - i) }, (_, k) => ProtocolAppliance.connect({ url: broker.url, name: name(i + k) })))));
      }
      await page.goto(base + '/');
      await page.waitForSelector('#setup-form');
      await page.fill('#new-password', PASSWORD);
      await page.fill('#confirm-password', PASSWORD);
      await page.click('#setup-submit');
      await waitData(page, '#page', 'loaded', 'true');
      await page.waitForFunction((n) => (globalThis as any).document.querySelector('#fleet-summary')?.textContent === `${n} appliances, ${n} online`, N, { timeout: 120_000 });
      // One page of rows in the DOM, whatever the fleet's size.
      assert.equal(await page.locator('#fleet-rows tr').count(), 100);
      assert.equal(await page.textContent('#fleet-page-info'), `1–100 of ${N}`);
      await page.click('#fleet-next');
      assert.equal(await page.getAttribute('#fleet-rows tr:first-child', 'data-name'), name(100));
      await shot(page, 'desktop', 'console-fleet-1000', false);
      // Filter by name.
      await page.fill('#fleet-filter', 'lab-09');
      await page.waitForFunction(() => (globalThis as any).document.querySelector('#fleet-page-info')?.textContent === '1–100 of 100');
      await page.fill('#fleet-filter', 'lab-0999');
      await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#fleet-rows tr[data-name]').length === 1);
      // Select the one row and freeze it: only that appliance runs the command.
      await page.check('#fleet-rows tr[data-name="lab-0999"] input[type=checkbox]');
      await page.click('#act-freeze');
      await confirm(page);
      await waitFor('lab-0999 ran freeze', () => fleet[999]!.ran.length === 1, 60_000);
      assert.equal(fleet[999]!.ran[0]!.action, 'freeze');
      assert.equal(fleet.filter((a) => a.ran.length > 0).length, 1, 'no other appliance got it');
      const records = (await (await fetch(base + '/api/appliances', { headers: { cookie: (await p.context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ') } })).json()) as ApplianceRecord[];
      assert.equal(records.length, N);
      assert.deepEqual(p.problems, []);
    } finally {
      await p.context.close();
      await Promise.all(fleet.map((a) => a.close().catch(() => undefined)));
      await server.stop();
      await broker.stop();
    }
  });
});
