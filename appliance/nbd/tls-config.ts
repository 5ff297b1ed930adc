/**
 * TLS for NBD listeners (NBD_OPT_STARTTLS): the server side of each TLS session, from files an
 * administrator provides. Either or both of:
 *   - a PSK file in the format of GnuTLS' psktool, which qemu (tls-creds-psk) and libnbd
 *     (tls-psk-file) read too: one `identity:hexkey` per line;
 *   - a certificate and its private key (PEM), optionally with a CA: clients must then present
 *     a certificate signed by it.
 */
import { readFileSync } from 'node:fs';
import type { TlsOptions, TLSSocketOptions } from 'node:tls';
import { SnapbackError } from '../errors.js';

export interface NbdTlsFiles {
  pskFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Clients must present a certificate signed by this CA. */
  caFile?: string;
}

/** Options of the server side of a TLS session (TLSSocket honours the PSK callback too). */
export type NbdTlsOptions = TLSSocketOptions & Pick<TlsOptions, 'pskCallback'>;

/** TLS 1.2 PSK suites (TLS 1.3 sessions keyed by PSK use the default TLS 1.3 suites). */
const PSK_CIPHERS = ['ECDHE-PSK-AES256-CBC-SHA384', 'ECDHE-PSK-AES128-CBC-SHA256', 'DHE-PSK-AES256-GCM-SHA384', 'DHE-PSK-AES128-GCM-SHA256', 'PSK-AES256-GCM-SHA384', 'PSK-AES128-GCM-SHA256'];

/** Parses a psktool file: `identity:hexkey` lines; blank lines and # comments are skipped. */
export function parsePskFile(text: string, path: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.lastIndexOf(':');
    const identity = colon > 0 ? line.slice(0, colon) : '';
    const hex = colon > 0 ? line.slice(colon + 1) : '';
    if (identity === '' || !/^([0-9a-fA-F]{2})+$/.test(hex)) {
      throw new SnapbackError('BAD_ARGUMENT', `${path} line ${i + 1}: expected identity:hexkey (as written by psktool)`);
    }
    keys.set(identity, Buffer.from(hex, 'hex'));
  });
  if (keys.size === 0) throw new SnapbackError('BAD_ARGUMENT', `${path} holds no key (expected identity:hexkey lines, as written by psktool)`);
  return keys;
}

function readConfigFile(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new SnapbackError('BAD_ARGUMENT', `cannot read the NBD TLS ${what} ${path}: ${(err as Error).message}`, undefined, { cause: err });
  }
}

/** The options of the server side of each TLS session; null when no TLS file was given. */
export function loadNbdTls(files: NbdTlsFiles): NbdTlsOptions | null {
  const { pskFile, certFile, keyFile, caFile } = files;
  if (!pskFile && !certFile && !keyFile && !caFile) return null;
  if (Boolean(certFile) !== Boolean(keyFile)) throw new SnapbackError('BAD_ARGUMENT', 'NBD TLS needs both a certificate and its private key');
  if (caFile && !certFile) throw new SnapbackError('BAD_ARGUMENT', 'an NBD TLS client CA needs a server certificate and key as well');
  const opts: NbdTlsOptions = { minVersion: 'TLSv1.2' };
  if (pskFile) {
    const keys = parsePskFile(readConfigFile(pskFile, 'PSK file').toString('utf8'), pskFile);
    opts.pskCallback = (_socket, identity) => keys.get(identity) ?? null;
    // OpenSSL leaves PSK suites out unless they are named.
    opts.ciphers = `${PSK_CIPHERS.join(':')}:${certFile ? 'HIGH:!aNULL:!MD5' : ''}`.replace(/:$/, '');
  }
  if (certFile && keyFile) {
    opts.cert = readConfigFile(certFile, 'certificate');
    opts.key = readConfigFile(keyFile, 'private key');
    if (caFile) {
      opts.ca = readConfigFile(caFile, 'CA certificate');
      opts.requestCert = true;
      opts.rejectUnauthorized = true;
    }
  }
  return opts;
}
