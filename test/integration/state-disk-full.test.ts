/**
 * A full filesystem tells the truth. The state directory and the working disk each live on a
 * small tmpfs of their own (real ENOSPC from the kernel, no fault injection): the background
 * restore runs out of space on the disk's, and the state file cannot be written on the state
 * directory's. What the CLI reports must be what happened: a mode change and a session end that
 * the write log's header records succeed, are audited, and the status shows the write error and
 * the restore's error until space is back.
 */
import assert from 'node:assert/strict';
import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { callDaemon } from '../../appliance/cli/control-client.js';
import type { ApplianceStatus } from '../../appliance/session/appliance-service.js';
import { Prng } from '../helpers/prng.js';
import { killDaemon, snapback, startServe } from '../helpers/cli.js';
import { fillUp, Mounts } from '../helpers/mounts.js';
import { waitFor } from '../helpers/wait.js';

const SIZE = 8 << 20;

describe('disk full: what is reported is what happened', function () {
  this.timeout(120_000);
  let dir: string;
  let stateFs: string;
  let diskFs: string;
  let state: string;
  let daemon: ChildProcess | null = null;
  const mounts = new Mounts();

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-full-'));
    stateFs = join(dir, 'statefs');
    diskFs = join(dir, 'diskfs');
    mounts.tmpfs(stateFs, '1m');
    mounts.tmpfs(diskFs, '4m'); // half of what restoring the 8 MiB model needs
    const model = join(dir, 'model.img');
    writeFileSync(model, new Prng(11).bytes(SIZE));
    assert.equal(snapback(['model', 'manifest', model]).code, 0);
    state = join(stateFs, 'state');
    const r = snapback(['init', '--state-dir', state, '--model', model, '--disk', join(diskFs, 'disk.img')]);
    assert.equal(r.code, 0, r.stderr);
  });

  afterEach(async () => {
    daemon = await killDaemon(daemon);
    mounts.unmountAll();
    rmSync(dir, { recursive: true, force: true });
  });

  const control = (): string => join(state, 'control.sock');
  const status = async (): Promise<ApplianceStatus> => (await callDaemon(control(), 'GET', '/api/status')) as ApplianceStatus;

  /** The status once `ok` holds for it. */
  const statusWhen = (what: string, ok: (s: ApplianceStatus) => boolean): Promise<ApplianceStatus> =>
    waitFor(what, async () => {
      const s = await status();
      return ok(s) ? s : null;
    }, 30_000, 100);

  it('mode thawed and session end --wait on a full state filesystem succeed, are audited, and the status shows the write error and the restore error', async () => {
    daemon = await startServe(state);

    // The restore runs out of space on the disk's filesystem: the status says so.
    const stopped = await statusWhen('the restore to stop on a full disk', (s) => s.hydration.lastError !== null);
    assert.match(stopped.hydration.lastError ?? '', /no space|ENOSPC/i);
    assert.ok(stopped.hydration.pendingRegions > 0);

    // Now the state directory's filesystem fills up too.
    const filler = fillUp(stateFs);
    const sessionBefore = (await status()).session.number;

    const mode = snapback(['mode', 'thawed', '--state-dir', state]);
    assert.equal(mode.code, 0, `mode thawed reports what happened (the log header changed): ${mode.stderr}`);
    let s = await status();
    assert.equal(s.mode, 'thawed');
    assert.match(s.stateDir.writeError ?? '', /no space/i, 'the status shows that the state file cannot be written');

    const end = snapback(['session', 'end', '--wait', '--state-dir', state]);
    assert.equal(end.code, 0, `session end --wait reports what happened: ${end.stderr}`);
    s = await status();
    assert.equal(s.session.number, sessionBefore + 1);

    const audit = (await callDaemon(control(), 'GET', '/api/audit')) as { entries: { action: string; actor: string }[] };
    const actions = audit.entries.map((e) => e.action);
    assert.ok(actions.includes('mode.set'), `mode.set audited: ${actions.join(', ')}`);
    assert.ok(actions.includes('session.end'), `session.end audited: ${actions.join(', ')}`);

    // Space comes back: the next write saves everything that was kept in memory.
    rmSync(filler);
    assert.equal(snapback(['mode', 'frozen', '--state-dir', state]).code, 0);
    s = await statusWhen('the state file to be written again', (x) => x.stateDir.writeError === null);
    assert.equal(s.mode, 'frozen');
    const onDisk = JSON.parse(readFileSync(join(state, 'state.json'), 'utf8')) as { audit: { action: string }[]; sessions: { number: number; endReason: string | null }[] };
    const saved = onDisk.audit.map((e) => e.action);
    assert.deepEqual(
      saved.filter((a) => a === 'mode.set' || a === 'session.end'),
      ['mode.set', 'session.end', 'mode.set'],
    );
    assert.equal(onDisk.sessions.find((x) => x.number === sessionBefore)?.endReason, 'api');
  });
});
