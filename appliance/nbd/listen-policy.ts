/**
 * Who may reach the NBD listeners: checks made before anything listens (and before the daemon
 * changes anything), so a refused configuration fails early with a clear message.
 */
import { lstat } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { SnapbackError } from '../errors.js';

/** Loopback addresses (and the name localhost): reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\.\d+\.\d+\.\d+$/.test(h);
}

/** A TCP listener off loopback serves the disk to the network: only with TLS, or when told to. */
export function checkTcpListen(host: string, tls: boolean, insecure: boolean): void {
  if (tls || insecure || isLoopback(host)) return;
  throw new SnapbackError(
    'BAD_ARGUMENT',
    `refusing to serve the disk on ${host} without authentication: configure NBD TLS (--nbd-tls-psk FILE, or --nbd-tls-cert and --nbd-tls-key) or allow plain text explicitly with --nbd-insecure`,
    { host },
  );
}

/** Whether something accepts connections on the unix socket at `path` (else it is stale). */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/**
 * Refuses a socket path another server is listening on (a stale socket file from a crash is
 * fine: the listener replaces it), and a path that is something else than a socket.
 */
export async function checkSocketFree(path: string): Promise<void> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (!st) return;
  if (!st.isSocket()) throw new SnapbackError('BAD_ARGUMENT', `${path} exists and is not a socket`, { path });
  if (await socketAnswers(path)) {
    throw new SnapbackError('BUSY', `another NBD server is listening on ${path} (a running snapback daemon?): stop it or choose another socket path`, { path });
  }
}

/** A group given by name (looked up in /etc/group) or number, as a gid. */
export function groupId(group: string, groupFile = '/etc/group'): number {
  if (/^\d+$/.test(group)) return Number(group);
  let text = '';
  try {
    text = readFileSync(groupFile, 'utf8');
  } catch {
    // no group file: only numeric groups work
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new SnapbackError('BAD_ARGUMENT', `no group named "${group}" (in ${groupFile})`);
}
