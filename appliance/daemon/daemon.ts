/**
 * The daemon (`snapback serve`): a controller of components (zigbee2mqtt's model). It checks
 * everything it can before it writes anything (preflight.ts), then constructs and starts its
 * components in order, and stops them in reverse:
 *
 *   storage (state directory locked, engine open) → nbd (listening) → state (state store)
 *   → sessions (ends the previous host session, starts the background restore) → http (web UI,
 *   API, control socket) → gadget (the USB drive) → gpio (button, LED, host power) → maintenance
 *   (scheduled maintenance windows, thawed boots) → management (the link to a fleet console over
 *   MQTT).
 *
 * Essential components serve the host's disk: storage, nbd, state, sessions, and the gadget
 * when it runs. One of them failing to start stops the daemon with its error. Optional ones
 * (http, gpio, maintenance, management) that fail are reported in the status (`components`), the log and on the LED,
 * and the disk is served all the same: the daemon never exits because of them.
 *
 * SIGTERM/SIGINT drain in-flight requests, flush and exit 0; READY and a watchdog go to
 * systemd when it runs the daemon.
 */
import type { Component } from '../component.js';
import { SdNotify } from './sd-notify.js';
import { preflight } from './preflight.js';
import { StorageComponent } from './storage-component.js';
import { NbdComponent } from './nbd-component.js';
import { StateComponent } from './state-component.js';
import { SessionsComponent } from './sessions-component.js';
import { consumeFirstBootPassword, DEFAULT_FIRST_BOOT_PASSWORD_FILE } from './first-boot-password.js';
import type { Engine } from '../storage/engine.js';
import type { SessionManager } from '../session/session-manager.js';
import type { ComponentHealth } from '../session/appliance-service.js';
import { HttpComponent } from '../http/http-component.js';
import { GadgetComponent } from '../gadget/gadget-component.js';
import { GpioComponent } from '../gpio/gpio-component.js';
import { ManagementComponent, type ManagementCommandLine } from '../management/management-component.js';
import { modelAssigner } from '../management/model-assignment.js';
import { readPartitionTable } from '../storage/partition-table.js';
import { ModelDownloads } from '../session/model-downloads.js';
import { ModelService } from '../session/model-service.js';
import { ModelLibrary } from '../storage/model-library.js';
import type { ModelDownload } from '../api/models.js';
import type { NbdTlsFiles } from '../nbd/tls-config.js';
import { childLogger } from '../logger.js';
import { MaintenanceComponent } from '../maintenance/maintenance-component.js';
import { gpioHostPower } from './maintenance-power.js';
import { daemonRoutes } from './daemon-routes.js';
import { systemClock } from '../clock.js';
import { announceBlake3 } from '../storage/blake3.js';

const log = childLogger('daemon');

export interface ServeOptions {
  stateDir: string;
  nbdSocket?: string;
  nbdListen?: { host: string; port: number };
  /** Group (gid) that may use the NBD socket besides root (0660); default: root only (0600). */
  nbdSocketGid?: number;
  /** TLS for the --nbd-listen listener, which then requires it (NBD_OPT_STARTTLS). */
  nbdTls?: NbdTlsFiles;
  /** Allows --nbd-listen on a non-loopback address without TLS. */
  nbdInsecure?: boolean;
  httpListen: { host: string; port: number };
  /** Further names the web UI answers to in the Host header (DNS rebinding defence). */
  httpHostNames?: string[];
  gadget: 'auto' | 'on' | 'off';
  gpio: 'auto' | 'on' | 'off';
  endSessionOnStart?: boolean;
  configfsRoot?: string;
  sysRoot?: string;
  /**
   * A file holding the administrator password, put on the boot partition when the card was
   * flashed; consumed (set, then deleted) at start. Default /boot/firmware/snapback-password;
   * null: none.
   */
  firstBootPasswordFile?: string | null;
  /** `--management URL …`: the fleet link's settings, saved over DIR/management.json at start. */
  management?: ManagementCommandLine | null;
}

export interface DaemonAddresses {
  nbdSocket: string;
  nbdTcp: { host: string; port: number } | null;
  /** null: the web listener is not running (see the status's components for why). */
  http: { host: string; port: number } | null;
  controlSocket: string;
}

export class Daemon {
  private readonly started: Component[] = [];
  private readonly health = new Map<string, ComponentHealth>();
  private stopping: Promise<void> | null = null;
  private readonly notify = new SdNotify();
  engine: Engine | null = null;
  sessions: SessionManager | null = null;
  /** The model library's service (imports, rename, remove); from the start of the HTTP component. */
  models: ModelService | null = null;
  /** Models arriving from URLs (imports, lazy provisioning); from the start of the HTTP component. */
  downloads: ModelDownloads | null = null;
  addresses: DaemonAddresses | null = null;

