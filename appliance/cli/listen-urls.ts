/**
 * The web UI's address as a browser can open it. A listener on an unspecified address (0.0.0.0,
 * ::) answers on every address of this machine, but no browser can open http://0.0.0.0/: the
 * machine's own addresses are named instead (loopback when it has no other).
 */
import { networkInterfaces } from 'node:os';

const UNSPECIFIED = new Set(['0.0.0.0', '::', '']);

function urlOf(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/`;
}

/** URLs for a listener on host:port, the most useful first (IPv4, then global IPv6). */
export function browserUrls(host: string, port: number): string[] {
  if (!UNSPECIFIED.has(host)) return [urlOf(host, port)];
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') v4.push(a.address);
      else if (host === '::' && !a.address.toLowerCase().startsWith('fe80:')) v6.push(a.address); // link-local needs a zone no URL carries
    }
  }
  const own = [...v4, ...v6];
  return (own.length > 0 ? own : [host === '::' ? '::1' : '127.0.0.1']).map((h) => urlOf(h, port));
}
