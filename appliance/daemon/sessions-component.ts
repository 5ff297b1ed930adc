/**
 * The sessions component: the session manager, the core every front end talks to. Starting it
 * ends the previous host session (unless told to keep it) and starts the background restore.
 */
import type { Component } from '../component.js';
import { SessionManager } from '../session/session-manager.js';
import type { ComponentHealth } from '../session/appliance-service.js';
import type { Engine } from '../storage/engine.js';
import type { StateStore } from '../state/state-store.js';
import { SnapbackError } from '../errors.js';

export interface SessionsComponentOptions {
  engine: () => Engine;
  store: () => StateStore;
  endSessionOnStart: boolean;
  /** The daemon's view of its components, for the status. */
  components: () => ComponentHealth[];
  /** NBD clients connected when the manager starts. */
  nbdClients: () => number;
}

export class SessionsComponent implements Component {
  readonly name = 'sessions';
  private created: SessionManager | null = null;

  constructor(private readonly opts: SessionsComponentOptions) {}

  get manager(): SessionManager {
    if (!this.created) throw new SnapbackError('CLOSED', 'the session manager is not running');
    return this.created;
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
    await manager.start({ endSessionOnStart: this.opts.endSessionOnStart });
  }

  async stop(): Promise<void> {
    await this.created?.stop();
  }
}
