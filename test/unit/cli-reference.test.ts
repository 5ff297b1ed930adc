/**
 * The CLI's commands, flags and help come from one definition (appliance/cli/program.ts): the
 * README's CLI block, `snapback --help` and `--version` are checked against it here.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expectedCliBlock, readmeCliBlock } from '../helpers/readme-cli.js';
import { snapback } from '../helpers/cli.js';
import { VERSION } from '../../appliance/version.js';

const PACKAGE_JSON = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'package.json');

describe('CLI reference from one definition', () => {
  it('the README CLI block equals the reference rendered from the CLI definition (npm run readme:cli rewrites it)', () => {
    assert.equal(readmeCliBlock(), expectedCliBlock(), 'README.md CLI block drifted from appliance/cli/program.ts: run npm run readme:cli');
  });

  it('the reference names every flag, including --manifest, --name and --keep-session', () => {
    const ref = expectedCliBlock();
    for (const flag of ['--manifest FILE', '--name NAME', '--keep-session', '--disk-matches-model', '--nbd-listen HOST:PORT', '--hash sha256|sha1|blake2b512']) assert.ok(ref.includes(flag), `${flag} in ${ref}`);
  });

  it('snapback --help prints the same reference, and exits 0', () => {
    const r = snapback(['--help']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.includes(expectedCliBlock()), r.stdout);
  });

  it('the version comes from package.json (appliance/version.ts, snapback --version)', () => {
    const pkg = JSON.parse(readFileSync(PACKAGE_JSON, 'utf8')) as { version: string };
    assert.equal(VERSION, pkg.version);
    const r = snapback(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  });
});
