/**
 * The NBD component: serves the protected disk on the daemon's unix socket, on the gadget's own
 * socket (reserved slots, never dropped as idle) and on TCP when asked (TLS-only when TLS is
 * configured). Essential: the USB gadget's kernel client and every other host reach the disk here.
 * It listens before the previous host session is ended, so that an address it cannot take
 * refuses the start before anything is written.
 */
import type { Component } from '../component.js';
import { NbdServer } from '../nbd/server.js';
import type { NbdTlsOptions } from '../nbd/tls-config.js';
import type { Engine } from '../storage/engine.js';
import { childLogger } from '../logger.js';

const log = childLogger('daemon');

export interface NbdComponentOptions {
  engine: () => Engine;
  socket: string;
  /** A group that may use `socket` too (0660); default root only (0600). */
  socketGid?: number;
  /** The socket the gadget's kernel client connects to. */
  gadgetSocket: string;
  tcp?: { host: string; port: number };
  /** TLS for the TCP listener (then required there). */
  tls: NbdTlsOptions | null;
  /** Plain text on a non-loopback TCP address was asked for explicitly. */
  insecure: boolean;
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
      await server.listenUnix(this.opts.socket, { gid: this.opts.socketGid });
      await server.listenUnix(this.opts.gadgetSocket, { role: 'gadget' });
      if (this.opts.tcp) this.tcpAddress = await server.listenTcp(this.opts.tcp.host, this.opts.tcp.port, { tls: this.opts.tls ?? undefined, insecure: this.opts.insecure });
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