  constructor(private readonly opts: ServeOptions) {}

  /** Every component the daemon has, in start order, with its health. */
  components(): ComponentHealth[] {
    // a model download's stall is live: it comes and goes while the daemon runs
    return [...this.health.values()].map((h) => (h.name === 'model-download' && h.state === 'running' && this.downloads ? { ...h, problem: this.downloads.problem() } : { ...h }));
  }

  async start(): Promise<DaemonAddresses> {
    const o = this.opts;
    // Nothing is written before this returns: a refusal here leaves the state directory as it was.
    const plan = await preflight(o);
    const dir = plan.state;
    announceBlake3();

    const storage = new StorageComponent(dir);
    const library = new ModelLibrary(dir);
    const sessions: SessionsComponent = new SessionsComponent({
      library,
      engine: () => storage.engine,
      store: () => state.store,
      lazyModels: () => this.downloads,
      endSessionOnStart: o.endSessionOnStart ?? true,
      components: () => this.components(),
      nbdClients: () => nbd.clientCount,
    });
    const nbd = new NbdComponent({
      engine: () => storage.engine,
      socket: plan.nbdSocket,
      socketGid: o.nbdSocketGid,
      gadgetSocket: plan.gadgetNbdSocket,
      tcp: o.nbdListen,
      tls: plan.nbdTls,
      insecure: o.nbdInsecure ?? false,
      onClientCount: (n) => sessions.setNbdClients(n),
    });
    const state = new StateComponent(dir.path);
    try {
      await this.startEssential(storage);
      this.engine = storage.engine;
      await this.startEssential(nbd);
      await this.startEssential(state);
      if (o.firstBootPasswordFile !== null) await consumeFirstBootPassword(o.firstBootPasswordFile ?? DEFAULT_FIRST_BOOT_PASSWORD_FILE, state.store);
      // made before the sessions: an activation left pending may take over a model still arriving
      const models: ModelService = new ModelService({
        library,
        activeModelId: () => storage.engine.model.id,
        pendingActivation: () => sessions.pendingModelId,
        downloadOf: (id): ModelDownload | null => downloads.downloadOf(id),
        // the active model (or a pending activation's) renamed: the status names it so at once
        onRenamed: (m) => {
          if (sessions.pendingModelId === m.record.id) {
            sessions.switcher.modelRenamed(m);
            this.sessions?.emit('status');
          }
          if (storage.engine.modelEntry.record.id !== m.record.id) return;
          storage.engine.modelEntry = m;
          this.sessions?.emit('status');
        },
      });
      this.models = models;
      const downloads: ModelDownloads = new ModelDownloads({ library, models, activeModel: () => storage.engine.model });
      this.downloads = downloads;
      downloads.on('changed', () => {
        models.emit('models');
        this.sessions?.emit('status');
      });
      await this.startEssential(sessions);
      this.sessions = sessions.manager;
      const service = sessions.manager;
      const audit = (e: { actor: string; action: string; details?: Record<string, unknown> }): void => void state.store.audit(e).catch(() => undefined);

      const switcher = sessions.switcher;
      const gpio = plan.gpio?.settings ? new GpioComponent(service, plan.gpio.settings, { sysfsRoot: o.sysRoot, audit }) : null;
      const maintenance = new MaintenanceComponent({
        service,
        settings: () => state.store.settings().maintenance,
        saveSettings: async (m) => void (await state.store.updateSettings({ maintenance: m })),
        audit: (e) => state.store.audit(e),
        power: () => (gpio?.available ? gpioHostPower(gpio) : null),
        captureAndActivate: async (name) => (await switcher.capture({ name, activate: true })).model.record.name,
        stateDir: dir.path,
        clock: systemClock,
      });
      const management: ManagementComponent = new ManagementComponent({
        service,
        stateDir: dir.path,
        audit: (e) => state.store.audit(e),
        assignModel: modelAssigner(models, switcher),
        setMaintenance: (args, actor) => maintenance.replace(args, actor),
        activeDownload: () => downloads.downloadOf(storage.engine.model.id),
        commandLine: o.management ?? null,
        onChange: () => {
          if (!this.health.has('management')) return;
          this.setManagementHealth(management);
          this.sessions?.emit('status');
        },
      });
      const http = new HttpComponent({
        service,
        store: state.store,
        listen: o.httpListen,
        hostNames: o.httpHostNames ?? [],
        controlSocket: dir.controlSocket,
        extraRoutes: daemonRoutes({
          store: state.store,
          models,
          downloads,
          switcher,
          areas: () => storage.engine.persistent,
          partitions: () => readPartitionTable(storage.engine.model),
          gpio,
          management,
          maintenance,
        }),
      });
      // the downloads before the API: a request right after the start (a download's rate, an
      // import from a URL) finds every download resumed and the URL importer registered
      await this.startOptional(downloads);
      const httpUp = await this.startOptional(http, true);

      if (plan.gadget) {
        const gadget = new GadgetComponent(service, plan.gadget.settings, { nbdSocket: plan.gadgetNbdSocket, configfsRoot: o.configfsRoot, sysRoot: o.sysRoot });
        await this.startEssential(gadget, plan.gadget.problem);
      } else {
        this.setHealth('gadget', true, 'off', plan.gadgetOffProblem);
        if (o.gadget === 'auto') log.info({ reason: plan.gadgetOffReason }, 'USB gadget off (auto): serving NBD only');
      }

      // On a machine without GPIO (or with it disabled in gpio.json) the component runs idle: off, like an absent gadget.
      if (gpio && (await this.startOptional(gpio)) && !gpio.available) this.setHealth('gpio', false, 'off', null);
      else if (plan.gpio) this.setHealth('gpio', false, 'failed', plan.gpio.problem);
      else this.setHealth('gpio', false, 'off', null);

      // Windows need the GPIO host power; without it each one is skipped and says why.
      await this.startOptional(maintenance);

      // The fleet link never holds up the disk: it connects (and reconnects) in the background.
      if (await this.startOptional(management)) this.setManagementHealth(management);

      const a = httpUp ? http.address() : null;
      this.addresses = { nbdSocket: plan.nbdSocket, nbdTcp: nbd.tcp, http: a ? { host: a.host, port: a.port } : null, controlSocket: dir.controlSocket };
    } catch (err) {
      await this.stop();
      throw err;
    }
    for (const h of this.health.values()) {
      // Logged as the part's own component (a second `component` key would make the line ambiguous JSON).
      if (h.problem !== null) childLogger(h.name).error({ state: h.state, problem: h.problem }, `${h.name}: ${h.problem}`);
    }
    this.sessions?.emit('status');
    await this.notify.ready(`serving ${plan.nbdSocket}`);
    return this.addresses;
  }

