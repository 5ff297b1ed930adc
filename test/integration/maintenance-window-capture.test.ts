/**
 * A maintenance window that captures, through the parts the daemon composes: a state directory
 * made by init (the storage engine on real files), the session manager, the model library and
 * the model switcher's capture-and-activate, wired as the daemon wires them. The power sequence
 * runs on a fake clock against a simulated host on the simulated GPIO backend; everything below
 * it (write log, model files, state store) is real and fsyncs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpioComponent } from '../../appliance/gpio/gpio-component.js';
import { SimulatedGpioBackend } from '../../appliance/gpio/simulated-backend.js';
import { MaintenanceComponent } from '../../appliance/maintenance/maintenance-component.js';
import { SessionsComponent } from '../../appliance/daemon/sessions-component.js';
import { initEngine, openEngine, type Engine } from '../../appliance/storage/engine.js';
import { ModelLibrary } from '../../appliance/storage/model-library.js';
import { StateStore } from '../../appliance/state/state-store.js';
import { SimHost } from '../helpers/sim-host.js';
import { FakeClock } from '../helpers/fake-clock.js';
import { storeMaintenanceDeps } from '../helpers/maintenance-deps.js';
import { Prng } from '../helpers/prng.js';
import { waitFor } from '../helpers/wait.js';

const SW = 23;
const PLED = 24;
/** Wall-clock time when the fake clock reads 0: Saturday 2026-11-28 02:00 UTC. */
const BASE = Date.UTC(2026, 10, 28, 2, 0);
const at = (iso: string): number => Date.parse(iso) - BASE;
const KIB = 1024;
const REGION = 64 * KIB;
const SIZE = 16 * REGION;

