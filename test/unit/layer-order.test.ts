/**
 * Imports point one way. The layers below are the one declaration of the order; this test
 * parses every import in appliance/ and web-ui/src/ (and console/ when it exists) and fails on
 * any that runs from a lower layer to a higher one, on an unlisted folder, on Node or express in
 * the wire contract, and on express in a hardware folder.
 *
 * A module may import its own layer or any lower one. Layers, lowest first:
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const LAYERS: readonly { name: string; holds: readonly string[]; what: string }[] = [
  {
    name: 'foundation',
    holds: ['appliance/api', 'appliance/errors.ts', 'appliance/logger.ts', 'appliance/component.ts', 'appliance/version.ts', 'appliance/zod-issues.ts', 'appliance/clock.ts'],
    what: 'the wire contract (API types and their zod schemas, Node-free), errors, the logger, the version, the Component interface, the zod issue formatter, the Clock of the hardware front ends',
  },
  { name: 'native I/O', holds: ['appliance/native'], what: 'the native addon (splice and the reply sender thread) and its loader' },
  { name: 'storage', holds: ['appliance/storage'], what: 'block devices, model image and manifest, write log, protected disk, hydrator, engine, model verification' },
  { name: 'state', holds: ['appliance/state'], what: 'the state store: settings, users, tokens, session history, audit log' },
  { name: 'session', holds: ['appliance/session'], what: 'host sessions and modes over the engine: the ApplianceService the front ends use' },
  { name: 'hardware and fleet front ends', holds: ['appliance/nbd', 'appliance/gadget', 'appliance/gpio', 'appliance/maintenance', 'appliance/management'], what: 'NBD server, USB gadget, GPIO, maintenance windows, the fleet link over MQTT (no express, no HTTP)' },
  { name: 'HTTP front end', holds: ['appliance/http'], what: 'web UI listener, JSON API (also for the GPIO), control socket' },
  { name: 'daemon', holds: ['appliance/daemon'], what: 'constructs and starts every component in order' },
  {
    name: 'console',
    holds: ['console/server'],
    what: 'the console of a fleet: its SQLite store, the MQTT broker link, the broker account files, the model catalogue, enrollment and its HTTP API',
  },
  { name: 'command line', holds: ['appliance/cli'], what: 'the snapback command (serve starts the daemon, console serve the console)' },
];

/**
 * Browser code: may import only browser code and (types only) the wire contract, except the wire
 * modules the web UI build compiles for the browser (web-ui/tsconfig.wire.json), which it may
 * import as code: those import nothing at all, so they run in a browser as they are. Browser code
 * reaches files of other trees through its tsconfig's rootDirs, which merge folders into one
 * tree: web-ui/src reaches `./api/…` in appliance/, the console's UI reaches the appliance web
 * UI's building blocks (`./api.js`, `./dom.js`) in web-ui/src. Those rootDirs are read from the
 * tsconfig files, so an import through them is checked where it really lands.
 */
const BROWSER = { holds: ['web-ui/src', 'console/web'], mayImportTypes: ['appliance/api'], runtimeWire: 'web-ui/tsconfig.wire.json', tsconfigs: ['web-ui/tsconfig.json', 'console/web/tsconfig.json'] };

/** Each browser tsconfig's rootDirs, as repository folders (one merged tree each). */
function rootDirGroups(): string[][] {
  return BROWSER.tsconfigs.map((c) => {
    const config = ts.readConfigFile(join(root, c), ts.sys.readFile);
    const dirs = config.config?.compilerOptions?.rootDirs as string[] | undefined;
    assert.ok(!config.error && Array.isArray(dirs), `${c} has rootDirs`);
    return dirs.map((d) => relative(root, resolve(root, dirname(c), d)).split(sep).join('/'));
  });
}

/** The wire-contract modules the browser loads as code (the files of BROWSER.runtimeWire). */
function runtimeWireModules(): string[] {
  const config = ts.readConfigFile(join(root, BROWSER.runtimeWire), ts.sys.readFile);
  assert.ok(!config.error && Array.isArray(config.config?.files), `${BROWSER.runtimeWire} lists its files`);
  return (config.config.files as string[]).map((f) => relative(root, resolve(root, dirname(BROWSER.runtimeWire), f)).split(sep).join('/'));
}
/** Folders whose code must not depend on express (hardware and the wire contract). */
const NO_EXPRESS = ['appliance/api', 'appliance/storage', 'appliance/state', 'appliance/session', 'appliance/nbd', 'appliance/gadget', 'appliance/gpio', 'appliance/maintenance', 'appliance/management'];

