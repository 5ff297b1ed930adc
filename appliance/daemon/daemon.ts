/**
 * The daemon (`snapback serve`): a controller that starts its components in order and stops
 * them in reverse (zigbee2mqtt's model):
 *   storage engine (state directory locked) → state store → sessions (starting the daemon
 *   ends the previous host session) → NBD server → HTTP/control API → USB gadget → GPIO.
 * SIGTERM/SIGINT drain in-flight requests, flush and exit 0; READY and a watchdog go to
 * systemd when it runs the daemon.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Component } from '../component.js';
import { SdNotify } from './sd-notify.js';
import { openEngine, type Engine } from '../storage/engine.js';
import { StateDir } from '../storage/state-dir.js';
import { StateStore } from '../state/state-store.js';
import { SessionManager } from '../session/session-manager.js';
import { NbdServer } from '../nbd/server.js';
import { HttpComponent } from '../http/http-component.js';
import { GadgetComponent, gadgetAvailable, readGadgetSettings } from '../gadget/gadget-component.js';
import { GpioComponent } from '../gpio/gpio-component.js';
import { GpioSettingsSchema, type GpioSettingsInput } from '../gpio/gpio-settings.js';
import { gpioRoutes } from '../http/routes/gpio-routes.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('daemon');

export interface ServeOptions {
  stateDir: string;
  nbdSocket?: string;
  nbdListen?: { host: string; port: number };
  httpListen: { host: string; port: number };
  gadget: 'auto' | 'on' | 'off';
  gpio: 'auto' | 'on' | 'off';
  endSessionOnStart?: boolean;
  configfsRoot?: string;
  sysRoot?: string;
}

export interface DaemonAddresses {
  nbdSocket: string;
  nbdTcp: { host: string; port: number } | null;
  http: { host: string; port: number };
  controlSocket: string;
}

export class Daemon {
  private readonly components: Component[] = [];
  private readonly started: Component[] = [];
  private stopping: Promise<void> | null = null;
  private readonly notify = new SdNotify();
  engine: Engine | null = null;
  sessions: SessionManager | null = null;
  addresses: DaemonAddresses | null = null;

  constructor(private readonly opts: ServeOptions) {}

  async start(): Promise<DaemonAddresses> {
    const state = new StateDir(this.opts.stateDir);
    state.readConfig(); // a clear error before anything is locked
    const nbdSocket = this.opts.nbdSocket ?? state.nbdSocket;
    let unlock: (() => void) | null = null;
    let store: StateStore | null = null;
    const addresses: DaemonAddresses = { nbdSocket, nbdTcp: null, http: this.opts.httpListen, controlSocket: state.controlSocket };

    this.components.push({
      name: 'storage',
      start: async () => {
        unlock = state.lock();
        try {
          this.engine = await openEngine(state.path);
        } catch (err) {
          unlock();
          unlock = null;
          throw err;
        }
        if (this.engine.adoptedForeignModel) log.warn('the write log belonged to another model: every region is pending');
        if (this.engine.headerWarning) log.warn({ problem: this.engine.headerWarning }, 'a write-log header slot was damaged; the other was used');
      },
      stop: async () => {
        await this.engine?.close();
        unlock?.();
        unlock = null;
      },
    });
    this.components.push({
      name: 'state',
      start: async () => {
        store = await StateStore.open(state.path);
      },
      stop: async () => {
        await store?.close();
      },
    });
    this.components.push({
      name: 'sessions',
      start: async () => {
        this.sessions = new SessionManager(this.engine!, store!);
        await this.sessions.start({ endSessionOnStart: this.opts.endSessionOnStart ?? true });
      },
      stop: async () => {
        await this.sessions?.stop();
      },
    });
    let nbd: NbdServer | null = null;
    this.components.push({
      name: 'nbd',
      start: async () => {
        nbd = new NbdServer({ device: this.engine!.pd, exportName: 'snapback', description: `Snapback: ${this.engine!.model.manifest.json.name}` });
        const update = () => this.sessions?.setNbdClients(nbd?.clientCount ?? 0);
        nbd.on('connect', update);
        nbd.on('disconnect', update);
        nbd.on('error', (err: unknown) => log.error({ err }, 'NBD server error'));
        await nbd.listenUnix(nbdSocket);
        if (this.opts.nbdListen) addresses.nbdTcp = await nbd.listenTcp(this.opts.nbdListen.host, this.opts.nbdListen.port);
      },
      stop: async () => {
        await nbd?.close();
        await this.engine?.pd.flush().catch(() => undefined);
      },
    });
    let gpio: GpioComponent | null = null; // constructed with the HTTP component, once sessions exist
    let http: HttpComponent | null = null;
    this.components.push({
      name: 'http',
      start: async () => {
        if (this.opts.gpio !== 'off') {
          gpio = new GpioComponent(this.sessions!, readGpioSettings(state.path), { sysfsRoot: this.opts.sysRoot, audit: (e) => void store!.audit(e).catch(() => undefined) });
        }
        http = new HttpComponent({
          service: this.sessions!,
          store: store!,
          listen: this.opts.httpListen,
          controlSocket: state.controlSocket,
          extraRoutes: gpio ? [(api) => gpioRoutes(api, gpio!)] : [],
        });
        await http.start();
        const a = http.address();
        addresses.http = { host: a.host, port: a.port };
      },
      stop: async () => {
        await http?.stop();
      },
    });
    if (this.opts.gadget !== 'off') {
      const avail = gadgetAvailable(this.opts.configfsRoot, this.opts.sysRoot);
      if (!avail.available && this.opts.gadget === 'on') throw new SnapbackError('NOT_SUPPORTED', `--gadget on, but the USB gadget cannot run here: ${avail.reason}`);
      if (avail.available) {
        let gadget: GadgetComponent | null = null;
        this.components.push({
          name: 'gadget',
          start: async () => {
            gadget = new GadgetComponent(this.sessions!, readGadgetSettings(state.path), { nbdSocket, configfsRoot: this.opts.configfsRoot, sysRoot: this.opts.sysRoot });
            await gadget.start();
          },
          stop: async () => {
            await gadget?.stop();
          },
        });
      } else {
        log.info({ reason: avail.reason }, 'USB gadget off (auto): serving NBD only');
      }
    }
    this.components.push({
      name: 'gpio',
      start: async () => {
        await gpio?.start();
      },
      stop: async () => {
        await gpio?.stop();
      },
    });

    try {
      for (const c of this.components) {
        await c.start();
        this.started.push(c);
        log.debug({ component: c.name }, 'started');
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.addresses = addresses;
    await this.notify.ready(`serving ${nbdSocket}`);
    return addresses;
  }

  /** Stops every started component in reverse order. Idempotent. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      await this.notify.stopping();
      for (const c of [...this.started].reverse()) {
        try {
          await c.stop();
        } catch (err) {
          log.error({ err, component: c.name }, 'component failed to stop cleanly');
        }
      }
      this.started.length = 0;
    })();
    return this.stopping;
  }
}

/**
 * GPIO wiring and timings: DIR/gpio.json when present (validated; see docs/gpio.md), else the
 * defaults. A bad file stops the daemon with a clear message rather than driving wrong pins.
 */
export function readGpioSettings(stateDir: string): GpioSettingsInput {
  const path = join(stateDir, 'gpio.json');
  if (!existsSync(path)) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new SnapbackError('BAD_ARGUMENT', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  const r = GpioSettingsSchema.safeParse(raw);
  if (!r.success) throw new SnapbackError('BAD_ARGUMENT', `${path}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return r.data;
}
