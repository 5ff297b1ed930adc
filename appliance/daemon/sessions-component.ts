/**
 * The sessions component: the session manager, the core every front end talks to, and the model
 * switcher. Starting it schedules an activation left pending, ends the previous host session
 * (unless told to keep it: then the activation waits for the next session end) and starts the
 * background restore.
 */
import type { Component } from '../component.js';
import { SessionManager } from '../session/session-manager.js';
import { ModelSwitcher, type LazyModels } from '../session/model-switcher.js';
import type { ModelLibrary } from '../storage/model-library.js';
import type { ComponentHealth } from '../session/appliance-service.js';
import type { Engine } from '../storage/engine.js';
import type { StateStore } from '../state/state-store.js';
import { SnapbackError } from '../errors.js';

export interface SessionsComponentOptions {
  engine: () => Engine;
  store: () => StateStore;
  /** The daemon's models still arriving from their URLs (shared with an activation of one). */
  lazyModels?: () => LazyModels | null;
  endSessionOnStart: boolean;
  /** The state directory's model library (shared with the model service). */
  library: ModelLibrary;
  /** The daemon's view of its components, for the status. */
  components: () => ComponentHealth[];
  /** NBD clients connected when the manager starts. */
  nbdClients: () => number;
}

export class SessionsComponent implements Component {
  readonly name = 'sessions';
  private created: SessionManager | null = null;
  private switcherMade: ModelSwitcher | null = null;

  constructor(private readonly opts: SessionsComponentOptions) {}

  get manager(): SessionManager {
    if (!this.created) throw new SnapbackError('CLOSED', 'the session manager is not running');
    return this.created;
  }

  get switcher(): ModelSwitcher {
    if (!this.switcherMade) throw new SnapbackError('CLOSED', 'the session manager is not running');
    return this.switcherMade;
  }

  /** The model an activation waits for the next session end to put in force, or null. */
  get pendingModelId(): string | null {
    return this.switcherMade?.pendingModelId ?? null;
  }

  /** Forwards the NBD client count once the manager exists. */
  setNbdClients(n: number): void {
    this.created?.setNbdClients(n);
  }

  async start(): Promise<void> {
    if (this.created) return;
    const manager = new SessionManager(this.opts.engine(), this.opts.store(), { components: this.opts.components });
    this.created = manager;
    manager.setNbdClients(this.opts.nbdClients());
    const switcher = new ModelSwitcher(this.opts.engine(), this.opts.library, manager, this.opts.lazyModels?.() ?? null);
    this.switcherMade = switcher;
    await switcher.load();
    await manager.start({ endSessionOnStart: this.opts.endSessionOnStart });
  }

  async stop(): Promise<void> {
    await this.created?.stop();
    await this.switcherMade?.close();
  }
}
