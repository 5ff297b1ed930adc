/**
 * The state component: the state store (DIR/state.json: settings, administrator, API tokens,
 * session history, audit log). Essential: logins, history and audit need it.
 */
import type { Component } from '../component.js';
import { StateStore } from '../state/state-store.js';
import { SnapbackError } from '../errors.js';

export class StateComponent implements Component {
  readonly name = 'state';
  private opened: StateStore | null = null;

  constructor(private readonly stateDir: string) {}

  get store(): StateStore {
    if (!this.opened) throw new SnapbackError('CLOSED', 'the state store is not open');
    return this.opened;
  }

  async start(): Promise<void> {
    this.opened ??= await StateStore.open(this.stateDir);
  }

  async stop(): Promise<void> {
    const store = this.opened;
    this.opened = null;
    await store?.close();
  }
}