  /** Stops every started component in reverse order. Idempotent. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      await this.notify.stopping();
      // downloads first: an import the stop interrupts is kept, to resume at the next start
      await this.downloads?.stop().catch((err: unknown) => log.error({ err }, 'model downloads failed to stop cleanly'));
      await this.models?.close().catch((err: unknown) => log.error({ err }, 'model imports failed to stop cleanly'));
      for (const c of [...this.started].reverse()) {
        try {
          await c.stop();
        } catch (err) {
          childLogger(c.name).error({ err }, 'component failed to stop cleanly');
        }
      }
      this.started.length = 0;
    })();
    return this.stopping;
  }

  /** Starts a component the disk cannot be served without; its failure fails the start. */
  private async startEssential(c: Component, problem: string | null = null): Promise<void> {
    try {
      await c.start();
    } catch (err) {
      this.setHealth(c.name, true, 'failed', (err as Error).message);
      throw err;
    }
    this.started.push(c);
    this.setHealth(c.name, true, 'running', problem);
    childLogger(c.name).debug('started');
  }

  /** Starts a component the disk does not need; its failure is reported, never thrown. */
  /**
   * `keepOnFailure`: the component keeps part of itself up when its start fails (the HTTP
   * component keeps the CLI's control socket when the web listener cannot start); it is then
   * stopped with the others at shutdown instead of at once.
   */
  private async startOptional(c: Component, keepOnFailure = false): Promise<boolean> {
    try {
      await c.start();
    } catch (err) {
      if (keepOnFailure) this.started.push(c);
      else await c.stop().catch(() => undefined);
      this.setHealth(c.name, false, 'failed', (err as Error).message);
      return false;
    }
    this.started.push(c);
    this.setHealth(c.name, false, 'running', null);
    childLogger(c.name).debug('started');
    return true;
  }

  /** The fleet link as a component: off, running (connected, or connecting for the first time), or failed with why (reconnecting, refused). */
  private setManagementHealth(m: ManagementComponent): void {
    const c = m.status().connection;
    if (c.state === 'off') this.setHealth('management', false, 'off', null);
    else if (c.state === 'failed') this.setHealth('management', false, 'failed', c.problem);
    else if (c.state === 'reconnecting') this.setHealth('management', false, 'failed', `reconnecting: ${c.problem ?? ''}`);
    else this.setHealth('management', false, 'running', null);
  }

  private setHealth(name: string, essential: boolean, state: ComponentHealth['state'], problem: string | null): void {
    this.health.set(name, { name, essential, state, problem });
  }
}
