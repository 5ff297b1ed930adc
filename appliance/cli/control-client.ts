/**
 * The CLI's client for a running daemon: HTTP over the daemon's unix control socket
 * (DIR/control.sock, owner-only), so commands on the appliance need no password.
 */
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { SnapbackError, type ErrorCode } from '../errors.js';

/** Codes a daemon's error reply may carry that the CLI passes on as they are (exit status, message). */
const PASSED_ON: ReadonlySet<string> = new Set<ErrorCode>(['BAD_ARGUMENT', 'NOT_FOUND', 'ALREADY_EXISTS', 'IN_USE', 'MANIFEST_INVALID', 'NO_SPACE', 'BUSY', 'NOT_SUPPORTED', 'STATE_LOCKED']);

/** An error code a daemon reported (a failed job's), as the CLI passes it on; others are IO_ERROR. */
export function passedOnCode(code: string | null): ErrorCode {
  return code !== null && (PASSED_ON.has(code) || code === 'REMOTE_ERROR') ? (code as ErrorCode) : 'IO_ERROR';
}

export async function callDaemon(controlSocket: string, method: 'GET' | 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, timeoutMs = 0): Promise<unknown> {
  if (!existsSync(controlSocket)) throw new SnapbackError('DAEMON_UNREACHABLE', `no daemon is running here (no ${controlSocket}); start one with "snapback serve"`);
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      // agent: false: one connection per call. A kept-alive connection the daemon closes as idle
      // (after 5 s) while the next call is being written would fail that call with EPIPE.
      { socketPath: controlSocket, agent: false, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}, timeout: timeoutMs || undefined },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = text;
          try {
            json = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          if ((res.statusCode ?? 500) >= 400) {
            const msg = typeof json === 'object' && json && 'message' in json ? String((json as { message: unknown }).message) : text;
            const code = typeof json === 'object' && json && 'error' in json ? String((json as { error: unknown }).error) : '';
            reject(new SnapbackError(PASSED_ON.has(code) ? (code as ErrorCode) : (res.statusCode ?? 500) === 400 ? 'BAD_ARGUMENT' : 'IO_ERROR', `daemon: ${msg}`));
          } else resolve(json);
        });
      },
    );
    req.on('error', (err) => reject(new SnapbackError('DAEMON_UNREACHABLE', `cannot reach the daemon at ${controlSocket}: ${err.message}`)));
    req.on('timeout', () => req.destroy(new Error('timed out')));
    if (payload) req.write(payload);
    req.end();
  });
}
