/**
 * What the CLI's commands do: offline ones on a state directory (init, verify, restore, model
 * manifest), the daemon (serve, demo), and those that talk to a running daemon over its
 * control socket (status, session end, mode, restore-mode, hydration-rate). Their arguments
 * and flags are defined, parsed and checked in program.ts; each handler gets them typed and
 * returns the exit status.
 */
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { SnapbackError } from '../errors.js';
import { createManifest, manifestPathFor, type HashName } from '../storage/manifest.js';
import { formatSize } from '../storage/sizes.js';
import { initEngine, openEngine } from '../storage/engine.js';
import { StateDir } from '../storage/state-dir.js';
import { verifyAgainstLog } from '../storage/verify.js';
import { callDaemon } from './control-client.js';
import { browserUrls } from './listen-urls.js';
import { bytesBar, out, progressBar } from './output.js';
import { Daemon, type ServeOptions } from '../daemon/daemon.js';
import { runDemo } from './demo.js';
import type { ApplianceStatus } from '../session/appliance-service.js';

function bad(msg: string): never {
  throw new SnapbackError('BAD_ARGUMENT', msg);
}

export async function modelManifest(image: string, o: { out?: string; regionSize?: number; hash: HashName; name?: string }): Promise<number> {
  const st = await stat(image).catch(() => bad(`model image ${image} does not exist`));
  if (!st.isFile() && !st.isBlockDevice()) bad(`${image} is not a file or block device`);
  const bar = bytesBar('hashing');
  const m = await createManifest(image, { regionSize: o.regionSize, hash: o.hash, name: o.name, onProgress: (d, t) => bar.update(d, t) });
  bar.stop();
  const dest = o.out ?? manifestPathFor(image);
  await m.save(dest);
  out(`${dest}: id ${m.id}, ${formatSize(m.size)}, ${m.regionCount} regions of ${formatSize(m.regionSize)} (${m.hash})`);
  return 0;
}

export async function init(o: { stateDir: string; model: string; disk: string; manifest?: string; regionSize?: number; restore: 'instant' | 'eager'; diskMatchesModel?: boolean; ca?: string }): Promise<number> {
  const state = new StateDir(o.stateDir);
  state.assertNotInUse('init');
  const bar = bytesBar('hashing the model');
  const res = await initEngine({
    stateDir: o.stateDir,
    model: o.model,
    manifest: o.manifest,
    disk: o.disk,
    regionSize: o.regionSize,
    restore: o.restore,
    diskMatchesModel: o.diskMatchesModel ?? false,
    onManifestProgress: (d, t) => bar.update(d, t),
    ...(o.ca ? { caFile: o.ca } : {}),
  }).finally(() => bar.stop());
  out(`initialised ${state.path}: ${res.regionCount} regions, ${res.pendingRegions} pending${res.createdDisk ? ` (created ${o.disk} as a sparse file)` : ''}`);
  return 0;
}

export async function verify(o: { stateDir: string; json?: boolean }): Promise<number> {
  const engine = await openEngine(o.stateDir, { verifyModel: 'off' });
  try {
    const bar = o.json ? { update() {}, stop() {} } : progressBar('verifying');
    // read-only: the model is verified against its manifest too
    await engine.model.verifyAll();
    const report = await verifyAgainstLog(engine.disk, engine.model, engine.log, (d, t) => bar.update(d, t));
    bar.stop();
    if (o.json) out(JSON.stringify(report));
    else {
      out(`regions: ${report.regionCount} of ${formatSize(report.regionSize)}`);
      out(`differing from the model: ${report.differing}; pending restore: ${report.pending}; written this session: ${report.writtenThisSession}`);
      out(report.ok ? 'every difference is covered by the write log' : `UNLOGGED DIFFERENCES in ${report.unlogged.length} regions: ${report.unlogged.slice(0, 20).join(', ')}${report.unlogged.length > 20 ? ', …' : ''}`);
    }
    return report.ok ? 0 : 1;
  } finally {
    await engine.close();
  }
}

export async function restore(o: { stateDir: string }): Promise<number> {
  new StateDir(o.stateDir).assertNotInUse('restore');
  const engine = await openEngine(o.stateDir);
  try {
    const total = engine.log.pendingCount;
    const bar = progressBar('restoring');
    const t0 = Date.now();
    await engine.hydrator.runToCompletion((d, t) => bar.update(d, t));
    bar.stop();
    const report = await verifyAgainstLog(engine.disk, engine.model, engine.log);
    if (report.differingOutsideSession > 0) throw new SnapbackError('VERIFY_FAILED', `after the restore ${report.differingOutsideSession} regions outside this session still differ from the model`);
    out(`restored ${total} regions in ${((Date.now() - t0) / 1000).toFixed(1)} s; the disk equals the model outside this session's writes`);
    return 0;
  } finally {
    await engine.close();
  }
}

