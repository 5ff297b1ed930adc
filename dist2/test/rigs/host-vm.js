/**
 * The host-boot rig's "host PC": a QEMU machine (TCG) whose only disk is an NBD export reached
 * through a unix socket, attached as a USB stick (qemu-xhci + usb-storage, removable, first in
 * the boot order), as a PC would see the Pi's USB gadget. SeaBIOS boots it, syslinux on the
 * disk loads the kernel, and the image's /init runs the scenario this module hands to QEMU
 * through fw_cfg (see host-image.ts).
 *
 * Serial ports: ttyS0 is the guest's console, written to `<dir>/<name>.console.log`; ttyS1 is
 * the control channel, on QEMU's stdin/stdout: the guest's `@@ key value…` lines become
 * events with the host's arrival time, and `send()` writes lines to the guest.
 *
 * The machine ends by powering itself off (the scenario's end) or by `kill()`: SIGKILL, the
 * plug pulled, with nothing flushed. Every machine still alive when the test process exits is
 * killed.
 */
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync, appendFileSync } from 'node:fs';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
export const QEMU = 'qemu-system-x86_64';
/** Fails, naming the package, unless QEMU and SeaBIOS are installed. */
export function requireVmTools() {
    const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':');
    if (!dirs.some((d) => d && existsSync(path.join(d, QEMU)))) {
        throw new Error(`host-vm: ${QEMU} not found; install the Debian package qemu-system-x86 (test/setup/install-test-tools.sh does)`);
    }
    if (!existsSync('/usr/share/seabios/bios-256k.bin') && !existsSync('/usr/share/qemu/bios-256k.bin')) {
        throw new Error('host-vm: SeaBIOS (bios-256k.bin) not found; install the Debian package seabios (qemu-system-x86 depends on it)');
    }
}
const live = new Set();
let exitHookInstalled = false;
function installExitHook() {
    if (exitHookInstalled)
        return;
    exitHookInstalled = true;
    process.on('exit', () => {
        for (const vm of live)
            vm.killNow();
    });
}
export class HostVm {
    opts;
    startedAt;
    events = [];
    consoleLog;
    controlLog;
    scenarioFile;
    /** Non-protocol lines the scenario printed (its commands' output and errors). */
    output = [];
    child;
    stderr = '';
    exitInfo;
    exitPromise;
    waiters = [];
    constructor(opts) {
        this.opts = opts;
        this.consoleLog = path.join(opts.dir, `${opts.name}.console.log`);
        this.controlLog = path.join(opts.dir, `${opts.name}.control.log`);
        this.scenarioFile = path.join(opts.dir, `${opts.name}.scenario.sh`);
        writeFileSync(this.scenarioFile, opts.scenario);
        writeFileSync(this.controlLog, '');
        const server = [
            'driver=nbd',
            'server.type=unix',
            `server.path=${escapeOpt(opts.nbdSocket)}`,
            ...(opts.exportName !== undefined ? [`export=${escapeOpt(opts.exportName)}`] : []),
            'node-name=disk0',
        ].join(',');
        const args = [
            '-accel', 'tcg',
            '-machine', 'pc',
            '-m', String(opts.memoryMiB ?? 384),
            '-smp', '1',
            '-nodefaults',
            '-no-user-config',
            '-display', 'none',
            '-no-reboot', // a guest panic (panic=-1 reboots) ends the machine
            '-boot', 'strict=on',
            '-blockdev', server,
            '-device', 'qemu-xhci,id=xhci',
            '-device', 'usb-storage,bus=xhci.0,drive=disk0,removable=on,bootindex=1',
            '-chardev', `file,id=console,path=${escapeOpt(this.consoleLog)}`,
            '-serial', 'chardev:console',
            '-chardev', 'stdio,id=control,signal=off',
            '-serial', 'chardev:control',
            '-fw_cfg', `name=opt/snapback/scenario,file=${escapeOpt(this.scenarioFile)}`,
            ...(opts.extraArgs ?? []),
        ];
        this.startedAt = Date.now();
        this.child = spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
        live.add(this);
        installExitHook();
        let buf = '';
        this.child.stdout.setEncoding('utf8');
        this.child.stdout.on('data', (chunk) => {
            buf += chunk;
            for (;;) {
                const nl = buf.indexOf('\n');
                if (nl < 0)
                    break;
                this.onLine(buf.slice(0, nl).replace(/\r/g, ''));
                buf = buf.slice(nl + 1);
            }
        });
        this.child.stderr.setEncoding('utf8');
        this.child.stderr.on('data', (chunk) => {
            this.stderr += chunk;
        });
        this.child.stdin.on('error', () => {
            /* the machine went away */
        });
        this.exitPromise = new Promise((resolve) => {
            this.child.on('exit', (code, signal) => {
                if (buf)
                    this.onLine(buf.replace(/\r/g, ''));
                buf = '';
                this.exitInfo = { code, signal, at: Date.now() };
                live.delete(this);
                this.wake();
                resolve(this.exitInfo);
            });
        });
    }
    /** Boots a machine: returns once QEMU has been spawned (not once the guest is up). */
    static start(opts) {
        requireVmTools();
        return new HostVm(opts);
    }
    get pid() {
        return this.child.pid;
    }
    get exited() {
        return this.exitInfo;
    }
    onLine(line) {
        const at = Date.now();
        appendFileSync(this.controlLog, `${((at - this.startedAt) / 1000).toFixed(3)} ${line}\n`);
        const m = /^@@ (\S+)\s*(.*)$/.exec(line);
        if (m?.[1])
            this.events.push({ key: m[1], args: (m[2] ?? '').split(/\s+/).filter(Boolean), line, at });
        else if (line.trim())
            this.output.push(line);
        this.wake();
    }
    wake() {
        const w = this.waiters;
        this.waiters = [];
        for (const f of w)
            f();
    }
    /** The first event with this key (at or after index `from`), if any yet. */
    find(key, from = 0) {
        return this.events.slice(from).find((e) => e.key === key);
    }
    all(key) {
        return this.events.filter((e) => e.key === key);
    }
    /**
     * Waits for an event. Rejects, with the tail of the console and the control channel, when
     * the guest reports `fail`, when the machine ends first, or after `timeoutMs`.
     */
    async waitFor(key, timeoutMs = 120_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const ev = this.find(key);
            if (ev)
                return ev;
            const failed = key !== 'fail' ? this.find('fail') : undefined;
            if (failed)
                throw new Error(`${this.opts.name}: the guest failed: ${failed.line}\n${await this.diagnostics()}`);
            if (this.exitInfo) {
                throw new Error(`${this.opts.name}: the machine ended (${describeExit(this.exitInfo)}) before "@@ ${key}"\n${await this.diagnostics()}`);
            }
            const left = deadline - Date.now();
            if (left <= 0)
                throw new Error(`${this.opts.name}: no "@@ ${key}" from the guest within ${timeoutMs} ms\n${await this.diagnostics()}`);
            await new Promise((resolve) => {
                const t = setTimeout(resolve, Math.min(left, 1000));
                this.waiters.push(() => {
                    clearTimeout(t);
                    resolve();
                });
            });
        }
    }
    /** Sends a line to the guest's control channel (see wait_host in the image's library). */
    send(line) {
        this.child.stdin.write(line + '\n');
    }
    /** Waits until the machine has ended (the guest powered off, or it was killed). */
    async waitExit(timeoutMs = 120_000) {
        let timer;
        const timeout = new Promise((_, reject) => {
            timer = setTimeout(() => {
                void this.diagnostics().then((d) => reject(new Error(`${this.opts.name}: still running after ${timeoutMs} ms\n${d}`)));
            }, timeoutMs);
        });
        try {
            return await Promise.race([this.exitPromise, timeout]);
        }
        finally {
            clearTimeout(timer);
        }
    }
    /**
     * Waits for the guest's own power-off and checks that its scenario succeeded
     * (`@@ exit 0`) and that QEMU exited cleanly.
     */
    async waitPoweroff(timeoutMs = 120_000) {
        const exit = await this.waitExit(timeoutMs);
        const status = this.find('exit');
        const failed = this.find('fail');
        if (failed || !status || status.args[0] !== '0' || exit.code !== 0) {
            throw new Error(`${this.opts.name}: the scenario did not complete (${failed ? failed.line : status ? status.line : 'no exit status'}; ` +
                `QEMU ${describeExit(exit)})\n${await this.diagnostics()}`);
        }
        return exit;
    }
    /** Pulls the plug: SIGKILL, nothing flushed, no shutdown. */
    async kill() {
        this.killNow();
        return this.exitPromise;
    }
    /** @internal synchronous SIGKILL, for the exit hook. */
    killNow() {
        if (!this.exitInfo && this.child.pid !== undefined) {
            try {
                this.child.kill('SIGKILL');
            }
            catch {
                /* already gone */
            }
        }
    }
    /** QEMU's stderr, the control channel's non-protocol output and the console's last lines. */
    async diagnostics(lines = 40) {
        const consoleText = await fs.readFile(this.consoleLog, 'utf8').catch(() => '');
        const control = await fs.readFile(this.controlLog, 'utf8').catch(() => '');
        const tail = (s) => s.split('\n').slice(-lines).join('\n');
        return [
            `--- ${this.opts.name}: QEMU stderr ---`,
            this.stderr.trim() || '(empty)',
            `--- ${this.opts.name}: control channel (${this.controlLog}) ---`,
            tail(control.trim()) || '(empty)',
            `--- ${this.opts.name}: console (${this.consoleLog}) ---`,
            tail(consoleText.trim()) || '(empty)',
        ].join('\n');
    }
}
/** QEMU's option syntax doubles a comma inside a value. */
function escapeOpt(v) {
    return v.replace(/,/g, ',,');
}
function describeExit(e) {
    return e.signal ? `killed by ${e.signal}` : `exit code ${String(e.code)}`;
}
//# sourceMappingURL=host-vm.js.map