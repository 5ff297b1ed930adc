/**
 * The one definition of the `snapback` command line: every command, argument and flag, its help
 * text, its default and how its value is checked. `--help`, the README's CLI block (rendered by
 * reference.ts, checked by a test) and the parser all come from here, so adding a flag is one
 * `.option(...)` line below plus its use in the command's handler.
 *
 * Argument and value names are written as they appear in the synopsis (IMAGE, DIR, HOST:PORT).
 */
import { Argument, Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MANIFEST_HASH, SUPPORTED_HASHES } from '../storage/manifest.js';
import { parseSize } from '../storage/sizes.js';
import { isSnapbackError } from '../errors.js';
import { groupId } from '../nbd/listen-policy.js';
import { VERSION } from '../version.js';
import { setLogDestination } from '../logger.js';
import * as commands from './commands.js';
import * as modelCommands from './model-commands.js';
import * as consoleCommands from './console-commands.js';
import { modelDownloadRate } from './model-download-commands.js';
import { passwd } from './passwd.js';
import { modelActivate, modelCapture } from './model-switch-commands.js';
import { maintenanceAdd, maintenanceList, maintenanceRemove, thawBoots } from './maintenance-commands.js';
import { persistentAdd, persistentList, persistentRemove } from './persistent-commands.js';
import { partitions } from './partition-commands.js';
import { DEFAULT_FIRST_BOOT_PASSWORD_FILE } from '../daemon/first-boot-password.js';
import { renderReference } from './reference.js';
import { applianceNameSchema } from '../api/fleet.js';
import { managementUrlSchema } from '../api/management.js';

export const STATE_DIR_ENV = 'SNAPBACK_STATE_DIR';
const DEFAULT_HTTP_LISTEN = '127.0.0.1:8080';

/** Turns a value checker's BAD_ARGUMENT into commander's "argument is invalid" error. */
function checked<T>(parse: (text: string) => T): (text: string) => T {
  return (text) => {
    try {
      return parse(text);
    } catch (err) {
      if (isSnapbackError(err, 'BAD_ARGUMENT')) throw new InvalidArgumentError(err.message);
      throw err;
    }
  };
}

export function parseHostPort(text: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port > 65535) throw new InvalidArgumentError(`"${text}" is not HOST:PORT`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

const size = (what: string) => checked((text) => parseSize(text, what));

/** A whole number ≥ 0 for flag `what`. */
function wholeNumber(what: string): (text: string) => number {
  return (text) => {
    if (!/^\d+$/.test(text)) throw new InvalidArgumentError(`${what} takes a whole number (got "${text}")`);
    return Number(text);
  };
}

/** A partition number as the host's OS counts them (1 and up). */
function parsePartitionNumber(text: string): number {
  const n = /^\s*-?\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n)) throw new InvalidArgumentError(`"${text}" is not a partition number`);
  if (n < 1) throw new InvalidArgumentError(`partition ${n}: partition numbers start at 1`);
  return n;
}

function parseRate(text: string): number | null {
  if (text === 'unlimited') return null;
  const rate = parseSize(text, 'hydration rate');
  if (rate === 0) throw new InvalidArgumentError('the hydration rate must be above 0 (or "unlimited")');
  return rate;
}

/** A value checked by a wire-contract schema; its first message is the flag's error. */
function bySchema(schema: { safeParse(v: unknown): { success: true; data: string } | { success: false; error: { issues: { message: string }[] } } }): (text: string) => string {
  return (text) => {
    const r = schema.safeParse(text);
    if (!r.success) throw new InvalidArgumentError(r.error.issues[0]?.message ?? 'invalid');
    return r.data;
  };
}

/** --state-dir DIR, which SNAPBACK_STATE_DIR may stand for; every command but demo needs one. */
const stateDir = () => new Option('--state-dir <DIR>', 'the state directory').env(STATE_DIR_ENV).makeOptionMandatory();

const httpListen = () =>
  new Option('--http-listen <HOST:PORT>', 'web UI and API address').argParser(checked(parseHostPort)).default(parseHostPort(DEFAULT_HTTP_LISTEN), DEFAULT_HTTP_LISTEN);

/** Records the exit status a command's handler returns (commander ignores action results). */
export interface CliRun {
  exitCode: number;
}

