/**
 * The web UI in a real Chromium against the real daemon provisioned lazily from a real nginx
 * (`snapback init --model URL`): when the server goes away the dashboard says "Model download
 * stalled" with the reason, live; when it is back the notice goes by itself. Screenshot:
 * docs/screenshots/desktop-model-download-stalled.png.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { CLI, exited, snapback } from '../helpers/cli.js';
import { makeImage, makeTempDir, type TempDir } from '../helpers/nbd-clients.js';
import { Nginx } from '../helpers/nginx.js';
import { PASSWORD } from '../helpers/http-harness.js';
import { useChromium, newPage, shot, waitText } from '../helpers/browser.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';

const REGION = 64 << 10;
const SIZE = 8 << 20;

describe('web UI: a lazily provisioned model whose download stalls (Chromium, daemon, nginx)', function () {
  this.timeout(240_000);
  const chromium = useChromium();
  let dir: TempDir;
  let nginx: Nginx;
  let daemon: ChildProcess;
  let out = '';
  let page: Page;
  let problems: string[];
  let closeContext: () => Promise<void>;

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
    daemon = spawn(process.execPath, [CLI, 'serve', '--state-dir', state, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off'], { env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    daemon.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const p = await newPage(chromium.browser, 'desktop');
    page = p.page;
    problems = p.problems;
    closeContext = () => p.context.close();
  });
  after(async () => {
    await closeContext?.();
    if (daemon && daemon.exitCode === null) {
      daemon.kill('SIGTERM');
      await exited(daemon);
    }
    await nginx?.stop();
    await dir?.remove();
  });

  it('says "Model download stalled" with the reason while the server is gone, and clears it once the download resumes', async () => {
    const url = await new Promise<string>((resolve, reject) => {
      const check = (): void => {
        const m = /web UI and API on (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
        if (m && existsSync(join(dir.path, 'state', 'control.sock'))) resolve(m[1]!);
        else if (daemon.exitCode !== null) reject(new Error(`snapback serve exited: ${out}`));
        else setTimeout(check, 50);
      };
      check();
    });
    await page.goto(url + '/');
    await page.waitForSelector('#setup-form');
    await page.fill('#new-password', PASSWORD);
    await page.fill('#confirm-password', PASSWORD);
    await page.click('#setup-submit');
    await page.waitForSelector('#live.live-on');
    assert.equal(await page.isHidden('#download-banner'), true);

    await nginx.stop();
    await page.waitForSelector('#download-banner', { state: 'visible', timeout: 60_000 });
    await waitText(page, '#download-banner', /^Model download stalled \(lab\.img\): .*127\.0\.0\.1.*resumes by itself/);
    await shot(page, 'desktop', 'model-download-stalled', false);

    await nginx.start();
    await page.waitForSelector('#download-banner', { state: 'hidden', timeout: 90_000 });
    assert.deepEqual(problems.splice(0), []);
  });
});
