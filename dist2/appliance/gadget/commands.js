/**
 * Running the system tools the gadget needs (modprobe, nbd-client, blockdev, mount). The
 * runner is injectable so unit tests can simulate them; the default runs real processes.
 */
import { execFile } from 'node:child_process';
/** Runs a program without a shell; never rejects (a missing program is code 127). */
export const defaultRunner = (cmd, args, opts) => new Promise((resolve) => {
    execFile(cmd, args, { timeout: opts?.timeoutMs ?? 30_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
        if (!err)
            return resolve({ code: 0, stdout, stderr });
        const e = err;
        if (e.code === 'ENOENT')
            return resolve({ code: 127, stdout: '', stderr: `${cmd}: not found` });
        const code = typeof e.code === 'number' ? e.code : 1;
        const why = e.killed ? ` (killed${e.signal ? ` by ${e.signal}` : ''})` : '';
        resolve({ code, stdout, stderr: `${stderr}${why}` });
    });
});
/**
 * Runs `tool args…`, or `busybox tool args…` where the tool itself is missing (Pi OS has kmod
 * and util-linux; a minimal system may have only busybox).
 */
export async function runTool(run, tool, args, opts) {
    const r = await run(tool, args, opts);
    if (r.code !== 127)
        return r;
    const bb = await run('busybox', [tool, ...args], opts);
    return bb.code === 127 ? { code: 127, stdout: '', stderr: `${tool}: not found (nor busybox)` } : bb;
}
export function describeFailure(cmd, args, r) {
    const out = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ');
    return `${[cmd, ...args].join(' ')} exited with ${r.code}${out ? `: ${out}` : ''}`;
}
//# sourceMappingURL=commands.js.map