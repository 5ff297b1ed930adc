/**
 * The Settings page's fleet card in a real Chromium against the real daemon and a real
 * mosquitto: an administrator types the broker's URL and the appliance's name, the appliance
 * comes online on the broker, the card follows the link's state (connected, reconnecting while
 * the broker is down, connected again), and "Stop managing" ends it with a goodbye. Screenshots
 * go to docs/screenshots (fleet-settings).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { Page } from 'playwright-core';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CLI, exited, snapback } from '../helpers/cli.js';
import { Prng } from '../helpers/prng.js';
import { PASSWORD } from '../helpers/http-harness.js';
import { Mosquitto } from '../helpers/mosquitto.js';
import { useChromium, VIEWPORT_NAMES, newPage, shot, waitData } from '../helpers/browser.js';
import { waitFor } from '../helpers/wait.js';

describe('web UI: fleet management on the Settings page, in Chromium, with a real broker', function () {
  this.timeout(300_000);
  const chromium = useChromium();

  for (const vp of VIEWPORT_NAMES) {
    it(`connects to the broker typed in, follows the link's state, and stops managing (${vp})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'snapback-webui-fleet-'));
      const broker = await Mosquitto.start();
      let child: ChildProcess | null = null;
      let watcher: MqttClient | null = null;
      const p = await newPage(chromium.browser, vp);
      const page: Page = p.page;
      try {
        const state = join(dir, 'state');
        const model = join(dir, 'model.img');
        await writeFile(model, new Prng(5).bytes(4 << 20));
        assert.equal(snapback(['model', 'manifest', model]).code, 0);
        let r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(dir, 'disk.img')]);
        assert.equal(r.code, 0, r.stderr);
        r = snapback(['passwd', '--state-dir', state, '--password-stdin'], {}, `${PASSWORD}\n`);
        assert.equal(r.code, 0, r.stderr);
        const d = await serve(state);
        child = d.child;
        const base = d.url;

        const seen: string[] = [];
        watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 5, reconnectPeriod: 500 });
        watcher.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
        await watcher.subscribeAsync('snapback/+/availability', { qos: 1 });

        await page.goto(base + '/');
        await page.waitForSelector('#login-form');
        await page.fill('#password', PASSWORD);
        await page.click('#login-submit');
        await page.waitForSelector('#session-number');
        await page.click('#nav a[data-page=settings]');
        await waitData(page, '#management-form', 'state', 'off');

        await page.fill('#management-url', broker.url);
        await page.fill('#management-name', 'room101-pc07');
        await page.click('#management-save');
        await waitData(page, '#management-form', 'state', 'connected');
        await waitFor('the appliance online on the broker', () => seen.includes('snapback/room101-pc07/availability online'));
        await page.waitForFunction(() => /Broker mqtt:\/\/127\.0\.0\.1/.test((globalThis as any).document.querySelector('#management-detail')?.textContent ?? ''));
        await shot(page, vp, 'fleet-settings');

        // The broker goes away: the card shows the link reconnecting, then connected again.
        await broker.stop({ remove: false });
        await waitData(page, '#management-form', 'state', 'reconnecting');
        await page.waitForFunction(() => /ECONNREFUSED|closed/.test((globalThis as any).document.querySelector('#management-detail')?.textContent ?? ''));
        await broker.resume();
        await waitData(page, '#management-form', 'state', 'connected');

        await page.click('#management-off');
        await waitData(page, '#management-form', 'state', 'off');
        await waitFor('the goodbye on the broker', () => seen.at(-1) === 'snapback/room101-pc07/availability offline');
        assert.deepEqual(p.problems, []);
      } finally {
        await watcher?.endAsync(true).catch(() => undefined);
        await p.context.close();
        if (child) {
          child.kill('SIGTERM');
          await exited(child);
        }
        await broker.stop({ remove: true });
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});

/** `snapback serve` with the web UI on a free port; resolves with its address once it answers. */
function serve(stateDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', stateDir, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off'], {
    env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new Error(`snapback serve exited ${code}: ${out}`));
    child.once('exit', onExit);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /web UI and API on (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
      if (m && existsSync(join(stateDir, 'control.sock'))) {
        child.off('exit', onExit);
        resolve({ child, url: m[1]! });
      }
    });
  });
}
