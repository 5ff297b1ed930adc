/**
 * The first boot in a real Chromium: the web UI listens on the network before any password
 * exists; a browser on another machine (this machine's network address, so the server sees a
 * non-loopback client) is asked for the one-time setup code with the new password, a wrong code
 * is refused with a clear message, the right one sets the password and opens the dashboard.
 * A browser on the appliance itself (loopback) is not asked for the code. Screenshots of the
 * form go to docs/screenshots with the others.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ownNetworkAddress } from '../helpers/network.js';
import { VIEWPORT_NAMES, newPage, shot, useChromium, waitText } from '../helpers/browser.js';
import { PASSWORD, startHarness } from '../helpers/http-harness.js';

describe('web UI: first boot with the setup code, in Chromium', function () {
  this.timeout(120_000);
  const chromium = useChromium();

  for (const vp of VIEWPORT_NAMES) {
    it(`asks a network browser for the setup code, refuses a wrong one, accepts the right one (${vp})`, async () => {
      const hx = await startHarness({ host: '0.0.0.0' });
      const ip = ownNetworkAddress();
      const port = Number(new URL(hx.url).port);
      const { page, problems, context } = await newPage(chromium.browser, vp, { appliance: [ip] });
      const local = await newPage(chromium.browser, vp);
      try {
        // On the appliance itself: no code asked.
        await local.page.goto(`http://127.0.0.1:${port}/`);
        await local.page.waitForSelector('#setup-form');
        assert.equal(await local.page.locator('#setup-code').count(), 0, 'a loopback browser is not asked for the code');

        await page.goto(`http://${ip}:${port}/`);
        await page.waitForURL(/\/login$/);
        await page.waitForSelector('#setup-code');
        assert.match((await page.textContent('#setup-code-help')) ?? '', /setup-code/);
        await shot(page, vp, 'first-boot-setup-code');

        await page.fill('#setup-code', 'AAAA-BBBB-CCCC-DDDD');
        await page.fill('#new-password', PASSWORD);
        await page.fill('#confirm-password', PASSWORD);
        await page.click('#setup-submit');
        await waitText(page, '#setup-error', /Wrong setup code/);
        assert.equal(hx.store.hasAdminPassword(), false);
        await shot(page, vp, 'first-boot-wrong-code');

        const code = (await readFile(join(hx.dir, 'setup-code'), 'utf8')).trim();
        await page.fill('#setup-code', code);
        await page.click('#setup-submit');
        await page.waitForSelector('#session-number');
        assert.equal(hx.store.hasAdminPassword(), true);
        await assert.rejects(stat(join(hx.dir, 'setup-code')), 'the code file is deleted once the password is set');
        assert.deepEqual([...problems, ...local.problems], []);
      } finally {
        await context.close();
        await local.context.close();
        await hx.close();
      }
    });
  }
});