const here = dirname(fileURLToPath(import.meta.url)); // dist/test/unit
const root = resolve(here, '..', '..', '..');
const rootDirs = rootDirGroups();

interface Import {
  file: string;
  specifier: string;
  typeOnly: boolean;
  line: number;
}

function tsFiles(dir: string): string[] {
  const abs = join(root, dir);
  if (!existsSync(abs)) return [];
  if (statSync(abs).isFile()) return [dir];
  return readdirSync(abs, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [join(dir, e.name)] : [],
  );
}

const parsed = new Map<string, Import[]>();

function importsOf(file: string): Import[] {
  const known = parsed.get(file);
  if (known) return known;
  const text = readFileSync(join(root, file), 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const out: Import[] = [];
  const add = (spec: ts.Expression | undefined, typeOnly: boolean, node: ts.Node): void => {
    if (spec && ts.isStringLiteral(spec)) out.push({ file, specifier: spec.text, typeOnly, line: sf.getLineAndCharacterOfPosition(node.getStart()).line + 1 });
  };
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      const c = node.importClause;
      const allTypes =
        c !== undefined &&
        (c.isTypeOnly ||
          (c.name === undefined && c.namedBindings !== undefined && ts.isNamedImports(c.namedBindings) && c.namedBindings.elements.length > 0 && c.namedBindings.elements.every((e) => e.isTypeOnly)));
      add(node.moduleSpecifier, allTypes, node);
    } else if (ts.isExportDeclaration(node)) {
      add(node.moduleSpecifier, node.isTypeOnly, node);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      add(node.arguments[0], false, node);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal as ts.Expression, true, node);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  parsed.set(file, out);
  return out;
}

function holderOf(file: string, holds: readonly string[]): boolean {
  const f = file.split(sep).join('/');
  return holds.some((h) => f === h || f.startsWith(h + '/'));
}

function layerOf(file: string): number {
  return LAYERS.findIndex((l) => holderOf(file, l.holds));
}

/**
 * The repository path an import points at (null: a package or a Node built-in). An import that
 * is no file where it points is looked for in the other folders of the rootDirs that merge the
 * importing file's folder (as the compiler does); `groups` are those rootDirs.
 */
function target(imp: Import, groups: readonly string[][] = rootDirs): string | null {
  if (!imp.specifier.startsWith('.')) return null;
  const abs = resolve(root, dirname(imp.file), imp.specifier).replace(/\.js$/, '.ts');
  const path = relative(root, abs).split(sep).join('/');
  if (existsSync(abs)) return path;
  for (const group of groups) {
    const own = group.find((d) => holderOf(imp.file, [d]) && holderOf(path, [d]));
    if (own === undefined) continue;
    for (const other of group) {
      const merged = other + path.slice(own.length);
      if (existsSync(join(root, merged))) return merged;
    }
  }
  return path;
}

const where = (i: Import): string => `${i.file}:${i.line} imports '${i.specifier}'`;

/** The imports of `files` that run upward, as messages. */
function upwardImports(files: readonly string[], imports: (f: string) => Import[]): string[] {
  const bad: string[] = [];
  for (const f of files) {
    const from = layerOf(f);
    for (const imp of imports(f)) {
      const t = target(imp);
      if (t === null) continue;
      const to = layerOf(t);
      if (to < 0) bad.push(`${where(imp)}: not in any layer`);
      else if (to > from) bad.push(`${where(imp)}: ${LAYERS[from]!.name} → ${LAYERS[to]!.name}`);
    }
  }
  return bad;
}

