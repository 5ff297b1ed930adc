/**
 * The CLI's client for a running daemon: HTTP over the daemon's unix control socket
 * (DIR/control.sock, owner-only), so commands on the appliance need no password.
 */
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { SnapbackError } from '../errors.js';
export async function callDaemon(controlSocket, method, path, body, timeoutMs = 0) {
    if (!existsSync(controlSocket))
        throw new SnapbackError('DAEMON_UNREACHABLE', `no daemon is running here (no ${controlSocket}); start one with "snapback serve"`);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
        const req = request({ socketPath: controlSocket, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}, timeout: timeoutMs || undefined }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let json = text;
                try {
                    json = JSON.parse(text);
                }
                catch {
                    /* not JSON */
                }
                if ((res.statusCode ?? 500) >= 400) {
                    const msg = typeof json === 'object' && json && 'message' in json ? String(json.message) : text;
                    reject(new SnapbackError((res.statusCode ?? 500) === 400 ? 'BAD_ARGUMENT' : 'IO_ERROR', `daemon: ${msg}`));
                }
                else
                    resolve(json);
            });
        });
        req.on('error', (err) => reject(new SnapbackError('DAEMON_UNREACHABLE', `cannot reach the daemon at ${controlSocket}: ${err.message}`)));
        req.on('timeout', () => req.destroy(new Error('timed out')));
        if (payload)
            req.write(payload);
        req.end();
    });
}
//# sourceMappingURL=control-client.js.map