/**
 * systemd's sd_notify for the daemon: READY=1 once serving, STOPPING=1 on the way down, and
 * WATCHDOG=1 at half the interval systemd asks for (WATCHDOG_USEC). Node cannot send unix
 * datagrams, so messages go through `systemd-notify` (the unit sets NotifyAccess=all).
 * Outside systemd (no NOTIFY_SOCKET) every call does nothing.
 */
import { execFile } from 'node:child_process';
import { childLogger } from '../logger.js';
const log = childLogger('sd-notify');
export class SdNotify {
    env;
    binary;
    timer = null;
    constructor(env = process.env, binary = 'systemd-notify') {
        this.env = env;
        this.binary = binary;
    }
    get enabled() {
        return Boolean(this.env.NOTIFY_SOCKET);
    }
    /** Milliseconds between watchdog pings, or null when systemd wants none. */
    get watchdogIntervalMs() {
        const usec = Number(this.env.WATCHDOG_USEC);
        if (!this.enabled || !Number.isFinite(usec) || usec <= 0)
            return null;
        const pid = this.env.WATCHDOG_PID;
        if (pid && Number(pid) !== process.pid)
            return null;
        return Math.max(500, Math.floor(usec / 2000));
    }
    send(...assignments) {
        if (!this.enabled)
            return Promise.resolve();
        return new Promise((resolve) => {
            execFile(this.binary, [`--pid=${process.pid}`, ...assignments], { env: this.env, timeout: 5000 }, (err) => {
                if (err)
                    log.warn({ err: err.message, assignments }, 'sd_notify failed');
                resolve();
            });
        });
    }
    async ready(status) {
        await this.send('READY=1', `STATUS=${status}`);
        const every = this.watchdogIntervalMs;
        if (every !== null && !this.timer) {
            this.timer = setInterval(() => void this.send('WATCHDOG=1'), every);
            this.timer.unref();
        }
    }
    async stopping() {
        if (this.timer)
            clearInterval(this.timer);
        this.timer = null;
        await this.send('STOPPING=1');
    }
}
//# sourceMappingURL=sd-notify.js.map