describe('a maintenance window through the real storage, sessions and model switcher', function () {
  this.timeout(120_000);
  const cleanup: (() => Promise<void> | void)[] = [];
  after(async () => {
    for (const fn of cleanup.reverse()) await fn();
  });

  it('captures what the host wrote during the window as the pattern-named model, activates it, and a later session end keeps those bytes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'snapback-maint-real-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    const rng = new Prng(13);
    const modelBytes = rng.bytes(SIZE);
    writeFileSync(join(dir, 'model.img'), modelBytes);
    const stateDir = join(dir, 'state');
    await initEngine({ stateDir, model: join(dir, 'model.img'), disk: join(dir, 'disk.img'), regionSize: REGION });

    // composed as the daemon composes it: storage engine, state store, sessions (manager + switcher)
    const engine: Engine = await openEngine(stateDir);
    cleanup.push(() => engine.close());
    const store = await StateStore.open(stateDir);
    cleanup.push(() => store.close());
    const library = new ModelLibrary(engine.state);
    const sessions = new SessionsComponent({ library, engine: () => engine, store: () => store, endSessionOnStart: true, components: () => [], nbdClients: () => 0 });
    await sessions.start();
    cleanup.push(() => sessions.stop());
    const service = sessions.manager;
    const switcher = sessions.switcher;
    await waitFor('the restore after the start', () => engine.log.pendingCount === 0);
    const audit = (e: { actor: string; action: string; details?: Record<string, unknown> }): void => void store.audit(e).catch(() => undefined);

    const clock = new FakeClock();
    const sim = new SimulatedGpioBackend({ clock, inputs: { 17: 1 } });
    const host = new SimHost(sim, clock, { switchPin: SW, ledPin: PLED, on: false, onShortPress: 'shutdown', shutdownMs: 20_000, bootMs: 2000 });
    const gpio = new GpioComponent(service, { power: { switchPin: SW, ledPin: PLED } }, { backend: sim, clock, audit });
    await gpio.start();
    cleanup.push(() => gpio.stop());
    await clock.advance(6000); // the power LED's state settles (off)
    const maintenance = new MaintenanceComponent({
      ...storeMaintenanceDeps(service, store, gpio),
      captureAndActivate: async (name) => (await switcher.capture({ name, activate: true })).model.record.name,
      stateDir,
      clock,
      wallNow: () => BASE + clock.now(),
    });
    await maintenance.start();
    /**
     * The window's steps wait on real I/O (the write log's mode change, the capture) between
     * its timers on the fake clock: move the clock a second at a time until `done` holds.
     */
    const runUntil = (what: string, done: () => unknown): Promise<unknown> =>
      waitFor(what, async () => {
        if (done()) return true;
        await clock.advance(1000);
        return done();
      });
    cleanup.push(() => maintenance.stop());
    await maintenance.add({ name: 'nightly', schedule: '0 3 * * *', timeZone: 'UTC', durationMinutes: 30, graceSeconds: 60, after: 'capture' }, 'admin');
    const before = engine.modelEntry.record;
    assert.equal(service.status().mode, 'frozen');

    await clock.advanceTo(at('2026-11-28T03:00:00Z'));
    await runUntil('the host to be on and the window running', () => host.on && maintenance.status().running?.step === 'running');
    assert.equal(service.status().mode, 'thawed', 'the disk is thawed for the window');

    // the host installs its updates: writes reach the protected disk and are flushed
    const update = rng.bytes(3 * REGION + 1000);
    const updateAt = 5 * REGION + 300;
    await engine.pd.write(updateAt, update);
    await engine.pd.flush();

    // the window ends at 03:30: the host shuts down on the press, then the capture runs (real I/O)
    await clock.advanceTo(at('2026-11-28T03:30:00Z'));
    await runUntil('the window to end', () => maintenance.status().recent[0]?.result);
    assert.equal(host.on, false);
    assert.deepEqual(host.presses.map((p) => p.heldMs < 1000), [true, true], 'the power-on press and one shutdown press, no forced off');
    const last = maintenance.status().recent[0];
    assert.equal(last?.result, 'captured', last?.message ?? '');
    assert.equal(last?.message, 'model nightly-2026-11-28-0300 captured and activated');

    // the library holds the new model, named by the pattern, and it is the model in force
    const captured = (await library.list()).find((m) => m.record.name === 'nightly-2026-11-28-0300');
    assert.ok(captured, `the library has the captured model: ${(await library.list()).map((m) => m.record.name).join(', ')}`);
    assert.notEqual(captured.record.id, before.id);
    assert.equal(engine.modelEntry.record.id, captured.record.id, 'the engine runs on the captured model');
    assert.equal(engine.log.info.modelId, captured.record.id, 'the write log names it');
    assert.equal(await library.activeModelId(), captured.record.id);
    const status = service.status();
    assert.equal(status.model.name, 'nightly-2026-11-28-0300');
    assert.equal(status.model.pendingActivation, null, 'no activation pending');
    assert.equal(switcher.pendingModelId, null);
    assert.equal(engine.log.pendingCount, 0, 'nothing to restore: the captured model is what the disk reads');
    assert.equal(status.mode, 'frozen', 'frozen again after the capture');
    const image = readFileSync(captured.imagePath);
    assert.deepEqual(image.subarray(updateAt, updateAt + update.length), update, "the model's image holds the host's writes");

    // a frozen session: a stray write is thrown away at the session end, the captured bytes stay
    await engine.pd.write(0, Buffer.alloc(REGION, 0xee));
    await engine.pd.flush();
    await service.endSession('api');
    await waitFor('the restore after the session end', () => engine.log.pendingCount === 0);
    assert.deepEqual(await engine.pd.read(updateAt, update.length), update, 'the captured bytes survive the session end');
    assert.deepEqual(await engine.pd.read(0, REGION), modelBytes.subarray(0, REGION), 'the stray write was restored from the model');
    assert.deepEqual(readFileSync(join(dir, 'disk.img')).subarray(updateAt, updateAt + update.length), update, 'the working disk file holds them too');

    // the audit log and the session history name the steps
    await waitFor('the outcome in the audit log', () => store.listAudit({ limit: 200 }).some((e) => e.action === 'maintenance.window.captured'));
    const actions = store.listAudit({ limit: 200 }).map((e) => e.action);
    for (const a of ['maintenance.window.start', 'maintenance.window.thawing', 'maintenance.window.powering-on', 'maintenance.window.running', 'maintenance.window.shutting-down', 'maintenance.window.capturing', 'maintenance.window.captured']) {
      assert.ok(actions.includes(a), `audit has ${a}: ${actions.join(', ')}`);
    }
    const history = service
      .sessions()
      .flatMap((s) => s.events.map((e) => e.what))
      .join('\n');
    for (const what of [/maintenance window nightly: thawed/, /maintenance window nightly: power button pressed\n/, /maintenance window nightly: capturing model nightly-2026-11-28-0300/, /maintenance window nightly: captured/]) {
      assert.match(history, what);
    }
  });
});
