/**
 * A console for a test: a real mosquitto whose password and ACL files the console writes, and
 * the console (in-process) connected to it with its own broker account, plus an API token.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newApiToken, sha256Hex } from '../../appliance/http/passwords.js';
import { BrokerAccounts } from '../../console/server/broker-accounts.js';
import { ConsoleServer } from '../../console/server/console-server.js';
import { ConsoleStore } from '../../console/server/console-store.js';
import { Mosquitto } from './mosquitto.js';
import { waitFor } from './wait.js';

export const CONSOLE_BROKER_PASSWORD = 'console-broker-pw';

/** The pid of the mosquitto started with this configuration file (for the console's --broker-pid-file). */
export function pidOf(confPath: string): number {
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0').includes(confPath)) return Number(e);
    } catch {
      /* gone meanwhile */
    }
  }
  throw new Error(`no process runs with ${confPath}`);
}

export interface ConsoleRig {
  broker: Mosquitto;
  server: ConsoleServer;
  /** An API token of the console. */
  token: string;
  /** The console's URL (ends with '/'). */
  base: string;
}

/**
 * Starts a broker and a console under `dir`; `port` and `publicUrl` as the console's options;
 * with `tls` the console reaches the broker over TLS (trusting the broker's own CA).
 */
export async function startConsoleRig(dir: string, opts: { port?: number; publicUrl?: string; tls?: boolean } = {}): Promise<ConsoleRig> {
  const dataDir = join(dir, 'console');
  const brokerFiles = { passwordFile: join(dir, 'passwd'), aclFile: join(dir, 'acl'), pidFile: join(dir, 'mosquitto.pid') };
  const pre = ConsoleStore.open(dataDir);
  await new BrokerAccounts(pre, brokerFiles).setConsoleAccount('console', CONSOLE_BROKER_PASSWORD);
  const t = newApiToken();
  await pre.addToken({ id: t.id, name: 'test', secretHash: sha256Hex(t.secret), createdAt: new Date().toISOString(), createdBy: 'cli', lastUsedAt: null });
  pre.close();
  const broker = await Mosquitto.start({ passwordFile: brokerFiles.passwordFile, aclFile: brokerFiles.aclFile, dir: join(dir, 'broker'), ...(opts.tls ? { tls: true } : {}) });
  writeFileSync(brokerFiles.pidFile, `${pidOf(broker.confPath)}\n`);
  const server = new ConsoleServer({
    dataDir,
    listen: { host: '127.0.0.1', port: opts.port ?? 0 },
    mqttUrl: opts.tls ? broker.tlsUrl.replace('mqtts://', `mqtts://console:${CONSOLE_BROKER_PASSWORD}@`) : broker.url.replace('mqtt://', `mqtt://console:${CONSOLE_BROKER_PASSWORD}@`),
    brokerFiles,
    ...(opts.tls ? { brokerCaFile: join(broker.dir, 'ca.pem') } : {}),
    ...(opts.publicUrl !== undefined ? { publicUrl: opts.publicUrl } : {}),
    backoff: { minMs: 100, maxMs: 1000 },
  });
  await server.start();
  await waitFor('the console connected', () => server.link.connected).catch(async (err: unknown) => {
    // Say why: the broker's log shows the console's attempts (and a TLS handshake it refused).
    const why = `${(err as Error).message} (mosquitto running: ${broker.running})\n--- mosquitto log (tail) ---\n${broker.log().split('\n').slice(-40).join('\n')}`;
    await server.stop().catch(() => undefined);
    await broker.stop().catch(() => undefined);
    throw new Error(why);
  });
  return { broker, server, token: t.token, base: server.http.address().url };
}

/** Calls the console's API with the rig's token; `path` is taken from the console's root. */
export async function consoleApi<T>(rig: { base: string; token: string }, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(rig.base + path.replace(/^\//, ''), {
    method,
    headers: { authorization: `Bearer ${rig.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as T };
}
