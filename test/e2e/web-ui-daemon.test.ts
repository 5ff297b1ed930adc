/**
 * The web UI in a real Chromium against the real daemon (`snapback serve`, built) while a real
 * NBD client (nbdsh, libnbd) writes through the daemon's NBD socket: first-run setup, the
 * dashboard following the writes live, ending a session and watching the restore progress,
 * thaw and freeze, the audit log showing each (the CLI's actions included); at desktop and
 * phone widths. Screenshots go to docs/screenshots (daemon-*).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { exited, initState, nbdUri, serveOutput, snapbackOk, startServe, webUiUrl } from '../helpers/cli.js';
import { nbdsh } from '../helpers/nbd-clients.js';
import { Prng } from '../helpers/prng.js';
import { PASSWORD, controlRequest } from '../helpers/http-harness.js';
import { useChromium, usePage, VIEWPORT_NAMES, shot, waitData, waitText, setFirstPassword } from '../helpers/browser.js';

const SIZE = 32 << 20;
const REGION = 64 << 10;

interface Daemon {
  child: ChildProcess;
  url: string;
}

async function serve(stateDir: string): Promise<Daemon> {
  const child = await startServe(stateDir);
  return { child, url: await webUiUrl(child) };
}

/** The host writes `count` regions at `firstRegion` through the NBD socket, then flushes. */
async function hostWrites(stateDir: string, firstRegion: number, count: number, fill: number): Promise<void> {
  await nbdsh(
    [
      `h.connect_uri(${JSON.stringify(nbdUri(stateDir))})`,
      `buf = bytes([${fill}]) * ${REGION}`,
      `for i in range(${count}):`,
      `    h.pwrite(buf, ${firstRegion * REGION} + i * ${REGION})`,
      'h.flush()',
      'h.shutdown()',
    ].join('\n'),
  );
}

/** True when what the host reads at [offset, offset+length) is the model's bytes. */
async function hostReadsModel(stateDir: string, model: string, offset: number, length: number): Promise<boolean> {
  const out = await nbdsh(
    [
      `h.connect_uri(${JSON.stringify(nbdUri(stateDir))})`,
      `data = h.pread(${length}, ${offset})`,
      `f = open(${JSON.stringify(model)}, 'rb')`,
      `f.seek(${offset})`,
      `print('SAME' if f.read(${length}) == data else 'DIFFERENT')`,
      'h.shutdown()',
    ].join('\n'),
  );
  return out.trim() === 'SAME';
}

