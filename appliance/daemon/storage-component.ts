/**
 * The storage component: takes the state directory for this process (daemon.pid) and opens the
 * storage engine (model, working disk, write log). Essential: without it there is no disk.
 */
import type { Component } from '../component.js';
import { openEngine, type Engine } from '../storage/engine.js';
import type { StateDir } from '../storage/state-dir.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('daemon');

export class StorageComponent implements Component {
  readonly name = 'storage';
  private opened: Engine | null = null;
  private unlock: (() => void) | null = null;

  constructor(private readonly state: StateDir) {}

  /** The open engine; only between start() and stop(). */
  get engine(): Engine {
    if (!this.opened) throw new SnapbackError('CLOSED', 'the storage engine is not open');
    return this.opened;
  }

  async start(): Promise<void> {
    if (this.opened) return;
    this.unlock = this.state.lock();
    try {
      this.opened = await openEngine(this.state.path);
    } catch (err) {
      this.unlock();
      this.unlock = null;
      throw err;
    }
    if (this.opened.adoptedForeignModel) log.warn('the write log belonged to another model: every region is pending');
    if (this.opened.headerWarning) log.warn({ problem: this.opened.headerWarning }, 'a write-log header slot was damaged; the other was used');
  }

  async stop(): Promise<void> {
    const engine = this.opened;
    this.opened = null;
    await engine?.close();
    this.unlock?.();
    this.unlock = null;
  }
}
