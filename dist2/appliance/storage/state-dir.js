/**
 * The state directory: where an appliance keeps its configuration, write log and sockets.
 *   snapback.json   what the state is for: model image + manifest, working disk, region size
 *   write-log.bin   the region log (docs/write-log-format.md)
 *   state.json      settings, users, tokens, session history, audit log (appliance/state)
 *   daemon.pid      held by the running daemon; commands that would write the state refuse it
 *   nbd.sock        the NBD server's unix socket;  control.sock  the CLI's control socket
 */
import { readFileSync, writeFileSync, openSync, closeSync, fsyncSync, renameSync, unlinkSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { SnapbackError } from '../errors.js';
export const CONFIG_FILE = 'snapback.json';
export const LOG_FILE = 'write-log.bin';
export const PID_FILE = 'daemon.pid';
const configSchema = z.object({
    version: z.literal(1),
    modelImage: z.string(),
    modelManifest: z.string(),
    disk: z.string(),
    regionSize: z.number().int(),
    createdAt: z.string(),
});
export class StateDir {
    path;
    constructor(path) {
        this.path = resolve(path);
    }
    get configPath() {
        return join(this.path, CONFIG_FILE);
    }
    get logPath() {
        return join(this.path, LOG_FILE);
    }
    get pidPath() {
        return join(this.path, PID_FILE);
    }
    get nbdSocket() {
        return join(this.path, 'nbd.sock');
    }
    get controlSocket() {
        return join(this.path, 'control.sock');
    }
    get initialised() {
        return existsSync(this.configPath);
    }
    readConfig() {
        if (!existsSync(this.configPath))
            throw new SnapbackError('STATE_MISSING', `${this.path} is not a Snapback state directory (no ${CONFIG_FILE}); run "snapback init" first`);
        try {
            return configSchema.parse(JSON.parse(readFileSync(this.configPath, 'utf8')));
        }
        catch (err) {
            throw new SnapbackError('STATE_MISSING', `${this.configPath} is not valid: ${err.message}`);
        }
    }
    writeConfig(config) {
        mkdirSync(this.path, { recursive: true });
        const tmp = `${this.configPath}.tmp`;
        writeFileSync(tmp, JSON.stringify(config, null, 2) + '\n');
        const fd = openSync(tmp, 'r');
        fsyncSync(fd);
        closeSync(fd);
        renameSync(tmp, this.configPath);
        const dfd = openSync(this.path, 'r');
        fsyncSync(dfd);
        closeSync(dfd);
    }
    /** The pid of a running daemon holding this directory, or null. */
    runningDaemon() {
        let pid;
        try {
            pid = Number(readFileSync(this.pidPath, 'utf8').trim());
        }
        catch {
            return null;
        }
        if (!Number.isInteger(pid) || pid <= 0)
            return null;
        if (pid === process.pid)
            return pid;
        try {
            process.kill(pid, 0);
            return pid;
        }
        catch (err) {
            return err.code === 'EPERM' ? pid : null;
        }
    }
    /** Refuses (STATE_LOCKED) if a daemon runs on this directory. */
    assertNotInUse(what) {
        const pid = this.runningDaemon();
        if (pid !== null && pid !== process.pid)
            throw new SnapbackError('STATE_LOCKED', `${this.path} is in use by a running daemon (pid ${pid}); stop it before "${what}", or use the daemon's commands`);
    }
    /** Takes the directory for this process (the daemon); a stale pid file is replaced. */
    lock() {
        this.assertNotInUse('serve');
        mkdirSync(this.path, { recursive: true });
        try {
            unlinkSync(this.pidPath);
        }
        catch {
            /* none */
        }
        const fd = openSync(this.pidPath, 'wx', 0o644);
        writeFileSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return () => {
            try {
                if (readFileSync(this.pidPath, 'utf8').trim() === String(process.pid))
                    unlinkSync(this.pidPath);
            }
            catch {
                /* gone */
            }
        };
    }
}
//# sourceMappingURL=state-dir.js.map