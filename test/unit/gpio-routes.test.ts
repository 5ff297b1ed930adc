/** GET /api/gpio and POST /api/gpio/power over real HTTP (localhost), GPIO simulated. */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import type { GpioAuditEntry } from '../../appliance/gpio/gpio-audit.js';
import { GpioComponent } from '../../appliance/gpio/gpio-component.js';
import { ApiRouter } from '../../appliance/http/api-router.js';
import { errorHandler } from '../../appliance/http/http-util.js';
import { gpioRoutes } from '../../appliance/http/routes/gpio-routes.js';
import type { GpioSettingsInput } from '../../appliance/gpio/gpio-settings.js';
import type { GpioStatus } from '../../appliance/gpio/gpio-status.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { FakeApplianceService } from '../helpers/fake-appliance-service.js';
import { SimHost } from '../helpers/sim-host.js';
import { FakeClock } from '../helpers/fake-clock.js';

interface Harness {
  url: string;
  clock: FakeClock;
  audit: GpioAuditEntry[];
  gpio: GpioComponent;
  close(): Promise<void>;
}

async function serve(settings: GpioSettingsInput, actor: string | null, backend = true): Promise<Harness> {
  const clock = new FakeClock();
  const sim = new SimulatedGpioBackend({ clock, inputs: { 17: 1 } });
  new SimHost(sim, clock, { switchPin: 23, resetPin: 27, ledPin: 24, on: false });
  const audit: GpioAuditEntry[] = [];
  const gpio = new GpioComponent(new FakeApplianceService(clock), settings, {
    ...(backend ? { backend: sim } : { sysfsRoot: '/nonexistent-sysfs-root' }),
    clock,
    audit: (e) => audit.push(e),
  });
  await gpio.start();
  const app = express();
  app.use((_req, res, next) => {
    if (actor) res.locals.actor = actor; // what the auth middleware in front does
    next();
  });
  mountGpioRoutes(app, gpio);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    clock,
    audit,
    gpio,
    close: async () => {
      await gpio.stop();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The GPIO routes as the HTTP server mounts them: JSON bodies, the one error handler. */
function mountGpioRoutes(app: express.Express, gpio: GpioComponent): void {
  app.use(express.json({ limit: '4kb' }));
  const api = new ApiRouter();
  gpioRoutes(api, gpio);
  app.use(api.router);
  app.use(errorHandler(() => undefined));
}

function post(url: string, body: string, type = 'application/json'): Promise<Response> {
  return fetch(`${url}/api/gpio/power`, { method: 'POST', headers: { 'content-type': type }, body });
}

const wired: GpioSettingsInput = { power: { switchPin: 23, resetPin: 27, ledPin: 24 } };

describe('gpio HTTP API', () => {
  let h: Harness | null = null;
  afterEach(async () => {
    await h?.close();
    h = null;
  });

  it('GET /api/gpio returns the status with live pins', async () => {
    h = await serve(wired, 'alice');
    const res = await fetch(`${h.url}/api/gpio`);
    assert.equal(res.status, 200);
    const status = (await res.json()) as GpioStatus;
    assert.equal(status.available, true);
    assert.equal(status.host.power, 'dark');
    assert.equal(status.pins.length, 5);
    assert.equal(status.pins.find((p) => p.role === 'button')?.level, 1);
  });

  it('POST a power action: 202, audited under the logged-in user; a second one meanwhile: 409 busy', async () => {
    h = await serve(wired, 'alice');
    const res = await post(h.url, JSON.stringify({ action: 'on' }));
    assert.equal(res.status, 202);
    const body = (await res.json()) as { accepted: boolean; action: string; status: GpioStatus };
    assert.equal(body.accepted, true);
    assert.equal(body.status.power.running?.action, 'on');
    const busy = await post(h.url, JSON.stringify({ action: 'reset' }));
    assert.equal(busy.status, 409);
    const busyReply = (await busy.json()) as { error: string; message: string };
    assert.equal(busyReply.error, 'BUSY');
    assert.match(busyReply.message, /busy/);
    await h.clock.advance(3000);
    assert.deepEqual(
      h.audit.filter((e) => e.action === 'gpio.power.on').map((e) => [e.actor, e.details?.result]),
      [
        ['alice', 'started'],
        ['alice', 'ok'],
      ],
    );
    assert.equal(h.gpio.status().host.power, 'on');
  });

  it("the actor is 'api' when no one is named", async () => {
    h = await serve(wired, null);
    assert.equal((await post(h.url, JSON.stringify({ action: 'reset' }))).status, 202);
    assert.equal(h.audit[0]?.actor, 'api');
  });

  it('takes the actor from res.locals.principal (as the HTTP server sets it) and marks the request audited', async () => {
    h = await serve(wired, null);
    const app = express();
    let audited: unknown;
    app.use((_req, res, next) => {
      res.locals.principal = { kind: 'login', actor: 'dora' };
      res.on('finish', () => (audited = res.locals.audited));
      next();
    });
    mountGpioRoutes(app, h.gpio);
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    try {
      const { port } = server.address() as AddressInfo;
      assert.equal((await post(`http://127.0.0.1:${port}`, JSON.stringify({ action: 'reset' }))).status, 202);
      assert.equal(h.audit[0]?.actor, 'dora');
      assert.equal(audited, true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('bad bodies get 400 BAD_ARGUMENT with a message (the one error format)', async () => {
    h = await serve(wired, 'alice');
    for (const body of [
      JSON.stringify({ action: 'explode' }),
      JSON.stringify({}),
      JSON.stringify({ action: 'on', extra: 1 }),
      JSON.stringify(['on']),
      '{"action": ',
    ]) {
      const res = await post(h.url, body);
      assert.equal(res.status, 400, body);
      const json = (await res.json()) as { error: string; message: string };
      assert.equal(json.error, 'BAD_ARGUMENT', body);
      assert.ok(json.message.length > 0, body);
    }
    const text = await post(h.url, 'action=on', 'application/x-www-form-urlencoded');
    assert.equal(text.status, 400);
    assert.equal(h.audit.length, 0);
  });

  it('409 when the action is not wired, or GPIO is off', async () => {
    h = await serve({}, 'alice');
    const res = await post(h.url, JSON.stringify({ action: 'restore-now' }));
    assert.equal(res.status, 409);
    const notWired = (await res.json()) as { error: string; message: string };
    assert.equal(notWired.error, 'NOT_SUPPORTED');
    assert.match(notWired.message, /not wired/);
    await h.close();
    h = await serve(wired, 'alice', false);
    const off = await post(h.url, JSON.stringify({ action: 'on' }));
    assert.equal(off.status, 409);
    assert.match(((await off.json()) as { message: string }).message, /nonexistent-sysfs-root/);
  });
});
