/**
 * GadgetComponent against SimulatedConfigfs, a fake sysfs (UDC state file, nbd devices), a
 * simulated nbd-client/modprobe/blockdev and a small session service. Time is a fake clock:
 * the tests read the UDC state file when they choose (readHostState) and advance time for the
 * policy and the watchdog, so nothing depends on how fast this machine is. The same code runs
 * on a real kernel in test/integration/gadget-vm.test.ts.
 */
import { strict as assert } from 'node:assert';
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { isSnapbackError } from '../../appliance/errors.js';
import type { CommandRunner } from '../../appliance/gadget/commands.js';
import { GadgetBuilder } from '../../appliance/gadget/gadget-builder.js';
import { GadgetComponent } from '../../appliance/gadget/gadget-component.js';
import { gadgetAvailable } from '../../appliance/gadget/gadget-probe.js';
import { readGadgetSettings, type GadgetSettingsInput } from '../../appliance/gadget/gadget-settings.js';
import { resolveGadgetDescription } from '../../appliance/gadget/gadget-config.js';
import { SimulatedConfigfs } from '../../appliance/gadget/simulated-configfs.js';
import type { ApplianceService, GadgetStatus, HostConnectionState, SessionEndParticipant } from '../../appliance/session/appliance-service.js';
import { FakeClock } from '../helpers/fake-clock.js';

/** A session service that does what the session manager does around participants. */
class FakeService extends EventEmitter {
  events: string[] = [];
  connections: { state: HostConnectionState; gadget: GadgetStatus | null | undefined }[] = [];
  participants: SessionEndParticipant[] = [];
  ends: { reason: string; note?: string }[] = [];
  /** The session end under way (a gadget asks for one without waiting for it). */
  ending: Promise<unknown> = Promise.resolve();
  session = 1;
  nbdClients = 1;
  /** Called between quiesce and resume (the restore). */
  during: () => void = () => undefined;

  status() {
    return { host: { nbdClients: this.nbdClients } };
  }
  recordHostEvent(what: string): void {
    this.events.push(what);
  }
  setHostConnection(state: HostConnectionState, gadget?: GadgetStatus | null): void {
    this.connections.push({ state, gadget });
  }
  addSessionEndParticipant(p: SessionEndParticipant): void {
    this.participants.push(p);
  }
  endSession(reason: string, note?: string): Promise<{ number: number }> {
    const p = this.doEnd(reason, note);
    this.ending = p.catch(() => undefined);
    return p;
  }
  private async doEnd(reason: string, note?: string) {
    const done: SessionEndParticipant[] = [];
    try {
      for (const p of this.participants) {
        await p.quiesce();
        done.push(p);
      }
      this.during();
      this.ends.push({ reason, note });
      this.session++;
    } finally {
      for (const p of done.reverse()) await p.resume();
    }
    return { number: this.session - 1 };
  }
}

