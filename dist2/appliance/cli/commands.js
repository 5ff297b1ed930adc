/**
 * The CLI's commands: offline ones on a state directory (init, verify, restore, model
 * manifest), the daemon (serve, demo), and those that talk to a running daemon over its
 * control socket (status, session end, mode, restore-mode, hydration-rate).
 */
import { parseArgs } from 'node:util';
import { stat } from 'node:fs/promises';
import cliProgress from 'cli-progress';
import { SnapbackError } from '../errors.js';
import { createManifest, manifestPathFor, SUPPORTED_HASHES } from '../storage/manifest.js';
import { parseSize, formatSize } from '../storage/sizes.js';
import { initEngine, openEngine } from '../storage/engine.js';
import { StateDir } from '../storage/state-dir.js';
import { verifyAgainstLog } from '../storage/verify.js';
import { callDaemon } from './control-client.js';
import { Daemon } from '../daemon/daemon.js';
import { runDemo } from './demo.js';
export const USAGE = `usage: snapback COMMAND [options]

  model manifest IMAGE [--out FILE] [--region-size 1M] [--hash sha256|sha1|blake2b512] [--name NAME]
  init --state-dir DIR --model IMAGE --disk PATH [--manifest FILE] [--region-size 64K]
       [--restore instant|eager] [--disk-matches-model]
  verify --state-dir DIR [--json]
  restore --state-dir DIR
  serve --state-dir DIR [--nbd-socket PATH] [--nbd-listen HOST:PORT] [--http-listen HOST:PORT]
        [--gadget auto|on|off] [--gpio auto|on|off] [--keep-session]
  status [--state-dir DIR] [--json]
  session end [--state-dir DIR] [--wait]
  mode frozen|thawed [--state-dir DIR]
  restore-mode instant|eager [--state-dir DIR]
  hydration-rate BYTES_PER_SECOND|unlimited [--state-dir DIR]
  demo [--dir DIR] [--http-listen HOST:PORT]

SNAPBACK_STATE_DIR may stand for --state-dir.
`;
function bad(msg) {
    throw new SnapbackError('BAD_ARGUMENT', msg);
}
function stateDirOf(v) {
    const dir = v ?? process.env.SNAPBACK_STATE_DIR;
    if (!dir)
        bad('--state-dir DIR is required (or set SNAPBACK_STATE_DIR)');
    return dir;
}
function hostPort(text, flag) {
    const m = /^(.*):(\d+)$/.exec(text);
    const port = m ? Number(m[2]) : NaN;
    if (!m || !m[1] || port > 65535)
        bad(`${flag} "${text}" is not HOST:PORT`);
    return { host: m[1].replace(/^\[|\]$/g, ''), port };
}
function oneOf(v, allowed, flag, dflt) {
    if (v === undefined)
        return dflt;
    if (!allowed.includes(v))
        bad(`${flag} must be one of ${allowed.join(', ')} (got "${v}")`);
    return v;
}
const out = (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');
function progressBar(label) {
    if (!process.stderr.isTTY)
        return { update() { }, stop() { } };
    const bar = new cliProgress.SingleBar({ format: `${label} [{bar}] {percentage}% | {value}/{total} regions | ETA {eta}s`, stream: process.stderr }, cliProgress.Presets.shades_classic);
    let started = false;
    return {
        update(done, total) {
            if (!started) {
                bar.start(total, done);
                started = true;
            }
            else
                bar.update(done);
        },
        stop() {
            if (started)
                bar.stop();
        },
    };
}
export async function runCommand(cmd, args) {
    switch (cmd) {
        case 'model':
            return modelCmd(args);
        case 'init':
            return initCmd(args);
        case 'verify':
            return verifyCmd(args);
        case 'restore':
            return restoreCmd(args);
        case 'serve':
            return serveCmd(args);
        case 'status':
            return statusCmd(args);
        case 'session':
            return sessionCmd(args);
        case 'mode':
            return modeCmd(args, 'mode');
        case 'restore-mode':
            return modeCmd(args, 'restore-mode');
        case 'hydration-rate':
            return rateCmd(args);
        case 'demo':
            return demoCmd(args);
        default:
            bad(`unknown command "${cmd}" (try "snapback help")`);
    }
}
async function modelCmd(args) {
    const [sub, ...rest] = args;
    if (sub !== 'manifest')
        bad(`unknown "model" command "${sub ?? ''}" (known: manifest)`);
    const { values, positionals } = parseArgs({ args: rest, allowPositionals: true, strict: true, options: { out: { type: 'string' }, 'region-size': { type: 'string' }, hash: { type: 'string' }, name: { type: 'string' } } });
    if (positionals.length !== 1)
        bad('model manifest takes exactly one IMAGE');
    const image = positionals[0];
    const st = await stat(image).catch(() => bad(`model image ${image} does not exist`));
    if (!st.isFile() && !st.isBlockDevice())
        bad(`${image} is not a file or block device`);
    const hash = oneOf(values.hash, SUPPORTED_HASHES, '--hash', 'sha256');
    const regionSize = values['region-size'] ? parseSize(values['region-size'], '--region-size') : undefined;
    const bar = progressBar('hashing');
    const m = await createManifest(image, { regionSize, hash, name: values.name, onProgress: (d, t) => bar.update(Math.floor(d / 1048576), Math.ceil(t / 1048576)) });
    bar.stop();
    const dest = values.out ?? manifestPathFor(image);
    await m.save(dest);
    out(`${dest}: id ${m.id}, ${formatSize(m.size)}, ${m.regionCount} regions of ${formatSize(m.regionSize)} (${m.hash})`);
    return 0;
}
async function initCmd(args) {
    const { values } = parseArgs({
        args,
        strict: true,
        options: {
            'state-dir': { type: 'string' },
            model: { type: 'string' },
            manifest: { type: 'string' },
            disk: { type: 'string' },
            'region-size': { type: 'string' },
            restore: { type: 'string' },
            'disk-matches-model': { type: 'boolean' },
        },
    });
    const stateDir = stateDirOf(values['state-dir']);
    if (!values.model)
        bad('--model IMAGE is required');
    if (!values.disk)
        bad('--disk PATH is required');
    const state = new StateDir(stateDir);
    state.assertNotInUse('init');
    const res = await initEngine({
        stateDir,
        model: values.model,
        manifest: values.manifest,
        disk: values.disk,
        regionSize: values['region-size'] ? parseSize(values['region-size'], '--region-size') : undefined,
        restore: oneOf(values.restore, ['instant', 'eager'], '--restore', 'instant'),
        diskMatchesModel: values['disk-matches-model'] ?? false,
    });
    out(`initialised ${state.path}: ${res.regionCount} regions, ${res.pendingRegions} pending${res.createdDisk ? ` (created ${values.disk} as a sparse file)` : ''}`);
    return 0;
}
async function verifyCmd(args) {
    const { values } = parseArgs({ args, strict: true, options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' } } });
    const engine = await openEngine(stateDirOf(values['state-dir']), { verifyModel: 'off' });
    try {
        const bar = values.json ? { update() { }, stop() { } } : progressBar('verifying');
        // read-only: the model is verified against its manifest too
        await engine.model.verifyAll();
        const report = await verifyAgainstLog(engine.disk, engine.model, engine.log, (d, t) => bar.update(d, t));
        bar.stop();
        if (values.json)
            out(JSON.stringify(report));
        else {
            out(`regions: ${report.regionCount} of ${formatSize(report.regionSize)}`);
            out(`differing from the model: ${report.differing}; pending restore: ${report.pending}; written this session: ${report.writtenThisSession}`);
            out(report.ok ? 'every difference is covered by the write log' : `UNLOGGED DIFFERENCES in ${report.unlogged.length} regions: ${report.unlogged.slice(0, 20).join(', ')}${report.unlogged.length > 20 ? ', …' : ''}`);
        }
        return report.ok ? 0 : 1;
    }
    finally {
        await engine.close();
    }
}
async function restoreCmd(args) {
    const { values } = parseArgs({ args, strict: true, options: { 'state-dir': { type: 'string' } } });
    const dir = stateDirOf(values['state-dir']);
    new StateDir(dir).assertNotInUse('restore');
    const engine = await openEngine(dir);
    try {
        const total = engine.log.pendingCount;
        const bar = progressBar('restoring');
        const t0 = Date.now();
        await engine.hydrator.runToCompletion((d, t) => bar.update(d, t));
        bar.stop();
        const report = await verifyAgainstLog(engine.disk, engine.model, engine.log);
        if (report.differingOutsideSession > 0)
            throw new SnapbackError('VERIFY_FAILED', `after the restore ${report.differingOutsideSession} regions outside this session still differ from the model`);
        out(`restored ${total} regions in ${((Date.now() - t0) / 1000).toFixed(1)} s; the disk equals the model outside this session's writes`);
        return 0;
    }
    finally {
        await engine.close();
    }
}
export async function startDaemon(opts) {
    const daemon = new Daemon(opts);
    const addresses = await daemon.start();
    out(`snapback: serving NBD on ${addresses.nbdSocket}${addresses.nbdTcp ? ` and nbd://${addresses.nbdTcp.host}:${addresses.nbdTcp.port}` : ''}`);
    out(`snapback: web UI and API on http://${addresses.http.host}:${addresses.http.port}/ (control socket ${addresses.controlSocket})`);
    let signalled = false;
    const onSignal = (sig) => {
        if (signalled)
            return;
        signalled = true;
        out(`snapback: ${sig}: draining and stopping`);
        daemon.stop().then(() => process.exit(0), () => process.exit(1));
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    return daemon;
}
async function serveCmd(args) {
    const { values } = parseArgs({
        args,
        strict: true,
        options: {
            'state-dir': { type: 'string' },
            'nbd-socket': { type: 'string' },
            'nbd-listen': { type: 'string' },
            'http-listen': { type: 'string' },
            gadget: { type: 'string' },
            gpio: { type: 'string' },
            'keep-session': { type: 'boolean' },
        },
    });
    await startDaemon({
        stateDir: stateDirOf(values['state-dir']),
        nbdSocket: values['nbd-socket'],
        nbdListen: values['nbd-listen'] ? hostPort(values['nbd-listen'], '--nbd-listen') : undefined,
        httpListen: hostPort(values['http-listen'] ?? '127.0.0.1:8080', '--http-listen'),
        gadget: oneOf(values.gadget, ['auto', 'on', 'off'], '--gadget', 'auto'),
        gpio: oneOf(values.gpio, ['auto', 'on', 'off'], '--gpio', 'auto'),
        endSessionOnStart: !values['keep-session'],
    });
    await new Promise(() => undefined); // runs until a signal
    return 0;
}
function controlSocketOf(v) {
    return new StateDir(stateDirOf(v)).controlSocket;
}
function describeStatus(s) {
    const h = s.hydration;
    return [
        `mode: ${s.mode}, restore: ${s.restoreMode}`,
        `session ${s.session.number} since ${s.session.startedAt}`,
        `regions: ${s.regions.total} of ${formatSize(s.regions.regionSize)} — written this session ${s.regions.writtenThisSession}, pending ${s.regions.pending}, clean ${s.regions.clean}`,
        `restore: ${h.running ? `running, ${h.done}/${h.totalAtStart} done, ${formatSize(h.bytesPerSecond)}/s${h.etaSeconds !== null ? `, ~${Math.ceil(h.etaSeconds)} s left` : ''}` : 'idle'}${h.rateLimitBytesPerSecond ? ` (limit ${formatSize(h.rateLimitBytesPerSecond)}/s)` : ''}`,
        `host: ${s.host.connection}, NBD clients ${s.host.nbdClients}${s.host.gadget ? `, gadget ${s.host.gadget.bound ? 'bound' : 'unbound'} (UDC ${s.host.gadget.udcState ?? '?'}, medium ${s.host.gadget.medium})` : ', no USB gadget'}`,
        `model: ${s.model.name} (${formatSize(s.model.size)}, id ${s.model.id.slice(0, 16)}…)`,
    ].join('\n');
}
async function statusCmd(args) {
    const { values } = parseArgs({ args, strict: true, options: { 'state-dir': { type: 'string' }, json: { type: 'boolean' } } });
    const s = (await callDaemon(controlSocketOf(values['state-dir']), 'GET', '/api/status'));
    out(values.json ? JSON.stringify(s) : describeStatus(s));
    return 0;
}
async function sessionCmd(args) {
    const [sub, ...rest] = args;
    if (sub !== 'end')
        bad(`unknown "session" command "${sub ?? ''}" (known: end)`);
    const { values } = parseArgs({ args: rest, strict: true, options: { 'state-dir': { type: 'string' }, wait: { type: 'boolean' } } });
    const res = (await callDaemon(controlSocketOf(values['state-dir']), 'POST', '/api/session/end', { wait: values.wait ?? false }));
    if (res.ended)
        out(`session ${res.ended.number} ended (${res.ended.regionsWritten} regions written) in ${res.ended.sessionEndMs} ms; the host may read again`);
    else
        out('session end requested');
    return 0;
}
async function modeCmd(args, which) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { 'state-dir': { type: 'string' } } });
    const allowed = which === 'mode' ? ['frozen', 'thawed'] : ['instant', 'eager'];
    const v = positionals[0];
    if (positionals.length !== 1 || !allowed.includes(v))
        bad(`${which} takes one of ${allowed.join(', ')}`);
    const body = which === 'mode' ? { mode: v } : { restoreMode: v };
    await callDaemon(controlSocketOf(values['state-dir']), 'POST', which === 'mode' ? '/api/mode' : '/api/restore-mode', body);
    out(`${which}: ${v}`);
    return 0;
}
async function rateCmd(args) {
    const { values, positionals } = parseArgs({ args, allowPositionals: true, strict: true, options: { 'state-dir': { type: 'string' } } });
    if (positionals.length !== 1)
        bad('hydration-rate takes BYTES_PER_SECOND (e.g. 20M) or "unlimited"');
    const rate = positionals[0] === 'unlimited' ? null : parseSize(positionals[0], 'hydration rate');
    if (rate === 0)
        bad('hydration rate must be above 0 (or "unlimited")');
    await callDaemon(controlSocketOf(values['state-dir']), 'POST', '/api/hydration', { rateBytesPerSecond: rate });
    out(`hydration rate: ${rate === null ? 'unlimited' : `${formatSize(rate)}/s`}`);
    return 0;
}
async function demoCmd(args) {
    const { values } = parseArgs({ args, strict: true, options: { dir: { type: 'string' }, 'http-listen': { type: 'string' } } });
    await runDemo({ dir: values.dir ?? '.snapback-demo', httpListen: hostPort(values['http-listen'] ?? '127.0.0.1:8080', '--http-listen'), start: startDaemon });
    await new Promise(() => undefined);
    return 0;
}
//# sourceMappingURL=commands.js.map