describe('layers: imports point one way', function () {
  this.timeout(120_000); // parses a few hundred files on a slow machine
  // Every module of appliance/ and console/ but the browser code: a new folder belongs to a layer or fails here.
  const applianceFiles = [...tsFiles('appliance'), ...tsFiles('console').filter((f) => !holderOf(f, BROWSER.holds))];
  const browserFiles = BROWSER.holds.flatMap(tsFiles);
  const wire = runtimeWireModules();

  it('finds the code (the file walk works), in every folder a layer or the browser code holds', () => {
    assert.ok(applianceFiles.length > 50, `only ${applianceFiles.length} files under appliance/`);
    assert.ok(browserFiles.length > 5, `only ${browserFiles.length} files under web-ui/src`);
    const folders = [...LAYERS.flatMap((l) => l.holds), ...BROWSER.holds];
    assert.deepEqual(folders.filter((h) => tsFiles(h).length === 0), [], 'a layer holds a folder or file with no code');
  });

  it('every appliance and console module belongs to a declared layer', () => {
    assert.deepEqual(applianceFiles.filter((f) => layerOf(f) < 0), []);
  });

  it('no appliance or console module imports from a higher layer', () => {
    assert.deepEqual(upwardImports(applianceFiles, importsOf), []);
  });

  it('the wire contract (appliance/api) is Node-free: it imports only zod and itself', () => {
    const bad = tsFiles('appliance/api')
      .flatMap(importsOf)
      .filter((i) => (i.specifier.startsWith('.') ? !holderOf(target(i) ?? '', ['appliance/api']) : i.specifier !== 'zod'))
      .map(where);
    assert.deepEqual(bad, []);
  });

  it('hardware folders, storage and services import no express', () => {
    const bad = NO_EXPRESS.flatMap(tsFiles)
      .flatMap(importsOf)
      .filter((i) => i.specifier === 'express' || i.specifier.startsWith('express/'))
      .map(where);
    assert.deepEqual(bad, []);
  });

  it('browser code imports only browser code and, types only, the wire contract', () => {
    const bad: string[] = [];
    for (const f of browserFiles) {
      for (const imp of importsOf(f)) {
        const t = target(imp);
        if (t === null) bad.push(`${where(imp)}: a package or Node module in browser code`);
        else if (!existsSync(join(root, t))) bad.push(`${where(imp)}: no such file, here or through the rootDirs`);
        else if (holderOf(t, BROWSER.holds)) continue;
        else if (!holderOf(t, BROWSER.mayImportTypes)) bad.push(`${where(imp)}: outside the browser code`);
        else if (!imp.typeOnly && !wire.includes(t)) bad.push(`${where(imp)}: the wire contract is imported with \`import type\` only, but for the modules of ${BROWSER.runtimeWire} (no bundler)`);
      }
    }
    assert.deepEqual(bad, []);
  });

  it('the wire modules the browser runs import nothing, and browser code reaches them', () => {
    assert.ok(wire.length > 0, `${BROWSER.runtimeWire} lists no module`);
    const bad = wire.flatMap((f) => (holderOf(f, BROWSER.mayImportTypes) ? importsOf(f).filter((i) => !i.typeOnly).map((i) => `${where(i)}: a module the browser runs as it is imports code`) : [`${f}: not in the wire contract`]));
    assert.deepEqual(bad, []);
    const reached = new Set(browserFiles.flatMap(importsOf).filter((i) => !i.typeOnly).map((i) => target(i)));
    assert.deepEqual(wire.filter((f) => !reached.has(f)), [], 'a module compiled for the browser that no browser code imports');
  });

  it("the checker follows each browser tsconfig's rootDirs: the console UI's ./api.js is the web UI's, and a missing file is no file", () => {
    const imp = (file: string, specifier: string): Import => ({ file, specifier, typeOnly: false, line: 1 });
    assert.equal(target(imp('console/web/src/fleet-page.ts', './api.js')), 'web-ui/src/api.ts');
    assert.equal(target(imp('web-ui/src/app.ts', './api/region-map-wire.js')), 'appliance/api/region-map-wire.ts');
    // Through the console's rootDirs a storage module is still storage: not browser code.
    const probe = imp('console/web/src/probe.ts', '../../../appliance/storage/engine.js');
    assert.equal(target(probe), 'appliance/storage/engine.ts');
    assert.equal(target(imp('console/web/src/probe.ts', './nowhere.js')), 'console/web/src/nowhere.ts');
    assert.equal(target(imp('console/web/src/probe.ts', './api.js'), []), 'console/web/src/api.ts', 'without rootDirs the import lands nowhere');
  });

  it('the checker reports an upward import and accepts a downward one', () => {
    const probes: Record<string, Import[]> = {
      'appliance/storage/probe.ts': [{ file: 'appliance/storage/probe.ts', specifier: '../session/appliance-service.js', typeOnly: true, line: 3 }],
      'appliance/http/probe.ts': [{ file: 'appliance/http/probe.ts', specifier: '../storage/engine.js', typeOnly: false, line: 4 }],
    };
    assert.deepEqual(upwardImports(Object.keys(probes), (f) => probes[f] ?? []), [
      "appliance/storage/probe.ts:3 imports '../session/appliance-service.js': storage → session",
    ]);
  });
});