describe('gadget: GadgetComponent (simulated configfs and tools)', function () {
  let tmp: string;
  let cfg: string;
  let sys: string;
  let socket: string;
  let sim: SimulatedConfigfs;
  let svc: FakeService;
  /** Everything the tools and configfs did, in order. */
  let log: string[];
  let components: GadgetComponent[];
  let clock: FakeClock;
  const statePath = () => path.join(sys, 'class', 'udc', 'dummy_udc.0', 'state');
  /**
   * The host puts the UDC in state `s`. Written whole at once, as sysfs shows an attribute: a
   * plain rewrite truncates first, and a read the file watcher starts in between sees no state.
   */
  const setState = (s: string) => {
    writeFileSync(`${statePath()}.new`, `${s}\n`);
    renameSync(`${statePath()}.new`, statePath());
  };
  const G = (...p: string[]) => path.join(cfg, 'usb_gadget', 'snapback', ...p);
  const attr = (...p: string[]) => readFileSync(G(...p), 'utf8').trim();
  const connected = (n: string) => existsSync(path.join(sys, 'block', n, 'pid'));

  const run: CommandRunner = async (cmd, args) => {
    log.push(`${cmd} ${args.join(' ')}`);
    if (cmd === 'modprobe') {
      mkdirSync(path.join(sys, 'module', args[0]!), { recursive: true });
      return { code: 0, stdout: '', stderr: '' };
    }
    if (cmd === 'nbd-client' && args[0] === '-u') {
      const dev = path.basename(args[2]!);
      if (!existsSync(args[1]!)) return { code: 1, stdout: '', stderr: 'Socket failed: No such file' };
      if (connected(dev)) return { code: 1, stdout: '', stderr: 'Error: Device or resource busy' };
      writeFileSync(path.join(sys, 'block', dev, 'pid'), '4242\n');
      writeFileSync(path.join(sys, 'block', dev, 'size'), '32768\n');
      return { code: 0, stdout: `Connected /dev/${dev}\n`, stderr: '' };
    }
    if (cmd === 'nbd-client' && args[0] === '-d') {
      const dev = path.basename(args[1]!);
      rmSync(path.join(sys, 'block', dev, 'pid'), { force: true });
      writeFileSync(path.join(sys, 'block', dev, 'size'), '0\n');
      return { code: 0, stdout: '', stderr: '' };
    }
    if (cmd === 'blockdev' || cmd === 'mount') return { code: 0, stdout: '', stderr: '' };
    return { code: 127, stdout: '', stderr: `${cmd}: not found` };
  };

  const make = (settings: GadgetSettingsInput = {}, runner: CommandRunner = run): GadgetComponent => {
    const c = new GadgetComponent(
      svc as unknown as ApplianceService,
      { runtimeDir: path.join(tmp, 'run'), policy: { pollIntervalMs: 10 }, ...settings, watchdog: { intervalMs: 100, ...settings.watchdog } },
      { configfsRoot: cfg, sysRoot: sys, nbdSocket: socket, run: runner, gadgetFs: sim, clock },
    );
    components.push(c);
    return c;
  };

  beforeEach(async function () {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'gadget-component-'));
    cfg = path.join(tmp, 'config');
    sys = path.join(tmp, 'sys');
    mkdirSync(path.join(sys, 'class', 'udc', 'dummy_udc.0'), { recursive: true });
    setState('not attached');
    for (let i = 0; i < 4; i++) {
      mkdirSync(path.join(sys, 'block', `nbd${i}`), { recursive: true });
      writeFileSync(path.join(sys, 'block', `nbd${i}`, 'size'), '0\n');
    }
    socket = path.join(tmp, 'nbd.sock');
    writeFileSync(socket, '');
    log = [];
    sim = await SimulatedConfigfs.create({ root: cfg, sysRoot: sys, onUdc: (g, udc) => log.push(`UDC ${g}=${udc}`) });
    const origWrite = sim.writeAttr.bind(sim);
    sim.writeAttr = async (p, v) => {
      log.push(`write ${path.relative(cfg, p)}=${v}`);
      return origWrite(p, v);
    };
    svc = new FakeService();
    components = [];
    clock = new FakeClock();
  });

  afterEach(async function () {
    for (const c of components) await c.stop().catch(() => undefined);
    rmSync(tmp, { recursive: true, force: true });
  });

  /** The host puts the UDC in state `s`; the gadget reads it and acts on it (a session end included). */
  const host = async (g: GadgetComponent, s: string): Promise<void> => {
    setState(s);
    await g.readHostState();
    assert.equal(g.status().udcState, s);
    await settled(g);
  };

  /**
   * Everything the gadget started is done: a session end it asked for, and its queue. Repeated
   * until no new session end began meanwhile (one its queue asked for while this waited).
   */
  const settled = async (g: GadgetComponent): Promise<void> => {
    for (;;) {
      await tick();
      const ending = svc.ending;
      await ending;
      await g.idle();
      if (svc.ending === ending) return;
    }
  };

  /** The host enumerates the freshly bound gadget, each state seen by the watcher. */
  const hostEnumerates = async (g: GadgetComponent): Promise<void> => {
    for (const s of ['not attached', 'default', 'configured']) await host(g, s);
  };

  /**
   * Advances the fake clock in steps of `stepMs` until `cond` holds (at most `maxMs`), letting
   * the gadget's file I/O (real files) finish after each step.
   */
  const advanceUntil = async (g: GadgetComponent, what: string, cond: () => boolean, stepMs: number, maxMs = 60_000): Promise<void> => {
    for (let t = 0; !cond(); t += stepMs) {
      if (t > maxMs) throw new Error(`${what}: not after ${maxMs} ms of fake time`);
      await clock.advance(stepMs);
      // The queue may be waiting on the fake clock itself (the watchdog pauses between unbind
      // and bind), so wait for it only as long as real file I/O takes, then advance again.
      await tick();
      await Promise.race([Promise.all([svc.ending, g.idle()]), new Promise((r) => setTimeout(r, 20))]);
    }
  };

  it('start: modules, a free nbd device attached and flushed, the gadget built, medium in, UDC bound', async function () {
    writeFileSync(path.join(sys, 'block', 'nbd0', 'pid'), '1\n'); // nbd0 is someone else's
    const g = make();
    await g.start();
    assert.ok(['libcomposite', 'usb_f_mass_storage', 'nbd'].every((m) => log.includes(`modprobe ${m}`)));
    assert.ok(log.includes(`nbd-client -u ${socket} /dev/nbd1 -b 512`), log.join('\n'));
    assert.ok(log.indexOf('blockdev --flushbufs /dev/nbd1') > log.indexOf(`nbd-client -u ${socket} /dev/nbd1 -b 512`));
    assert.equal(attr('functions', 'mass_storage.0', 'lun.0', 'file'), '/dev/nbd1');
    assert.equal(attr('UDC'), 'dummy_udc.0');
    assert.match(attr('strings', '0x409', 'serialnumber'), /^[0-9A-F]{16}$/);
    assert.ok(log.indexOf('write usb_gadget/snapback/functions/mass_storage.0/lun.0/file=/dev/nbd1') < log.indexOf('write usb_gadget/snapback/UDC=dummy_udc.0'));
    await g.readHostState();
    assert.deepEqual(g.status(), { enabled: true, udc: 'dummy_udc.0', udcState: 'not attached', bound: true, nbdDevice: '/dev/nbd1', medium: 'inserted', lastError: null });
    assert.equal(svc.participants.length, 1);
    assert.ok(svc.events.some((e) => e.startsWith('gadget: bound to dummy_udc.0')));
    assert.ok(svc.connections.some((c) => c.gadget?.bound === true));
    const rec = JSON.parse(readFileSync(path.join(tmp, 'run', 'gadget-snapback.json'), 'utf8')) as { nbdDevice: string };
    assert.equal(rec.nbdDevice, 'nbd1');
  });

  it('start and stop are idempotent; stop reverses every step', async function () {
    const g = make();
    await g.start();
    await g.start();
    assert.equal(log.filter((l) => l.startsWith('nbd-client -u')).length, 1);
    assert.equal(svc.participants.length, 1);
    await g.stop();
    await g.stop();
    assert.ok(!existsSync(G()));
    assert.ok(!connected('nbd0'));
    assert.ok(!existsSync(path.join(tmp, 'run', 'gadget-snapback.json')));
    assert.equal(g.status().enabled, false);
    assert.equal(svc.connections.at(-1)?.state, 'absent');
    // ...and it can start again.
    await g.start();
    assert.equal(attr('UDC'), 'dummy_udc.0');
    assert.equal(svc.participants.length, 1);
  });

  it('uses busybox where a tool is missing (no kmod on a minimal system)', async function () {
    const g = make({}, async (cmd, args) => {
      if (cmd === 'modprobe' || cmd === 'blockdev') {
        log.push(`missing ${cmd}`);
        return { code: 127, stdout: '', stderr: '' };
      }
      if (cmd === 'busybox') return run(args[0]!, args.slice(1));
      return run(cmd, args);
    });
    await g.start();
    assert.ok(log.includes('missing modprobe') && log.includes('modprobe libcomposite'));
    assert.ok(log.includes('missing blockdev') && log.includes('blockdev --flushbufs /dev/nbd0'));
  });

  it('cleans up a gadget and nbd device a crashed run left, nbd first, at any point of a build', async function () {
    const b = new GadgetBuilder(sim, cfg);
    const desc = resolveGadgetDescription('default');
    const crashes: (() => Promise<void>)[] = [
      async () => {
        sim.failNext('mkdir', /configs\/c\.1$/);
        await b.create(desc, 'S').catch(() => undefined);
      },
      async () => {
        await b.create(desc, 'S');
      },
      async () => {
        await run('nbd-client', ['-u', socket, '/dev/nbd2', '-b', '512']);
        mkdirSync(path.join(tmp, 'run'), { recursive: true });
        writeFileSync(path.join(tmp, 'run', 'gadget-snapback.json'), JSON.stringify({ gadget: 'snapback', udc: 'dummy_udc.0', nbdDevice: 'nbd2' }));
      },
      async () => {
        await run('nbd-client', ['-u', socket, '/dev/nbd2', '-b', '512']);
        await b.create(desc, 'S');
        await b.insertMedium('snapback', '/dev/nbd2');
        await b.bind('snapback', 'dummy_udc.0');
        await sim.setMediumLocked(G('functions', 'mass_storage.0', 'lun.0'), true);
      },
    ];
    for (const [i, crash] of crashes.entries()) {
      await crash();
      log = [];
      const g = make();
      await g.start();
      assert.equal(attr('UDC'), 'dummy_udc.0', `crash ${i}`);
      assert.equal(attr('functions', 'mass_storage.0', 'lun.0', 'file'), g.status().nbdDevice, `crash ${i}`);
      assert.ok(svc.events.some((e) => e.includes('cleaning up what an earlier run left')), `crash ${i}`);
      if (i >= 2) {
        const detach = log.indexOf('nbd-client -d /dev/nbd2');
        assert.ok(detach >= 0, `crash ${i}: nbd2 not disconnected\n${log.join('\n')}`);
        if (i === 3) assert.ok(detach < log.indexOf('write usb_gadget/snapback/UDC='), `crash ${i}: nbd must go before the unbind`);
        assert.ok(!log.includes('blockdev --flushbufs /dev/nbd2'), 'a dead server cannot take a flush');
      }
      await g.stop();
      svc.events = [];
    }
  });

  it('a failed start leaves nothing behind and says why', async function () {
    sim.failNext('symlink', /mass_storage\.0$/);
    const g = make();
    await assert.rejects(g.start(), /starting the USB gadget|injected/);
    assert.ok(!existsSync(G()));
    assert.ok(!connected('nbd0'));
    assert.match(g.status().lastError ?? '', /injected/);
    rmSync(path.join(sys, 'class', 'udc', 'dummy_udc.0'), { recursive: true });
    const h = make();
    await assert.rejects(h.start(), (e: unknown) => isSnapbackError(e, 'NOT_SUPPORTED') && /no USB device controller/.test((e as Error).message));
  });

  it('session end: eject, flush, disconnect nbd; then a fresh attachment and the medium back in', async function () {
    const g = make();
    await g.start();
    let during: { file: string; nbd0: boolean; udc: string } | null = null;
    svc.during = () => {
      during = { file: attr('functions', 'mass_storage.0', 'lun.0', 'file'), nbd0: connected('nbd0'), udc: attr('UDC') };
    };
    log = [];
    await svc.endSession('api');
    assert.deepEqual(during, { file: '', nbd0: false, udc: 'dummy_udc.0' }, 'an API end only ejects (the host stays on the bus)');
    const i = (s: string) => log.findIndex((l) => l.startsWith(s));
    assert.ok(i('write usb_gadget/snapback/functions/mass_storage.0/lun.0/forced_eject=1') >= 0);
    assert.ok(i('write usb_gadget/snapback/functions/mass_storage.0/lun.0/forced_eject=1') < i('blockdev --flushbufs /dev/nbd0'));
    assert.ok(i('blockdev --flushbufs /dev/nbd0') < i('nbd-client -d /dev/nbd0'));
    assert.ok(i('nbd-client -d /dev/nbd0') < i(`nbd-client -u ${socket}`));
    assert.ok(i(`nbd-client -u ${socket}`) < i('write usb_gadget/snapback/functions/mass_storage.0/lun.0/file=/dev/'));
    assert.equal(attr('functions', 'mass_storage.0', 'lun.0', 'file'), g.status().nbdDevice);
    assert.equal(g.status().medium, 'inserted');
  });

  it('the UDC state file: transitions recorded; a re-enumeration ends the session, off the bus until the medium is back', async function () {
    const g = make();
    await g.start();
    let during: { file: string; udc: string } | null = null;
    svc.during = () => {
      during = { file: attr('functions', 'mass_storage.0', 'lun.0', 'file'), udc: attr('UDC') };
    };
    await hostEnumerates(g);
    assert.equal(svc.ends.length, 0, 'the first enumeration after our own bind ends nothing');
    assert.equal(svc.connections.at(-1)?.state, 'configured');
    await clock.advance(50);
    await host(g, 'default');
    assert.equal(svc.ends.length, 1);
    assert.equal(svc.ends[0]!.reason, 'usb-reconnect');
    assert.match(svc.ends[0]!.note ?? '', /re-enumerated/);
    assert.deepEqual(during, { file: '', udc: '' });
    assert.ok(g.status().bound && g.status().medium === 'inserted', 'the gadget is back on the bus once the end is done');
    assert.equal(attr('UDC'), 'dummy_udc.0');
    await host(g, 'configured');
    assert.equal(svc.ends.length, 1, 'the enumeration after our own reconnect is not another end');
    for (const e of ['usb: (start) → not attached', 'usb: not attached → default', 'usb: default → configured', 'usb: configured → default']) {
      assert.ok(svc.events.includes(e), `missing event ${e} in ${JSON.stringify(svc.events)}`);
    }
  });

  it('a host that sleeps and wakes keeps its session; a long disconnect ends it', async function () {
    const g = make({ policy: { pollIntervalMs: 1000, disconnectMinMs: 100 } });
    await g.start();
    await hostEnumerates(g);
    await clock.advance(50);
    await host(g, 'suspended');
    assert.equal(svc.connections.at(-1)?.state, 'suspended');
    await clock.advance(60_000); // a long sleep
    await host(g, 'configured');
    await clock.advance(200);
    await g.readHostState();
    await settled(g);
    assert.equal(svc.ends.length, 0, 'sleeping and waking kept the session');
    await host(g, 'not attached');
    assert.equal(svc.ends.length, 0, 'not yet: a bus reset also passes through "not attached"');
    await clock.advance(100);
    await g.readHostState();
    await settled(g);
    assert.equal(svc.ends.length, 1, 'not attached for disconnectMinMs: the host went away');
    assert.match(svc.ends[0]!.note ?? '', /disconnected/);
  });

  it('watchdog: a host stuck enumerating gets the gadget rebound (recorded, no session end)', async function () {
    const g = make({ watchdog: { intervalMs: 50, stuckEnumerationSeconds: 1 } });
    await g.start();
    await hostEnumerates(g);
    svc.ends = [];
    // The host's reset ends the session (a re-enumeration); then the host never configures us.
    await host(g, 'default');
    assert.equal(svc.ends.length, 1);
    assert.ok(g.status().bound && g.status().medium === 'inserted', 'back on the bus after the end');
    log = [];
    await clock.advance(500);
    await settled(g);
    assert.ok(!svc.events.some((e) => e.startsWith('gadget-watchdog:')), 'not stuck yet after 0.5 s');
    await advanceUntil(g, 'the watchdog rebind', () => log.includes('UDC snapback=dummy_udc.0'), 50);
    assert.ok(svc.events.some((e) => e.startsWith('gadget-watchdog: host stuck in "default"')), JSON.stringify(svc.events));
    assert.ok(log.indexOf('UDC snapback=') >= 0 && log.indexOf('UDC snapback=') < log.lastIndexOf('UDC snapback=dummy_udc.0'), 'unbind, then bind');
    await host(g, 'configured');
    assert.equal(svc.ends.length, 1, 'the watchdog\'s own re-enumeration is not a session end');
  });

  it('watchdog: the NBD connection lost (no clients) → a fresh nbd device under the medium', async function () {
    const g = make({ watchdog: { intervalMs: 30 } });
    await g.start();
    assert.equal(g.status().nbdDevice, '/dev/nbd0');
    svc.nbdClients = 0;
    await clock.advance(30);
    await settled(g);
    assert.ok(!svc.events.some((e) => e.includes('lost its NBD connection')), 'one check without clients is not enough');
    await advanceUntil(g, 'the reattach', () => svc.events.some((e) => e.includes('lost its NBD connection')), 30);
    svc.nbdClients = 1;
    const detach = log.indexOf('nbd-client -d /dev/nbd0');
    assert.ok(detach >= 0);
    assert.ok(log.findIndex((l, i) => i > detach && l.startsWith(`nbd-client -u ${socket}`)) > detach, 'attached again after the disconnect');
    assert.equal(attr('functions', 'mass_storage.0', 'lun.0', 'file'), g.status().nbdDevice);
    assert.equal(g.status().medium, 'inserted');
    assert.notEqual(log[detach - 1], 'blockdev --flushbufs /dev/nbd0', 'no flush towards a dead connection (it would block)');
  });

  it('watchdog: a gadget unbound behind its back is bound again', async function () {
    const g = make({ watchdog: { intervalMs: 30 } });
    await g.start();
    await sim.writeAttr(G('UDC'), '');
    await advanceUntil(g, 'the rebind', () => attr('UDC') === 'dummy_udc.0', 30);
    assert.ok(svc.events.some((e) => e.includes('gadget-watchdog: gadget was unbound')));
    assert.equal(svc.ends.length, 0);
  });

  it('a failed quiesce stops the session end and the watchdog brings the medium back', async function () {
    const g = make({ watchdog: { intervalMs: 30 } });
    await g.start();
    sim.failNext('writeAttr', /forced_eject$/);
    await assert.rejects(svc.endSession('api'), /ejecting the medium/);
    assert.equal(svc.ends.length, 0);
    assert.match(g.status().lastError ?? '', /ejecting the medium/);
    await advanceUntil(g, 'the medium back', () => g.status().medium === 'inserted' && g.status().lastError === null, 30);
  });

  it('refuses bad settings and unknown profiles with BAD_ARGUMENT', function () {
    assert.throws(() => make({ profile: 'nope' }), (e: unknown) => isSnapbackError(e, 'BAD_ARGUMENT'));
    assert.throws(() => make({ nbdDevice: '/dev/nbd0' }), (e: unknown) => isSnapbackError(e, 'BAD_ARGUMENT') && /nbdDevice/.test((e as Error).message));
    assert.throws(() => make({ policy: { pollIntervalMs: 1 } }), /policy\.pollIntervalMs/);
    assert.throws(() => make({ overrides: { massStorage: { nofua: true } } }), /nofua/);
  });

  it('readGadgetSettings: DIR/gadget.json validated, defaults without it', function () {
    assert.equal(readGadgetSettings(tmp).profile, 'default');
    writeFileSync(path.join(tmp, 'gadget.json'), JSON.stringify({ profile: 'picky-bios', policy: { endOnResetAfterSuspendSeconds: 600 } }));
    const s = readGadgetSettings(tmp);
    assert.equal(s.profile, 'picky-bios');
    assert.equal(s.policy.endOnResetAfterSuspendSeconds, 600);
    assert.equal(s.policy.endOnDisconnect, true);
    writeFileSync(path.join(tmp, 'gadget.json'), JSON.stringify({ policy: { endOnDisconect: false } }));
    assert.throws(() => readGadgetSettings(tmp), /gadget\.json: policy: Unrecognized key/);
    writeFileSync(path.join(tmp, 'gadget.json'), '{');
    assert.throws(() => readGadgetSettings(tmp), /not valid JSON/);
  });

  it('gadgetAvailable: needs a UDC, configfs (or libcomposite) and nbd', function () {
    const bare = path.join(tmp, 'bare-sys');
    mkdirSync(bare);
    const no = gadgetAvailable(path.join(tmp, 'no-configfs'), bare);
    assert.equal(no.available, false);
    assert.match(no.reason ?? '', /no USB device controller.*dwc2/);
    const yes = gadgetAvailable(cfg, sys);
    assert.equal(yes.available, true, yes.reason);
  });
});
