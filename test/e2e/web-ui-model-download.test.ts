/**
 * The web UI in a real Chromium against the real daemon provisioned lazily from a real nginx
 * (`snapback init --model URL`): when the server goes away the dashboard says "Model download
 * stalled" with the reason, live; when it is back the notice goes by itself. Screenshot:
 * docs/screenshots/desktop-model-download-stalled.png.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { exited, snapback, startServe, webUiUrl } from '../helpers/cli.js';
import { makeImage, makeTempDir, type TempDir } from '../helpers/nbd-clients.js';
import { Nginx } from '../helpers/nginx.js';
import { PASSWORD } from '../helpers/http-harness.js';
import { setFirstPassword, useChromium, usePage, shot, waitText } from '../helpers/browser.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';

const REGION = 64 << 10;
const SIZE = 8 << 20;

describe('web UI: a lazily provisioned model whose download stalls (Chromium, daemon, nginx)', function () {
  this.timeout(240_000);
  const chromium = useChromium();
  let dir: TempDir;
  let nginx: Nginx;
  let daemon: ChildProcess;
  const tab = usePage(chromium, 'desktop');
  let page: Page;

  before(async () => {
    dir = await makeTempDir('snapback-webui-dl-');
    const root = join(dir.path, 'www');
    mkdirSync(root);
    await makeImage(join(root, 'lab.img'), SIZE);
    await (await createManifest(join(root, 'lab.img'), { regionSize: REGION })).save(manifestPathFor(join(root, 'lab.img')));
    nginx = await Nginx.start(join(dir.path, 'nginx'), { root, rateLimit: 16 << 10 });
    const state = join(dir.path, 'state');
    const r = snapback(['init', '--state-dir', state, '--model', nginx.url('slow', 'lab.img'), '--disk', join(dir.path, 'disk.img')]);
    assert.equal(r.code, 0, r.stderr);
    daemon = await startServe(state);
    page = tab.page;
  });
  after(async () => {
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    await nginx?.stop();
    await dir?.remove();
  });

  it('says "Model download stalled" with the reason while the server is gone, and clears it once the download resumes', async () => {
    await page.goto((await webUiUrl(daemon)) + '/');
    await setFirstPassword(page, PASSWORD);
    await page.waitForSelector('#live.live-on');
    assert.equal(await page.isHidden('#download-banner'), true);

    await nginx.stop();
    await page.waitForSelector('#download-banner', { state: 'visible', timeout: 60_000 });
    await waitText(page, '#download-banner', /^Model download stalled \(lab\.img\): .*127\.0\.0\.1.*resumes by itself/);
    await shot(page, 'desktop', 'model-download-stalled', false);

    await nginx.start();
    await page.waitForSelector('#download-banner', { state: 'hidden', timeout: 90_000 });
  });
});
