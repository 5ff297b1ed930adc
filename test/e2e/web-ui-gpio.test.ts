/**
 * The GPIO page in a real Chromium: the backend, live pin states, the power LED, the session
 * end a short press armed or that failed, and host power actions through the web UI, confirmation before a disruptive action, and every action in the audit log. The
 * pins are the simulated backend behind the same interface as onoff (there is no GPIO here).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useChromium, VIEWPORT_NAMES, newPage, shot, waitText, setFirstPassword } from '../helpers/browser.js';
import { FakeAppliance } from '../helpers/fake-appliance.js';
import { waitFor } from '../helpers/wait.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { HttpComponent } from '../../appliance/http/http-component.js';
import { partitionRoutes } from '../../appliance/http/routes/partition-routes.js';
import { GpioComponent } from '../../appliance/gpio/gpio-component.js';
import { gpioRoutes } from '../../appliance/http/routes/gpio-routes.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { systemClock } from '../../appliance/clock.js';

const PASSWORD = 'correct horse battery staple';
const PINS = { button: 17, led: 22, power: 23, reset: 24, sense: 25 };

const buttonState = '#gpio-pins tr[data-role="button"] .pin-state';

describe('web UI: the GPIO page in Chromium', function () {
  this.timeout(120_000);
  const chromium = useChromium();

  for (const vp of VIEWPORT_NAMES) {
    it(`shows live pins and runs power actions with confirmation (${vp})`, async () => {
      const dir = await mkdtemp(join(tmpdir(), 'snapback-gpio-ui-'));
      const store = await StateStore.open(dir);
      const service = new FakeAppliance();
      const sim = new SimulatedGpioBackend({ clock: systemClock, inputs: { [PINS.button]: 1, [PINS.sense]: 1 } });
      const gpio = new GpioComponent(
        service,
        { statusLed: { pin: PINS.led }, button: { pin: PINS.button }, power: { switchPin: PINS.power, resetPin: PINS.reset, ledPin: PINS.sense } },
        { backend: sim, audit: (e) => void store.audit(e) },
      );
      await gpio.start();
      const http = new HttpComponent({ service, store, listen: { host: '127.0.0.1', port: 0 }, controlSocket: join(dir, 'control.sock'), extraRoutes: [(api) => gpioRoutes(api, gpio), (api) => partitionRoutes(api, { partitions: async () => ({ scheme: 'none', sectorSize: 512, diskId: '', diskSize: 0, partitions: [], warnings: [] }) })] });
      await http.start();
      const { page, problems, context } = await newPage(chromium.browser, vp);
      /**
       * Holds the button (active-low) until the component has seen it held, then lets go: a short
       * press. (Waiting for the page, which polls every second, could hold it past the long-press
       * time on a loaded machine.) The page then shows it released.
       */
      const shortPress = async (): Promise<void> => {
        sim.setInput(PINS.button, 0);
        await waitFor('the button seen held', () => gpio.status().button.pressed === true, 10_000, 5);
        sim.setInput(PINS.button, 1);
        await waitText(page, buttonState, 'inactive');
      };
      try {
        const url = http.address().url.replace(/\/$/, '');
        await page.goto(url + '/');
        await setFirstPassword(page, PASSWORD);
        await page.click('#nav a[data-page="gpio"]');
        await page.waitForSelector('#gpio-pins tr[data-role="button"]');
        // live pin state: the button (active-low) is released, then held
        await waitText(page, buttonState, 'inactive');
        sim.setInput(PINS.button, 0);
        await waitText(page, buttonState, 'active');
        sim.setInput(PINS.button, 1);
        await waitText(page, buttonState, 'inactive');
        // the host is off (power LED dark): "Power on" presses the power switch
        await waitFor('Power on to be enabled', () => page.locator('button[data-action="on"]').isEnabled());
        await page.click('button[data-action="on"]');
        await waitFor('a press on the power switch', () => sim.history(PINS.power).some((c) => c.level === 1));
        // a disruptive action asks first; cancelling does nothing
        await waitFor('Reset to be enabled', () => page.locator('button[data-action="reset"]').isEnabled());
        const resetPulses = sim.history(PINS.reset).length;
        await page.click('button[data-action="reset"]');
        await page.waitForSelector('dialog.confirm');
        await shot(page, vp, 'gpio-confirm-reset');
        await page.click('dialog.confirm [data-action="cancel"]');
        await new Promise((r) => setTimeout(r, 500));
        assert.equal(sim.history(PINS.reset).length, resetPulses, 'cancel pressed nothing');
        await page.click('button[data-action="reset"]');
        await page.click('dialog.confirm [data-action="confirm"]');
        await waitFor('a press on the reset switch', () => sim.history(PINS.reset).some((c) => c.level === 1));
        await waitFor('power actions in the audit log', () => store.listAudit().filter((e) => /power/.test(e.action)).length >= 2);
        const actions = store.listAudit().map((e) => `${e.actor}:${e.action}:${JSON.stringify(e.details ?? {})}`);
        assert.ok(actions.some((a) => a.startsWith('admin:gpio.power.on:')), actions.join('\n'));
        assert.ok(actions.some((a) => a.startsWith('admin:gpio.power.reset:')), actions.join('\n'));
        // the short press on the button, with the host dark, ended the session at once
        assert.ok(actions.some((a) => a.startsWith('button:gpio.button.short-press')), actions.join('\n'));
        // the backend and the power LED's own level, as GpioStatus has them
        await waitText(page, '#gpio-backend', /^Backend: simulated/);
        await waitText(page, '#gpio-power', /\(LED dark\)/);
        await waitText(page, '#gpio-session', 'Session: no end pending');
        await shot(page, vp, 'gpio');
        // a session end that fails is shown with its reason (the short press, with the host off, ends at once)
        const endSession = service.endSession.bind(service);
        service.endSession = () => Promise.reject(new Error('the working disk is gone'));
        await shortPress();
        await waitText(page, '#gpio-session', /ending the session failed: the working disk is gone/);
        service.endSession = endSession;
        // with the host on (its power LED lit), a short press arms the end for the next power-off
        sim.setInput(PINS.sense, 0);
        await waitText(page, '#gpio-power', /host power: on \(LED lit\)/);
        await shortPress();
        await waitText(page, '#gpio-session', /end armed by button since .*: the session ends when the host powers off/);
        assert.deepEqual(problems, []);
      } finally {
        await context.close();
        await http.stop();
        await gpio.stop();
        service.close();
        await store.close();
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