describe('web UI in Chromium against the real daemon, with a real NBD client writing', function () {
  this.timeout(300_000);
  const chromium = useChromium();

  for (const vp of VIEWPORT_NAMES) {
    describe(`at ${vp} width`, () => {
      let dir: string;
      let state: string;
      let model: string;
      let daemon: Daemon;
      const tab = usePage(chromium, vp);
      let page: Page;
      let written = 0;
      const cli = (...args: string[]): string => snapbackOk(state, args);

      before(async () => {
        dir = await mkdtemp(join(tmpdir(), 'snapback-webui-'));
        ({ state, model } = initState(dir, new Prng(7).bytes(SIZE), { name: 'lab-image', regionSize: '64K' }));
        daemon = await serve(state);
        page = tab.page;
      });
      after(async () => {
        if (daemon && daemon.child.exitCode === null) {
          daemon.child.kill('SIGTERM');
          const e = await exited(daemon.child);
          assert.equal(e.code, 0, serveOutput(daemon.child));
        }
        await rm(dir, { recursive: true, force: true });
      });

      it('first run sets the password; the dashboard shows the daemon', async () => {
        await page.goto(daemon.url + '/');
        await setFirstPassword(page, PASSWORD);
        await page.waitForSelector('#live.live-on');
        await waitText(page, '#mode', 'Frozen');
        await waitText(page, '#host-state', /./);
        // The restore that the daemon's start began (init left every region pending) finishes.
        await waitText(page, '#regions-pending', '0');
        await waitText(page, '#regions-written', '0');
        await waitData(page, '#region-map', 'regions', String(SIZE / REGION));
      });

      it('follows a real NBD client’s writes live', async () => {
        const sessionBefore = Number(await page.textContent('#session-number'));
        // The daemon may mark a few regions ahead of a sequential writer (that is safe), so the
        // dashboard must show what the daemon counts, at least the regions written.
        const follow = async (atLeast: number): Promise<number> => {
          const st = await controlRequest(join(state, 'control.sock'), 'GET', '/api/status');
          const n: number = st.json.regions.writtenThisSession;
          assert.ok(n >= atLeast, `${n} regions written, at least ${atLeast} expected`);
          await waitText(page, '#regions-written', n.toLocaleString('en-US'));
          await waitData(page, '#region-map', 'written', String(n));
          return n;
        };
        await hostWrites(state, 0, 16, 0xa5);
        await follow(16);
        await waitText(page, '#bytes-changed', '1.00 MiB');
        await hostWrites(state, 128, 32, 0x5a);
        await follow(48);
        await hostWrites(state, 300, 4, 0x11);
        await follow(52);
        await waitText(page, '#bytes-changed', '3.25 MiB');
        // More than one batch of the restore (8 MiB), so that its progress can be seen.
        await hostWrites(state, 320, 172, 0x77);
        written = await follow(224);
        await waitText(page, '#bytes-changed', '14.0 MiB');
        assert.equal(Number(await page.textContent('#session-number')), sessionBefore, 'the same session');
        assert.equal(await hostReadsModel(state, model, 0, 16 * REGION), false, 'the host reads its own writes');
        await shot(page, vp, 'daemon-dashboard');
      });

      it('ending the session (confirmed) shows the restore progressing until done; the host reads the model again', async () => {
        // A slow restore (set with the CLI), so that its progress can be watched.
        cli('hydration-rate', '1M');
        const before = Number(await page.textContent('#session-number'));
        await page.click('#btn-end-session');
        await page.waitForSelector('dialog.confirm[open]');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#session-number', String(before + 1));
        await waitText(page, '#regions-written', '0');
        await waitText(page, '#hydration-text', new RegExp(`^Restoring: [1-9]\\d* of ${written} regions`));
        await page.waitForFunction(() => {
          const bar = (globalThis as any).document.querySelector('#hydration-bar');
          return bar && bar.value > 0 && bar.value < 100;
        });
        await waitText(page, '#hydration-eta', /left$/);
        await shot(page, vp, 'daemon-restoring');
        // Pending regions already read as the model (instant restore).
        assert.equal(await hostReadsModel(state, model, 128 * REGION, 32 * REGION), true);
        cli('hydration-rate', 'unlimited');
        await waitText(page, '#regions-pending', '0');
        await waitText(page, '#hydration-text', /^Nothing to restore/);
        assert.equal(await hostReadsModel(state, model, 0, SIZE), true);
      });

      it('thaw and freeze from the dashboard, each confirmed; the CLI sees the same mode', async () => {
        await page.click('#btn-toggle-mode');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#mode', 'Thawed');
        assert.match(cli('status'), /mode: thawed/);
        await shot(page, vp, 'daemon-thawed');
        await page.click('#btn-toggle-mode');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#mode', 'Frozen');
        assert.match(cli('status'), /mode: frozen/);
      });

      it('the Events page shows every action with who did it', async () => {
        await page.click('#nav a[data-page=events]');
        await page.waitForFunction(() => (globalThis as any).document.querySelectorAll('#audit-body tr').length >= 6);
        const rows: string[][] = await page.evaluate(() =>
          Array.from((globalThis as any).document.querySelectorAll('#audit-body tr'), (r: any) =>
            Array.from(r.querySelectorAll('td'), (td: any) => String(td.textContent ?? '')),
          ),
        );
        assert.deepEqual(
          rows.slice(0, 6).map((r) => `${r[1]} ${r[2]}`),
          ['admin mode.set', 'admin mode.set', 'cli hydration-rate.set', 'admin session.end', 'cli hydration-rate.set', 'admin auth.password-set'],
        );
        await shot(page, vp, 'daemon-events');
        // The same log over the control socket.
        const a = await controlRequest(join(state, 'control.sock'), 'GET', '/api/audit?limit=6');
        assert.equal(a.json.entries[3].action, 'session.end');
      });

      it('the Sessions page shows the ended session', async () => {
        await page.click('#nav a[data-page=sessions]');
        await page.waitForSelector('#sessions-body tr');
        const rows: string[][] = await page.evaluate(() =>
          Array.from((globalThis as any).document.querySelectorAll('#sessions-body tr'), (r: any) =>
            Array.from(r.querySelectorAll('td'), (td: any) => String(td.textContent ?? '')),
          ),
        );
        const ended = rows.find((r) => r[4] === 'web UI / API / CLI');
        assert.ok(ended, JSON.stringify(rows));
        assert.equal(ended[6], String(written));
        assert.equal(ended[7], '14.0 MiB');
        await shot(page, vp, 'daemon-sessions');
      });

      it('the Model and Settings pages show the daemon’s model and settings', async () => {
        await page.click('#nav a[data-page=model]');
        await waitText(page, '#model-name', 'lab-image');
        await waitText(page, '#model-size', /^32\.0 MiB/);
        await shot(page, vp, 'daemon-model');
        await page.click('#nav a[data-page=settings]');
        await page.waitForFunction(() => (globalThis as any).document.querySelector('#mode-frozen')?.checked === true);
        await page.waitForSelector('#policy-form[data-loaded]');
        await page.waitForSelector('#tokens-body[data-loaded]');
        // The restore rate as the daemon has it: unlimited (which transitions end a session is
        // set in gadget.json and gpio.json, not on this page).
        assert.equal(await page.inputValue('#hydration-rate-input'), '');
        await shot(page, vp, 'daemon-settings');
        const settings = JSON.parse(await readFile(join(state, 'state.json'), 'utf8')).settings;
        assert.equal(settings.hydrationRateBytesPerSecond, null);
      });

      it('the Settings page lists, adds and removes persistent areas; a bad range is refused with the daemon\'s message', async () => {
        await page.waitForSelector('#persistent-body[data-loaded]');
        await waitText(page, '#persistent-body', /No persistent areas/);
        await page.fill('#persistent-value', '1M:1M');
        await page.click('#persistent-add');
        await waitText(page, '#notices', /Area 1 will be persistent from the next session end/);
        await waitText(page, '[data-area-state="1"]', 'added at the next session end');
        // narrowed to whole regions: the notice says which bytes stay protected
        await page.fill('#persistent-value', '4100K:200K');
        await page.click('#persistent-add');
        await waitText(page, '#notices', /narrowed to whole regions of 64 KiB: bytes 4259840–4390911 are persistent/);
        await page.fill('#persistent-value', '40M:1M');
        await page.click('#persistent-add');
        await waitText(page, '#notices', /Not added: range 40M:1M ends at byte 42991616, beyond the end of the disk/);
        await page.selectOption('#persistent-kind', 'partition');
        await page.fill('#persistent-value', '3');
        await page.click('#persistent-add');
        await waitText(page, '#notices', /Not added: partition 3: the disk has no partition table/);
        await shot(page, vp, 'daemon-settings-persistent');
        await page.click('[data-area="2"]');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#notices', /Area 2 will be removed at the next session end/);
        await page.waitForSelector('[data-area-row="2"]', { state: 'detached' });
        const listed = JSON.parse(cli('persistent', 'list', '--json')) as { active: unknown[]; pending: { id: string; offset: number; length: number }[] };
        assert.deepEqual(listed.pending.map((a) => [a.id, a.offset, a.length]), [['1', 1 << 20, 1 << 20]]);
        // the last one removed: none left
        await page.click('[data-area="1"]');
        await page.click('dialog.confirm [data-action=confirm]');
        await waitText(page, '#persistent-body', /No persistent areas/);
        // the two refusals (400, 404) are the only failed loads the browser logged
        const refusals = tab.problems.filter((p) => /status of (400|404)/.test(p));
        assert.equal(refusals.length, 2, tab.problems.join('\n'));
        tab.problems.splice(0, tab.problems.length, ...tab.problems.filter((p) => !refusals.includes(p)));
      });

      it('logs out', async () => {
        await page.click('#logout');
        await page.waitForSelector('#login-form');
        const r = await fetch(daemon.url + '/api/status');
        assert.equal(r.status, 401);
      });
    });
  }
});
