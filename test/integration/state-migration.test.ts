/**
 * A state directory made by the release before the model library (test/fixtures/state-v1:
 * snapback.json version 1 naming the model's files, a write log with a host write in the
 * current session) keeps working: the first command or the first start registers its model in
 * the library in place (the image is not copied), rewrites snapback.json as version 2, leaves
 * the write log as it was, and the host reads what it wrote. A migration cut short (the model
 * registered, snapback.json not yet rewritten) completes at the next start.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import type { ModelRecord } from '../../appliance/api/models.js';
import { exited, killDaemon, nbdUri, snapback, startServe, tool } from '../helpers/cli.js';

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'state-v1');

interface Expected {
  root: string;
  modelId: string;
  modelName: string;
  hostWrite: { offset: number; length: number; byte: number };
}

describe('a state directory of the release before the model library', function () {
  this.timeout(120_000);
  const expected = JSON.parse(readFileSync(join(FIXTURE, 'expected.json'), 'utf8')) as Expected;
  let dir: string;
  let state: string;
  let daemon: ChildProcess | null = null;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-v1-'));
    cpSync(FIXTURE, dir, { recursive: true });
    state = join(dir, 'state');
    // the directory as its administrator moved it here: its paths follow
    const config = readFileSync(join(state, 'snapback.json'), 'utf8');
    assert.match(config, /"version": 1/);
    writeFileSync(join(state, 'snapback.json'), config.split(expected.root).join(dir));
  });
  afterEach(async () => {
    daemon = await killDaemon(daemon);
    rmSync(dir, { recursive: true, force: true });
  });

  /** What the host must read: the model with its write of the current session. */
  function hostView(): Buffer {
    const b = readFileSync(join(dir, 'model.img'));
    b.fill(expected.hostWrite.byte, expected.hostWrite.offset, expected.hostWrite.offset + expected.hostWrite.length);
    return b;
  }

  async function servedAfterStart(): Promise<Buffer> {
    daemon = await startServe(state, ['--keep-session']);
    const out = join(dir, 'export.img');
    const r = tool('nbdcopy', [nbdUri(state), out]);
    assert.equal(r.code, 0, r.stderr);
    daemon.kill('SIGTERM');
    await exited(daemon);
    daemon = null;
    return readFileSync(out);
  }

  function assertMigrated(): void {
    const config = JSON.parse(readFileSync(join(state, 'snapback.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(config).sort(), ['createdAt', 'disk', 'regionSize', 'version']);
    assert.equal(config.version, 2);
    const record = JSON.parse(readFileSync(join(state, 'models', expected.modelId, 'record.json'), 'utf8')) as { image: string; name: string };
    assert.equal(record.image, join(dir, 'model.img'), 'the model is registered where it lies');
    assert.equal(existsSync(join(state, 'models', expected.modelId, 'image')), false, 'not copied');
  }

  it('the first command migrates it in place: the model is active, the log untouched', () => {
    const log = readFileSync(join(state, 'write-log.bin'));
    const r = snapback(['model', 'list', '--json', '--state-dir', state]);
    assert.equal(r.code, 0, r.stderr);
    const models = JSON.parse(r.stdout) as ModelRecord[];
    assert.deepEqual(models.map((m) => [m.id, m.name, m.active, m.complete]), [[expected.modelId, expected.modelName, true, true]]);
    assertMigrated();
    assert.ok(readFileSync(join(state, 'write-log.bin')).equals(log), 'the write log is as it was');
    const v = snapback(['verify', '--state-dir', state]);
    assert.equal(v.code, 0, v.stdout + v.stderr);
  });

  it('the first start migrates it, and the host reads what it wrote before', async () => {
    assert.ok((await servedAfterStart()).equals(hostView()));
    assertMigrated();
  });

  it('a migration cut short before snapback.json was rewritten completes at the next start', async () => {
    const v1 = readFileSync(join(state, 'snapback.json'));
    assert.equal(snapback(['model', 'list', '--state-dir', state]).code, 0);
    writeFileSync(join(state, 'snapback.json'), v1); // as if the power went before the last step
    assert.ok((await servedAfterStart()).equals(hostView()));
    assertMigrated();
    assert.deepEqual(readdirSync(join(state, 'models')).filter((n) => !n.startsWith('.')), [expected.modelId], 'registered once');
  });
});
