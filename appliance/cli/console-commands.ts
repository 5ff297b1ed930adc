/**
 * The `snapback console …` commands: serve (the console), token create and enroll-code create
 * (offline, on the console's data directory: SQLite lets them run beside a running console).
 * Their flags are defined and checked in program.ts.
 *
 * The console's modules are loaded only when one of these runs: the console keeps its state in
 * SQLite through better-sqlite3, a native module and an optional dependency that an appliance's
 * install (the Raspberry Pi image) leaves out, so the appliance's commands never need it.
 */
import { readFileSync } from 'node:fs';
import { SnapbackError } from '../errors.js';
import { newApiToken, sha256Hex } from '../http/passwords.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : s + '\n');

/** The console's server, store and enrollment; without better-sqlite3, an error that says what to install. */
async function consoleModules(): Promise<{
  ConsoleServer: typeof import('../../console/server/console-server.js').ConsoleServer;
  ConsoleStore: typeof import('../../console/server/console-store.js').ConsoleStore;
  Enrollment: typeof import('../../console/server/enrollment.js').Enrollment;
}> {
  try {
    const [server, store, enrollment] = await Promise.all([
      import('../../console/server/console-server.js'),
      import('../../console/server/console-store.js'),
      import('../../console/server/enrollment.js'),
    ]);
    return { ConsoleServer: server.ConsoleServer, ConsoleStore: store.ConsoleStore, Enrollment: enrollment.Enrollment };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && /better-sqlite3/.test((err as Error).message)) {
      throw new SnapbackError(
        'NOT_SUPPORTED',
        "the console needs the optional package better-sqlite3 (its SQLite store), which is not installed here (an appliance's install leaves it out): run `npm install better-sqlite3` where snapback is installed",
      );
    }
    throw err;
  }
}

type HostPort = { host: string; port: number };

export async function consoleServe(o: {
  dataDir: string;
  httpListen: HostPort;
  mqtt: string;
  mqttForAppliances?: string;
  brokerCa?: string;
  brokerPasswordFile?: string;
  brokerAclFile?: string;
  brokerPidFile?: string;
  publicUrl?: string;
  httpHostName?: string[];
  httpTlsCert?: string;
  httpTlsKey?: string;
}): Promise<number> {
  if ((o.brokerPasswordFile === undefined) !== (o.brokerAclFile === undefined)) {
    throw new SnapbackError('BAD_ARGUMENT', '--broker-password-file and --broker-acl-file go together');
  }
  if ((o.httpTlsCert === undefined) !== (o.httpTlsKey === undefined)) throw new SnapbackError('BAD_ARGUMENT', '--http-tls-cert and --http-tls-key go together');
  const { ConsoleServer } = await consoleModules();
  const server = new ConsoleServer({
    dataDir: o.dataDir,
    listen: o.httpListen,
    mqttUrl: o.mqtt,
    ...(o.mqttForAppliances ? { applianceMqttUrl: o.mqttForAppliances } : {}),
    ...(o.brokerCa ? { brokerCaFile: o.brokerCa } : {}),
    ...(o.brokerPasswordFile && o.brokerAclFile
      ? { brokerFiles: { passwordFile: o.brokerPasswordFile, aclFile: o.brokerAclFile, ...(o.brokerPidFile ? { pidFile: o.brokerPidFile } : {}) } }
      : {}),
    ...(o.publicUrl ? { publicUrl: o.publicUrl } : {}),
    hostNames: o.httpHostName ?? [],
    ...(o.httpTlsCert && o.httpTlsKey ? { tls: { cert: readFileSync(o.httpTlsCert), key: readFileSync(o.httpTlsKey) } } : {}),
  });
  await server.start();
  out(`snapback: console API on ${server.http.address().url} (data in ${o.dataDir}); broker ${redactUrl(o.mqtt)}`);
  let signalled = false;
  const onSignal = (sig: string) => {
    if (signalled) return;
    signalled = true;
    out(`snapback: ${sig}: stopping the console`);
    server.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  await new Promise<never>(() => undefined); // runs until a signal
  return 0;
}

export async function consoleTokenCreate(o: { dataDir: string; name: string }): Promise<number> {
  const { ConsoleStore } = await consoleModules();
  const store = ConsoleStore.open(o.dataDir);
  try {
    const t = newApiToken();
    const createdAt = new Date().toISOString();
    await store.addToken({ id: t.id, name: o.name, secretHash: sha256Hex(t.secret), createdAt, createdBy: 'cli', lastUsedAt: null });
    await store.audit({ actor: 'cli', action: 'token.create', details: { id: t.id, name: o.name } });
    out(`API token "${o.name}" (id ${t.id}); it is shown only now:`);
    out(t.token);
  } finally {
    store.close();
  }
  return 0;
}

export async function consoleEnrollCodeCreate(o: { dataDir: string; name?: string; validHours?: number }): Promise<number> {
  const { ConsoleStore, Enrollment } = await consoleModules();
  const store = ConsoleStore.open(o.dataDir);
  try {
    const c = new Enrollment(store, null, { brokerUrl: '' }).create({ ...(o.name !== undefined ? { name: o.name } : {}), ...(o.validHours !== undefined ? { validHours: o.validHours } : {}) });
    await store.audit({ actor: 'cli', action: 'enroll-code.create', details: { id: c.id, name: c.name, expiresAt: c.expiresAt } });
    out(`enrollment code ${c.id}${c.name ? ` for "${c.name}"` : ''}, valid until ${c.expiresAt}; it is shown only now:`);
    out(c.code);
  } finally {
    store.close();
  }
  return 0;
}

function redactUrl(text: string): string {
  try {
    const u = new URL(text);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return text;
  }
}
