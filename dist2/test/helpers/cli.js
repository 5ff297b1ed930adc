/** Runs the built `snapback` CLI and the daemon as child processes, for integration tests. */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'appliance', 'cli', 'main.js');
export function snapback(args, env = {}) {
    const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NODE_ENV: 'test', ...env }, timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
export function tool(cmd, args, input) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, input });
    if (r.error)
        throw new Error(`${cmd} could not run (${r.error.message}); the test setup installs it`);
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** Starts `snapback serve` and resolves once its control socket answers. */
export async function startServe(stateDir, extra = []) {
    const child = spawn(process.execPath, [CLI, 'serve', '--state-dir', stateDir, '--http-listen', '127.0.0.1:0', '--gadget', 'off', '--gpio', 'off', ...extra], {
        env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'warn' },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d.toString()));
    child.stderr.on('data', (d) => (out += d.toString()));
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
        if (child.exitCode !== null)
            throw new Error(`snapback serve exited ${child.exitCode}: ${out}`);
        if (/serving NBD/.test(out) && existsSync(join(stateDir, 'control.sock')))
            return child;
        await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    throw new Error(`snapback serve did not start: ${out}`);
}
export function exited(child) {
    if (child.exitCode !== null || child.signalCode !== null)
        return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
    return new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
}
export function nbdUri(stateDir) {
    return `nbd+unix:///snapback?socket=${join(stateDir, 'nbd.sock')}`;
}
//# sourceMappingURL=cli.js.map