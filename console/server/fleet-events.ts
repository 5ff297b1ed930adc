/**
 * Live updates for the console's web UI over server-sent events (GET /api/events):
 * - `appliances`  the records of the appliances that changed since the last tick (an array; a
 *                 forgotten appliance comes as {name, removed: true});
 * - `commands`    the commands made or changed since the last tick (an array);
 * - `audit`       a new audit-log entry.
 * Changes are gathered per tick (250 ms), so a thousand appliances publishing at once make a few
 * events, not a thousand. Streams are bounded: a client that does not read is dropped. A stream
 * lasts only as long as its login or API token.
 */
import type { Response } from 'express';
import type { AuditEntry } from '../../appliance/api/audit.js';
import type { CommandRecord } from '../../appliance/api/console.js';
import type { ConsoleStore } from './console-store.js';

const TICK_MS = 250;
const HEARTBEAT_MS = 15_000;
const MAX_CLIENTS = 64;
const MAX_BUFFERED = 4 << 20;

interface Client {
  res: Response;
  loginId?: string;
  tokenId?: string;
}

export class FleetEvents {
  private readonly store: ConsoleStore;
  private readonly clients = new Set<Client>();
  private readonly changedAppliances = new Set<string>();
  private readonly changedCommands = new Map<string, CommandRecord>();
  private tick: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly onAppliance = (name: string): void => {
    if (this.clients.size > 0) this.changedAppliances.add(name);
  };
  private readonly onCommand = (c: CommandRecord): void => {
    if (this.clients.size > 0) this.changedCommands.set(c.id, c);
  };
  private readonly onAudit = (e: AuditEntry): void => this.broadcast('audit', e);

  constructor(store: ConsoleStore) {
    this.store = store;
  }

  start(): void {
    if (this.tick) return;
    this.store.on('appliance', this.onAppliance);
    this.store.on('command', this.onCommand);
    this.store.on('audit', this.onAudit);
    this.tick = setInterval(() => this.flush(), TICK_MS);
    this.heartbeat = setInterval(() => this.write(':\n\n'), HEARTBEAT_MS);
    this.tick.unref();
    this.heartbeat.unref();
  }

  stop(): void {
    this.store.off('appliance', this.onAppliance);
    this.store.off('command', this.onCommand);
    this.store.off('audit', this.onAudit);
    if (this.tick) clearInterval(this.tick);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.tick = this.heartbeat = null;
    for (const c of [...this.clients]) this.drop(c);
  }

  /** Opens a stream on `res`; false when too many are open. */
  attach(res: Response, owner: { loginId?: string; tokenId?: string }): boolean {
    if (this.clients.size >= MAX_CLIENTS) return false;
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    res.write('retry: 2000\n\n');
    const c: Client = { res, ...owner };
    this.clients.add(c);
    res.on('close', () => this.clients.delete(c));
    return true;
  }

  dropLogin(id: string): void {
    for (const c of [...this.clients]) if (c.loginId === id) this.drop(c);
  }

  dropToken(id: string): void {
    for (const c of [...this.clients]) if (c.tokenId === id) this.drop(c);
  }

  private flush(): void {
    if (this.changedAppliances.size > 0) {
      const records = [...this.changedAppliances].map((name) => this.store.appliance(name) ?? { name, removed: true });
      this.changedAppliances.clear();
      this.broadcast('appliances', records);
    }
    if (this.changedCommands.size > 0) {
      const cmds = [...this.changedCommands.values()];
      this.changedCommands.clear();
      this.broadcast('commands', cmds);
    }
  }

  private broadcast(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    this.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private write(text: string): void {
    for (const c of [...this.clients]) {
      if (c.res.writableLength > MAX_BUFFERED) this.drop(c);
      else c.res.write(text);
    }
  }

  private drop(c: Client): void {
    this.clients.delete(c);
    c.res.end();
  }
}