async function startDaemon(opts: ServeOptions): Promise<Daemon> {
  const daemon = new Daemon(opts);
  const addresses = await daemon.start();
  // Before the lines that say it is serving: a SIGTERM sent on reading them is a drain, not a kill.
  let signalled = false;
  const onSignal = (sig: string) => {
    if (signalled) return;
    signalled = true;
    out(`snapback: ${sig}: draining and stopping`);
    daemon.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  out(`snapback: serving NBD on ${addresses.nbdSocket}${addresses.nbdTcp ? ` and nbd://${addresses.nbdTcp.host}:${addresses.nbdTcp.port}` : ''}`);
  if (addresses.http) {
    const [first, ...more] = browserUrls(addresses.http.host, addresses.http.port);
    out(`snapback: web UI and API on ${first}${more.length ? ` (also ${more.join(', ')})` : ''} (control socket ${addresses.controlSocket})`);
  }
  else out('snapback: the web UI and API are not running (see the log and `snapback status`); the disk is served');
  return daemon;
}

type HostPort = { host: string; port: number };

export async function serve(o: {
  stateDir: string;
  nbdSocket?: string;
  nbdSocketGroup?: number;
  nbdListen?: HostPort;
  nbdTlsPsk?: string;
  nbdTlsCert?: string;
  nbdTlsKey?: string;
  nbdTlsCa?: string;
  nbdInsecure?: boolean;
  httpListen: HostPort;
  httpHostName?: string[];
  gadget: ServeOptions['gadget'];
  gpio: ServeOptions['gpio'];
  keepSession?: boolean;
  firstBootPasswordFile: string;
  management?: string;
  applianceName?: string;
  enrollmentCode?: string;
  managementUsername?: string;
  managementPasswordFile?: string;
  managementCa?: string;
}): Promise<number> {
  const management = await managementOptions(o);
  await startDaemon({
    stateDir: o.stateDir,
    nbdSocket: o.nbdSocket,
    nbdSocketGid: o.nbdSocketGroup,
    nbdListen: o.nbdListen,
    nbdTls: { pskFile: o.nbdTlsPsk, certFile: o.nbdTlsCert, keyFile: o.nbdTlsKey, caFile: o.nbdTlsCa },
    nbdInsecure: o.nbdInsecure ?? false,
    httpListen: o.httpListen,
    httpHostNames: o.httpHostName ?? [],
    gadget: o.gadget,
    gpio: o.gpio,
    endSessionOnStart: !o.keepSession,
    firstBootPasswordFile: o.firstBootPasswordFile,
    management,
  });
  await new Promise<never>(() => undefined); // runs until a signal
  return 0;
}

/** serve's fleet flags, with the files they name read (a missing file is an error before anything starts). */
async function managementOptions(o: { management?: string; applianceName?: string; enrollmentCode?: string; managementUsername?: string; managementPasswordFile?: string; managementCa?: string }): Promise<ServeOptions['management']> {
  if (o.management === undefined) {
    const stray = [o.enrollmentCode && '--enrollment-code', o.managementUsername && '--management-username', o.managementPasswordFile && '--management-password-file', o.managementCa && '--management-ca', o.applianceName && '--appliance-name'].filter(Boolean);
    if (stray.length > 0) throw new SnapbackError('BAD_ARGUMENT', `${stray.join(', ')} need --management URL`);
    return null;
  }
  const read = async (flag: string, file: string): Promise<string> => {
    try {
      return await readFile(file, 'utf8');
    } catch (err) {
      throw new SnapbackError('BAD_ARGUMENT', `${flag} ${file}: ${(err as Error).message}`);
    }
  };
  return {
    url: o.management,
    ...(o.applianceName !== undefined ? { applianceName: o.applianceName } : {}),
    ...(o.enrollmentCode !== undefined ? { enrollmentCode: o.enrollmentCode } : {}),
    ...(o.managementUsername !== undefined ? { username: o.managementUsername } : {}),
    ...(o.managementPasswordFile !== undefined ? { password: (await read('--management-password-file', o.managementPasswordFile)).replace(/\r?\n$/, '') } : {}),
    ...(o.managementCa !== undefined ? { caCertificate: await read('--management-ca', o.managementCa) } : {}),
  };
}

/**
 * The control socket of a state directory's daemon. A directory that does not exist, or that
 * `snapback init` did not make, is said to be so (STATE_MISSING), not reported as "no daemon".
 */
function controlSocketOf(stateDir: string): string {
  const dir = new StateDir(stateDir);
  if (!existsSync(dir.path)) throw new SnapbackError('STATE_MISSING', `the state directory ${dir.path} does not exist`);
  dir.readConfig();
  return dir.controlSocket;
}

function describeStatus(s: ApplianceStatus): string {
  const h = s.hydration;
  return [
    `mode: ${s.mode}, restore: ${s.restoreMode}`,
    `session ${s.session.number} since ${s.session.startedAt}`,
    `regions: ${s.regions.total} of ${formatSize(s.regions.regionSize)} — written this session ${s.regions.writtenThisSession}, pending ${s.regions.pending}, clean ${s.regions.clean}`,
    `restore: ${h.running ? `running, ${h.done}/${h.totalAtStart} done, ${formatSize(h.bytesPerSecond)}/s${h.etaSeconds !== null ? `, ~${Math.ceil(h.etaSeconds)} s left` : ''}` : 'idle'}${h.rateLimitBytesPerSecond ? ` (limit ${formatSize(h.rateLimitBytesPerSecond)}/s)` : ''}`,
    `host: ${s.host.connection}, NBD clients ${s.host.nbdClients}${s.host.gadget ? `, gadget ${s.host.gadget.bound ? 'bound' : 'unbound'} (UDC ${s.host.gadget.udcState ?? '?'}, medium ${s.host.gadget.medium})` : ', no USB gadget'}`,
    `model: ${s.model.name} (${formatSize(s.model.size)}, id ${s.model.id.slice(0, 16)}…)`,
    ...(s.model.pendingActivation
      ? [`model ${s.model.pendingActivation.name} (id ${s.model.pendingActivation.id.slice(0, 16)}…) will be active after the next session end ("snapback model activate --cancel" withdraws that)`]
      : []),
    ...(h.lastError ? [`RESTORE ERROR: ${h.lastError}`] : []),
    ...(s.stateDir.writeError ? [`STATE FILE NOT SAVED: ${s.stateDir.writeError}`] : []),
    ...s.components.filter((c) => c.problem !== null).map((c) => `${c.name.toUpperCase()} ${c.state === 'failed' ? 'FAILED' : 'PROBLEM'}: ${c.problem}`),
  ].join('\n');
}

export async function status(o: { stateDir: string; json?: boolean }): Promise<number> {
  const s = (await callDaemon(controlSocketOf(o.stateDir), 'GET', '/api/status')) as ApplianceStatus;
  out(o.json ? JSON.stringify(s) : describeStatus(s));
  return 0;
}

export async function sessionEnd(o: { stateDir: string; wait?: boolean }): Promise<number> {
  const res = (await callDaemon(controlSocketOf(o.stateDir), 'POST', '/api/session/end', { wait: o.wait ?? false })) as { ended?: { number: number; sessionEndMs: number; regionsWritten: number } };
  if (res.ended) out(`session ${res.ended.number} ended (${res.ended.regionsWritten} regions written) in ${res.ended.sessionEndMs} ms; the host may read again`);
  else out('session end requested');
  return 0;
}

export async function mode(mode: string, o: { stateDir: string }): Promise<number> {
  await callDaemon(controlSocketOf(o.stateDir), 'POST', '/api/mode', { mode });
  out(`mode: ${mode}`);
  return 0;
}

export async function restoreMode(restoreMode: string, o: { stateDir: string }): Promise<number> {
  await callDaemon(controlSocketOf(o.stateDir), 'POST', '/api/restore-mode', { restoreMode });
  out(`restore-mode: ${restoreMode}`);
  return 0;
}

export async function hydrationRate(rate: number | null, o: { stateDir: string }): Promise<number> {
  await callDaemon(controlSocketOf(o.stateDir), 'POST', '/api/hydration', { rateBytesPerSecond: rate });
  out(`hydration rate: ${rate === null ? 'unlimited' : `${formatSize(rate)}/s`}`);
  return 0;
}

export async function demo(o: { dir: string; httpListen: HostPort }): Promise<number> {
  await runDemo({ dir: o.dir, httpListen: o.httpListen, start: startDaemon });
  await new Promise<never>(() => undefined);
  return 0;
}
