/**
 * Defence against DNS rebinding and cross-site requests: the names the appliance answers to.
 *
 * A page on another site can make a browser send requests to the appliance by pointing its own
 * DNS name at the appliance's address (DNS rebinding); such requests carry that foreign name in
 * their Host header. So every request over TCP must name the appliance: a loopback name or
 * address, the listen address, the machine's host name (also with `.local`, as mDNS announces
 * it), a configured extra name, or any IP address literal (a literal cannot be rebound). And a
 * browser's state-changing request must come from a page of the appliance itself: its Origin,
 * when present, must be the very host it is sent to.
 */
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import type { NextFunction, Request, Response } from 'express';
import { HttpError, hostOfHeader, isLoopbackHost } from './http-util.js';

export interface HostCheckOptions {
  /** The TCP listen address. */
  listenHost: string;
  /** More names the appliance answers to (a DNS name given to it, a reverse proxy's name). */
  extraNames?: readonly string[];
  /** The machine's host name; default os.hostname(). */
  hostname?: () => string;
}

export class HostCheck {
  private readonly fixed: Set<string>;
  private readonly hostname: () => string;

  constructor(opts: HostCheckOptions) {
    this.hostname = opts.hostname ?? osHostname;
    this.fixed = new Set([opts.listenHost, ...(opts.extraNames ?? [])].map(normalizeName).filter((n) => n !== ''));
  }

  /** Whether a Host header's name is one the appliance answers to. */
  allows(name: string): boolean {
    const n = normalizeName(name);
    if (n === '') return false;
    if (isLoopbackHost(n) || isIP(n) !== 0 || this.fixed.has(n)) return true;
    const own = normalizeName(this.hostname()); // looked up each time: it can change at run time
    return own !== '' && (n === own || n === `${own}.local`);
  }

  /** Express middleware for the TCP listener. */
  middleware(stateChanging: (method: string) => boolean) {
    return (req: Request, _res: Response, next: NextFunction): void => {
      const host = req.headers.host;
      if (!host || !this.allows(hostOfHeader(host))) {
        throw new HttpError(
          403,
          'BAD_HOST',
          `this appliance does not answer to the name in the Host header (${JSON.stringify(host ?? '')}); ` +
            'use its address or its host name, or add the name to its configuration',
        );
      }
      if (stateChanging(req.method)) {
        const origin = req.headers.origin;
        if (origin !== undefined && !sameHost(origin, host)) {
          throw new HttpError(403, 'BAD_ORIGIN', `a request from another site (Origin ${origin}) is refused`);
        }
        if (origin === undefined && req.headers['sec-fetch-site'] === 'cross-site') {
          throw new HttpError(403, 'BAD_ORIGIN', 'a request from another site is refused');
        }
      }
      next();
    };
  }
}

function normalizeName(name: string): string {
  return name.trim().toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
}

/** Whether an Origin header ("http://pi.local:8080") names the same host and port as `host`. */
function sameHost(origin: string, host: string): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // includes "null" (sandboxed frames, file: pages)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return false;
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  const [reqName, reqPort] = splitHost(host);
  return normalizeName(url.hostname) === normalizeName(reqName) && (url.port || defaultPort) === (reqPort || defaultPort);
}

function splitHost(host: string): [string, string] {
  const h = host.trim();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return [h.slice(1, end), h.slice(end + 2)];
  }
  const i = h.lastIndexOf(':');
  return i >= 0 && h.indexOf(':') === i ? [h.slice(0, i), h.slice(i + 1)] : [h, ''];
}
