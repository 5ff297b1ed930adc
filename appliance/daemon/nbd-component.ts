/**
 * The NBD component: serves the protected disk on the daemon's unix socket (and on TCP when
 * asked). Essential: the USB gadget's kernel client and every other host reach the disk here.
 * It listens before the previous host session is ended, so that an address it cannot take
 * refuses the start before anything is written.
 */
import type { Component } from './component.js';
import { NbdServer } from '../nbd/server.js';
import type { Engine } from '../storage/engine.js';
import { childLogger } from '../logger.js';

const log = childLogger('daemon');

export interface NbdComponentOptions {
  engine: () => Engine;
  socket: string;
  tcp?: { host: string; port: number };
  /** Told the number of connected clients whenever it changes. */
  onClientCount: (n: number) => void;
}

export class NbdComponent implements Component {
  readonly name = 'nbd';
  private server: NbdServer | null = null;
  private tcpAddress: { host: string; port: number } | null = null;

  constructor(private readonly opts: NbdComponentOptions) {}

  /** The TCP address bound (port 0 resolved); null without a TCP listener. */
  get tcp(): { host: string; port: number } | null {
    return this.tcpAddress;
  }

  get clientCount(): number {
    return this.server?.clientCount ?? 0;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const engine = this.opts.engine();
    const server = new NbdServer({ device: engine.pd, exportName: 'snapback', description: `Snapback: ${engine.model.manifest.json.name}` });
    this.server = server;
    const update = (): void => this.opts.onClientCount(server.clientCount);
    server.on('connect', update);
    server.on('disconnect', update);
    server.on('error', (err: unknown) => log.error({ err }, 'NBD server error'));
    try {
      await server.listenUnix(this.opts.socket);
      if (this.opts.tcp) this.tcpAddress = await server.listenTcp(this.opts.tcp.host, this.opts.tcp.port);
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    this.tcpAddress = null;
    await server.close();
    await this.opts.engine().pd.flush().catch(() => undefined);
  }
}