export function buildProgram(run: CliRun = { exitCode: 0 }): Command {
  // A command's log lines go to standard error, so that what it prints (--json) is its output
  // alone; the servers (serve, demo, console serve) log to standard output, their journal.
  const withLogsTo =
    (to: 'stdout' | 'stderr') =>
    <A extends unknown[]>(handler: (...args: A) => Promise<number>) =>
    async (...args: A): Promise<void> => {
      setLogDestination(to);
      run.exitCode = await handler(...args);
    };
  const act = withLogsTo('stderr');
  const actServer = withLogsTo('stdout');

  const program = new Command('snapback')
    .usage('COMMAND [options]')
    .description('Snapback: a protected boot disk for a host computer, restored from a model image when the host power-cycles.')
    .version(VERSION, '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [COMMAND]', 'show help for a command')
    .exitOverride()
    .configureOutput({ outputError: () => undefined }) // main.ts prints the one-line message
    .showSuggestionAfterError(true);

  const model = program.command('model').description('model images');
  model
    .command('manifest')
    .description('hash a model image region by region into its manifest (IMAGE.manifest.json unless --out)')
    .argument('<IMAGE>', 'the model image (file or block device)')
    .option('--out <FILE>', 'where to write the manifest')
    .option('--region-size <SIZE>', 'manifest region size (default 1M)', size('--region-size'))
    .addOption(new Option('--hash <HASH>', 'hash function').choices(SUPPORTED_HASHES).default(DEFAULT_MANIFEST_HASH))
    .option('--name <NAME>', "the model's display name (default: the image's file name)")
    .action(act(commands.modelManifest));
  model
    .command('import')
    .description("add a model to the library: copied (a reflink where the filesystem can) and hashed, or checked against SOURCE.manifest.json; prints the new model's id last")
    .argument('<SOURCE>', 'the model image: a path, or an http(s) URL')
    .addOption(stateDir())
    .requiredOption('--name <NAME>', "the model's name in the library (unique)")
    .option('--lazy', 'a URL model usable at once, fetched region by region as the host reads (needs the daemon)')
    .option('--ca <FILE>', "for an https URL: a CA certificate (PEM) to trust besides the system's")
    .option('--partition <N>', 'SOURCE is the image of partition N of the active model: the new model is the active one with that partition from SOURCE ("snapback partitions" lists them)', checked(parsePartitionNumber))
    .option('--json', "print the model's record as JSON")
    .action(act(modelCommands.modelImport));
  model
    .command('download-rate')
    .description('limit the background download of a model still arriving from its URL, in bytes per second (e.g. 5M), or lift the limit; kept across restarts')
    .argument('<NAME|ID>', 'the model: its name, id or a unique start of its id')
    .addArgument(new Argument('<BYTES_PER_SECOND|unlimited>', 'the rate').argParser(checked(parseRate)))
    .addOption(stateDir())
    .action(act(modelDownloadRate));
  model
    .command('list')
    .description('the models in the library; * marks the active one')
    .addOption(stateDir())
    .option('--json', 'print the records as a JSON array')
    .action(act(modelCommands.modelList));
  model
    .command('rename')
    .description('rename a model of the library (names are unique)')
    .argument('<NAME|ID>', 'the model: its name, id or a unique start of its id')
    .argument('<NEW_NAME>', 'its new name')
    .addOption(stateDir())
    .action(act(modelCommands.modelRename));
  model
    .command('remove')
    .description('remove a model from the library: never the active one; the previous version (the rollback target) only with --force')
    .argument('<NAME|ID>', 'the model: its name, id or a unique start of its id')
    .addOption(stateDir())
    .option('--force', 'remove the previous version too, giving up the rollback to it')
    .action(act(modelCommands.modelRemove));
  model
    .command('activate')
    .description('activate a model of the library: the regions that differ from the active one are restored from it at the next session end (--cancel withdraws an activation still waiting)')
    .argument('[NAME|ID]', "the model's name, id or unique id prefix")
    .option('--now', 'end the host session now, on the new model')
    .option('--cancel', 'withdraw the activation waiting for the next session end (the active model stays)')
    .addOption(stateDir())
    .action(act(modelActivate));
  model
    .command('capture')
    .description("capture the host's disk as it reads now as a new model of the library (its parent: the active model); prints its id last")
    .requiredOption('--name <NAME>', "the new model's name")
    .option('--activate', 'make it the active model at once, without a restore (the host session goes on)')
    .option('--include-persistent', "also take the host's bytes in persistent areas (left out by default: the new model keeps its parent's bytes there)")
    .addOption(stateDir())
    .action(act(modelCapture));

  const persistent = program.command('persistent').description('persistent areas: partitions or byte ranges whose writes survive session ends even when frozen (changes take effect at the next session end)');
  persistent
    .command('add')
    .description('make a partition or a byte range persistent (narrowed inward to whole regions; the command says so)')
    .option('--partition <N>', "a partition of the model's partition table, by number", parsePartitionNumber)
    .option('--range <OFFSET:LENGTH>', 'a byte range; sizes may end in K, M, G (e.g. 1G:512M)')
    .addOption(stateDir())
    .action(act(persistentAdd));
  persistent
    .command('list')
    .description('the persistent areas in force and those waiting for the next session end')
    .addOption(stateDir())
    .option('--json', 'print the list as JSON')
    .action(act(persistentList));
  persistent
    .command('remove')
    .description('stop keeping an area (at the next session end; a frozen one then restores it from the model)')
    .option('--partition <N>', 'the area added as this partition', parsePartitionNumber)
    .option('--range <OFFSET:LENGTH>', 'the area added as this range')
    .option('--id <ID>', 'the area with this id (see persistent list)')
    .addOption(stateDir())
    .action(act(persistentRemove));

  program
    .command('init')
    .description('initialise a state directory: model, working disk and an empty write log')
    .addOption(stateDir())
    .requiredOption('--model <IMAGE>', 'the model image, registered in the library where it lies (hashed into a manifest when it has none), or an http(s) URL to provision it from lazily (its manifest beside it)')
    .requiredOption('--disk <PATH>', 'the working disk the host sees (a block device, or a file created sparse)')
    .option('--manifest <FILE>', "the model's manifest (default IMAGE.manifest.json when it exists)")
    .option('--region-size <SIZE>', 'write-log region size (default 64K)', size('--region-size'))
    .addOption(new Option('--restore <MODE>', 'restore mode').choices(['instant', 'eager'] as const).default('instant'))
    .option('--disk-matches-model', 'the disk already holds the model: verify it instead of restoring every region')
    .option('--ca <FILE>', 'with --model https://…: a CA certificate (PEM) to trust besides the system\'s')
    .action(act(commands.init));

  program
    .command('verify')
    .description('compare the disk with the model; exit 1 where they differ and the write log does not say so')
    .addOption(stateDir())
    .option('--json', 'print the report as JSON')
    .action(act(commands.verify));

  program
    .command('partitions')
    .description("the active model's partitions (what the host sees when frozen): number, type, start, size, label")
    .addOption(stateDir())
    .option('--json', 'print the table as JSON (byte offsets and sizes)')
    .action(act(partitions));

  program
    .command('restore')
    .description('restore every pending region now, offline (progress bar on a terminal)')
    .addOption(stateDir())
    .action(act(commands.restore));

  program
    .command('serve')
    .description('run the daemon: NBD server, USB gadget, web UI and API, GPIO, the link to a fleet console')
    .addOption(stateDir())
    .option('--nbd-socket <PATH>', 'NBD unix socket (default DIR/nbd.sock)')
    .option('--nbd-socket-group <GROUP>', 'a group that may use the NBD socket too (0660; default: root only, 0600)', checked(groupId))
    .option('--nbd-listen <HOST:PORT>', 'also serve NBD over TCP (off loopback only with TLS or --nbd-insecure)', checked(parseHostPort))
    .option('--nbd-tls-psk <FILE>', 'TLS on --nbd-listen with pre-shared keys (psktool format: identity:hexkey lines)')
    .option('--nbd-tls-cert <FILE>', 'TLS on --nbd-listen with this certificate (PEM; with --nbd-tls-key)')
    .option('--nbd-tls-key <FILE>', 'the private key of --nbd-tls-cert (PEM)')
    .option('--nbd-tls-ca <FILE>', 'TLS clients must present a certificate signed by this CA (PEM)')
    .option('--nbd-insecure', 'allow --nbd-listen off loopback without TLS (anyone on the network can write the disk)')
    .addOption(httpListen())
    .option('--http-host-name <NAME>', 'a further name the web UI answers to (repeatable; loopback, IP addresses and the host name always work)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .addOption(new Option('--gadget <WHEN>', 'USB mass-storage gadget').choices(['auto', 'on', 'off'] as const).default('auto'))
    .addOption(new Option('--gpio <WHEN>', 'GPIO button, LED and host power').choices(['auto', 'on', 'off'] as const).default('auto'))
    .option('--keep-session', 'do not end the host session at start (the default ends it)')
    .option('--first-boot-password-file <PATH>', 'administrator password put on the boot partition: set at start, then the file is deleted', DEFAULT_FIRST_BOOT_PASSWORD_FILE)
    .option('--management <URL>', 'a fleet console: its MQTT broker (mqtt://HOST:PORT, mqtts://…) or the console to enroll with (https://…, with --enrollment-code); remembered in DIR', bySchema(managementUrlSchema))
    .option('--appliance-name <NAME>', "this appliance's name in the fleet (default: the host name)", bySchema(applianceNameSchema))
    .option('--enrollment-code <CODE>', 'the one-time code the console issued; redeemed once for the broker login and CA, which are kept in DIR')
    .option('--management-username <USER>', 'the broker login (without enrollment)')
    .option('--management-password-file <FILE>', "a file holding the broker login's password")
    .option('--management-ca <FILE>', 'the CA (PEM) of an mqtts:// broker or an https:// console that no public CA signed')
    .action(actServer(commands.serve));

  program
    .command('status')
    .description("the running daemon's status")
    .addOption(stateDir())
    .option('--json', 'print the status as JSON')
    .action(act(commands.status));

  program
    .command('session')
    .description('host sessions')
    .command('end')
    .description('end the host session: the changed regions are restored from the model')
    .addOption(stateDir())
    .option('--wait', 'return when the host may read again')
    .action(act(commands.sessionEnd));

  program
    .command('mode')
    .description('protection mode: frozen undoes every write at the next session end; thawed keeps them')
    .addArgument(new Argument('<MODE>', 'the protection mode').choices(['frozen', 'thawed']))
    .addOption(stateDir())
    .action(act(commands.mode));

  program
    .command('restore-mode')
    .description('instant: the host reads at once while regions are restored in the background; eager: after the restore')
    .addArgument(new Argument('<MODE>', 'the restore mode').choices(['instant', 'eager']))
    .addOption(stateDir())
    .action(act(commands.restoreMode));

  program
    .command('hydration-rate')
    .description('limit the background restore, in bytes per second (e.g. 20M), or lift the limit')
    .addArgument(new Argument('<BYTES_PER_SECOND|unlimited>', 'the rate').argParser(checked(parseRate)))
    .addOption(stateDir())
    .action(act(commands.hydrationRate));

  const maintenance = program.command('maintenance').description('maintenance windows: scheduled times when the host is powered on thawed, updates, is shut down, and its disk is captured as a new model or discarded');
  maintenance
    .command('add')
    .description('add a window (through the daemon when one runs)')
    .argument('<NAME>', 'the window\'s name (letters, digits, "-", "_")')
    .requiredOption('--schedule <CRON>', '5-field cron: minute hour day-of-month month day-of-week (e.g. "0 3 * * 6")')
    .option('--time-zone <ZONE>', 'the IANA time zone the schedule is read in (default UTC)')
    .requiredOption('--duration <MINUTES>', 'how long the host runs before it is shut down', wholeNumber('--duration'))
    .option('--grace <SECONDS>', 'after the shutdown press, how long before the host is forced off (default 300)', wholeNumber('--grace'))
    .addOption(new Option('--after <WHAT>', 'capture: a new model version, activated; discard: frozen, restored (default discard)').choices(['capture', 'discard']))
    .option('--model-name <PATTERN>', 'the captured model\'s name; {window}, {date}, {time} are replaced (default {window}-{date}-{time})')
    .option('--wake-mac <MAC>', 'power on with a Wake-on-LAN packet to this MAC instead of the GPIO power press')
    .option('--wake-address <ADDRESS>', 'where the Wake-on-LAN packet goes (default 255.255.255.255)')
    .option('--wake-port <PORT>', 'the Wake-on-LAN UDP port (default 9)', wholeNumber('--wake-port'))
    .addOption(stateDir())
    .action(act(maintenanceAdd));
  maintenance
    .command('list')
    .description('the windows with their next start, the thawed-boots counter, the running and last windows')
    .addOption(stateDir())
    .option('--json', 'print the status as JSON')
    .action(act(maintenanceList));
  maintenance
    .command('remove')
    .description('remove a window')
    .argument('<NAME>', 'the window\'s name')
    .addOption(stateDir())
    .action(act(maintenanceRemove));

  program
    .command('thaw')
    .description('thaw for the next N boots (session ends), then freeze; --boots 0 withdraws the counter (needs the daemon)')
    .requiredOption('--boots <N>', 'how many session ends stay thawed', wholeNumber('--boots'))
    .addOption(stateDir())
    .action(act(thawBoots));

  program
    .command('passwd')
    .description('set the administrator password of the web UI and API: through the running daemon, or in the state directory when none runs')
    .addOption(stateDir())
    .option('--password-stdin', 'read the password from stdin (one line) instead of asking twice on the terminal')
    .action(act(passwd));

  program
    .command('demo')
    .description('the appliance on a laptop: a demo disk in DIR, served over NBD, with the web UI')
    .option('--dir <DIR>', 'where the demo keeps its files', '.snapback-demo')
    .addOption(httpListen())
    .action(actServer(commands.demo));

  const fleetConsole = program.command('console').description('the console of a fleet of appliances: their status, commands and models, over MQTT and HTTP');
  fleetConsole
    .command('serve')
    .description('run the console: its API (and web UI), connected to the fleet\'s MQTT broker')
    .requiredOption('--data-dir <DIR>', "the console's data directory (its database and model catalogue)")
    .addOption(httpListen())
    .requiredOption('--mqtt <URL>', "the broker, with the console's account: mqtt[s]://USER:PASSWORD@HOST:PORT")
    .option('--mqtt-for-appliances <URL>', 'the broker URL enrolled appliances are given (default: --mqtt without its account)')
    .option('--broker-ca <FILE>', "the CA of the broker's certificate (PEM), trusted by the console and handed to appliances")
    .option('--broker-password-file <FILE>', "the broker's password file, kept by the console (mosquitto_passwd format; with --broker-acl-file)")
    .option('--broker-acl-file <FILE>', "the broker's ACL file, kept by the console (mosquitto's acl_file format)")
    .option('--broker-pid-file <FILE>', 'the broker\'s pid file: it gets SIGHUP after each account change (mosquitto then rereads both files)')
    .option('--public-url <URL>', 'the console\'s URL as appliances reach it (model catalogue URLs; default the listen address)')
    .option('--http-host-name <NAME>', 'a further name the console answers to (repeatable)', (v: string, prev: string[]) => [...prev, v], [] as string[])
    .option('--http-tls-cert <FILE>', 'serve HTTPS with this certificate (PEM; with --http-tls-key)')
    .option('--http-tls-key <FILE>', 'the private key of --http-tls-cert (PEM)')
    .action(actServer(consoleCommands.consoleServe));
  fleetConsole
    .command('token')
    .description('API tokens of the console')
    .command('create')
    .description('make an API token for scripts (printed as the last line, shown only once)')
    .requiredOption('--data-dir <DIR>', "the console's data directory")
    .option('--name <N>', 'what the token is for', 'cli')
    .action(act(consoleCommands.consoleTokenCreate));
  fleetConsole
    .command('enroll-code')
    .description('enrollment codes of the console')
    .command('create')
    .description('make a one-time enrollment code an appliance redeems for its broker account (printed as the last line)')
    .requiredOption('--data-dir <DIR>', "the console's data directory")
    .option('--name <NAME>', 'the appliance name it is for (default: any)', bySchema(applianceNameSchema))
    .option('--valid-hours <N>', 'how long it is valid (default 24)', checked((v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 720) throw new InvalidArgumentError('--valid-hours is a whole number from 1 to 720');
      return n;
    }))
    .action(act(consoleCommands.consoleEnrollCodeCreate));

  // The top-level help is the reference the README carries: every command's synopsis.
  program.configureHelp({
    formatHelp: (cmd) => `usage: snapback COMMAND [options]\n\n${renderReference(cmd)}\n${STATE_DIR_ENV} may stand for --state-dir. "snapback help COMMAND" shows a command's flags.\n`,
  });
  return program;
}
