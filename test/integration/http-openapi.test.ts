/**
 * The API's contract: GET /api/openapi.json is generated from the route declarations (and so
 * from the zod schemas that validate requests). These tests fail when a route is served but not
 * documented, when a documented route is not served, and when a reply does not fit its
 * documented schema.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../appliance/clock.js';
import { daemonRoutes } from '../../appliance/daemon/daemon-routes.js';
import { GpioComponent } from '../../appliance/gpio/gpio-component.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { HttpComponent } from '../../appliance/http/http-component.js';
import { openApiPath } from '../../appliance/http/openapi.js';
import { MaintenanceComponent } from '../../appliance/maintenance/maintenance-component.js';
import { ManagementComponent } from '../../appliance/management/management-component.js';
import { ModelDownloads } from '../../appliance/session/model-downloads.js';
import { ModelService } from '../../appliance/session/model-service.js';
import { ModelSwitcher } from '../../appliance/session/model-switcher.js';
import { initEngine, openEngine, type Engine } from '../../appliance/storage/engine.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { readPartitionTable } from '../../appliance/storage/partition-table.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { FakeAppliance } from '../helpers/fake-appliance.js';
import { Client, PASSWORD } from '../helpers/http-harness.js';
import { storeMaintenanceDeps } from '../helpers/maintenance-deps.js';

interface OpenApiDoc {
  openapi: string;
  paths: Record<string, Record<string, { summary?: string; security?: unknown[]; responses: Record<string, unknown> }>>;
}

describe('http: the OpenAPI document', () => {
  let dir: string;
  let store: StateStore;
  let service: FakeAppliance;
  let engine: Engine;
  let gpio: GpioComponent;
  let management: ManagementComponent;
  let http: HttpComponent;
  let c: Client;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'snapback-openapi-'));
    // A real (small) storage engine, for the routes that read it: persistent areas, partition table, model switch.
    await writeFile(join(dir, 'model.img'), Buffer.alloc(1 << 20));
    await initEngine({ stateDir: join(dir, 'state'), model: join(dir, 'model.img'), disk: join(dir, 'disk.img'), regionSize: 64 << 10 });
    engine = await openEngine(join(dir, 'state'));
    store = await StateStore.open(dir);
    service = new FakeAppliance();
    gpio = new GpioComponent(service, { statusLed: { pin: 22 }, button: { pin: 17 }, power: { switchPin: 23, resetPin: 24, ledPin: 25 } }, {
      backend: new SimulatedGpioBackend({ clock: systemClock, inputs: { 17: 1, 25: 1 } }),
      audit: () => undefined,
    });
    await gpio.start();
    management = new ManagementComponent({ service, stateDir: dir, audit: (e) => store.audit(e) });
    await management.start();
    const library = new ModelLibrary(engine.state);
    const models = new ModelService({ library });
    const maintenance = new MaintenanceComponent({
      ...storeMaintenanceDeps(service, store, gpio),
      captureAndActivate: () => Promise.reject(new Error('no capture here')),
      stateDir: dir,
      clock: systemClock,
    });
    await maintenance.add({ name: 'weekly', schedule: '0 3 * * 6', durationMinutes: 60 }, 'test');
    http = new HttpComponent({
      service,
      store,
      listen: { host: '127.0.0.1', port: 0 },
      controlSocket: join(dir, 'control.sock'),
      // every route the daemon mounts, from the daemon's own list
      extraRoutes: daemonRoutes({
        store,
        models,
        downloads: new ModelDownloads({ library, models, activeModel: () => engine.model }),
        switcher: new ModelSwitcher(engine, library),
        areas: () => engine.persistent,
        partitions: () => readPartitionTable(engine.model),
        gpio,
        management,
        maintenance,
      }),
    });
    await http.start();
    c = new Client(http.address().url.replace(/\/$/, ''));
    assert.equal((await c.setup(PASSWORD)).status, 201);
  });
  after(async () => {
    await http.stop();
    await management.stop();
    await gpio.stop();
    await engine.close();
    service.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function fetchDoc(): Promise<OpenApiDoc> {
    const r = await new Client(c.base).req('GET', '/api/openapi.json');
    assert.equal(r.status, 200, 'public: scripts read it before they have a token');
    return r.json as OpenApiDoc;
  }

  it('is served at /api/openapi.json without a login, as OpenAPI 3', async () => {
    const doc = await fetchDoc();
    assert.match(doc.openapi, /^3\./);
    assert.ok(doc.paths['/api/status']?.get?.summary);
  });

  it('documents every API route express serves, and no route that is not served', async () => {
    const doc = await fetchDoc();
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)));
    const served = new Set(
      http
        .expressRoutes()
        .filter((r) => r.path.startsWith('/api/') || r.path === '/metrics')
        .map((r) => `${r.method.toUpperCase()} ${openApiPath(r.path)}`),
    );
    assert.ok(served.size >= 25, `only ${served.size} routes found: the route table reader is broken`);
    assert.deepEqual([...served].filter((r) => !documented.has(r)).sort(), [], 'served but not documented');
    assert.deepEqual([...documented].filter((r) => !served.has(r)).sort(), [], 'documented but not served');
    const probes = ['GET /api/gpio', 'POST /api/gpio/power', 'DELETE /api/tokens/{id}', 'GET /metrics', 'GET /api/models', 'PATCH /api/models/{ref}'];
    // the daemon's own routes (daemon-routes.ts) too
    probes.push('GET /api/partitions', 'GET /api/persistent', 'POST /api/persistent', 'DELETE /api/persistent', 'GET /api/management', 'PUT /api/models/upload', 'POST /api/models/{ref}/activate', 'GET /api/maintenance');
    for (const probe of probes) assert.ok(documented.has(probe) && served.has(probe), probe);
  });

  it('marks exactly the login page\'s API public', async () => {
    const doc = await fetchDoc();
    const open = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.entries(ops).filter(([, op]) => Array.isArray(op.security) && op.security.length === 0).map(([m]) => `${m.toUpperCase()} ${path}`))
      .sort();
    assert.deepEqual(open, ['GET /api/auth/state', 'GET /api/openapi.json', 'POST /api/auth/login', 'POST /api/auth/setup']);
  });

  it('every JSON reply of a GET route fits its documented schema (the wire types)', async () => {
    const checked: string[] = [];
    for (const route of http.apiRoutes()) {
      if (route.method !== 'get' || route.path.includes(':')) continue;
      const reply = route.replies[200];
      if (!reply?.schema || (reply.contentType ?? 'application/json') !== 'application/json') continue;
      const r = await c.req('GET', route.path);
      assert.equal(r.status, 200, `${route.path}: ${r.text}`);
      const parsed = reply.schema.safeParse(r.json);
      assert.ok(parsed.success, `${route.path}: ${parsed.success ? '' : JSON.stringify(parsed.error.issues.slice(0, 3))}`);
      checked.push(route.path);
    }
    assert.ok(checked.length >= 9, `only ${checked.length} replies checked`);
    for (const path of ['/api/partitions', '/api/persistent', '/api/management', '/api/maintenance']) assert.ok(checked.includes(path), `${path} was not checked`);
  });
});
