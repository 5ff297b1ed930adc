/**
 * The daemon on a 1 TiB disk (16 M regions of 64 KiB; a sparse all-zero model built without
 * hashing, test/helpers/sparse-state.ts): its memory stays bounded from start through session
 * ends with a live-events client attached, the region map on the wire is compact and says
 * exactly which regions the host wrote, and a session end is announced as "map replaced", not
 * as 16 M per-region changes. A memory bound, not a timing assertion.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { makeSparseState } from '../helpers/sparse-state.js';
import { startServe, exited, nbdUri } from '../helpers/cli.js';
import { qemuIo } from '../helpers/nbd-clients.js';
import { waitFor } from '../helpers/wait.js';
import { withUnitNodeOptions } from '../helpers/unit-node-options.js';
import { callDaemon } from '../../appliance/cli/control-client.js';
import { forEachRun, type RegionMapEncoding, type RegionRun } from '../../appliance/api/region-map-wire.js';
import { RegionState } from '../../appliance/session/appliance-service.js';

const TiB = 2 ** 40;
const REGION = 64 * 1024;
/**
 * What the daemon's RSS may grow by from its start through three session ends with a live client
 * (one object per region at a session end took it from 0.3 to over 2 GB); the appliance's budget
 * for a 1 TiB disk after start and after every session end (about 87 MB here, most of it Node
 * itself: the model's 1 M digests are read from its manifest file when needed, not held; 107 MB
 * when they were held); and a ceiling for the peak of the start, which includes bringing the
 * older state directory this helper makes into the model library (about 90 MB; 120 to 190 MB
 * while the manifest was read in megabyte strings).
 */
const RSS_GROWTH_BOUND = 32 * 2 ** 20;
const RSS_TARGET = 100 * 2 ** 20;
const RSS_PEAK_BOUND = 150 * 2 ** 20;

function rssOf(pid: number, key: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no ${key} for ${pid}`);
  return Number(m[1]) * 1024;
}
const mb = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MB`;

interface WireMap {
  count: number;
  written: number;
  pending: number;
  encoding: RegionMapEncoding;
  data: string;
}

/** The non-clean runs of the map as the API sends it. */
function dirtyRuns(m: WireMap): RegionRun[] {
  const out: RegionRun[] = [];
  forEachRun({ count: m.count, encoding: m.encoding, data: new Uint8Array(Buffer.from(m.data, 'base64')) }, (start, length, state) => {
    if (state !== RegionState.clean) out.push([start, length, state]);
  });
  return out;
}

/** An /api/events stream on the control socket, collecting its events. */
function liveEvents(socketPath: string): { events: { event: string; data: unknown }[]; bytes: () => number; close: () => void } {
  const events: { event: string; data: unknown }[] = [];
  let bytes = 0;
  let buf = '';
  const req = request({ socketPath, path: '/api/events', method: 'GET' }, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      bytes += Buffer.byteLength(chunk);
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
      }
    });
  });
  req.on('error', () => undefined);
  req.end();
  return { events, bytes: () => bytes, close: () => req.destroy() };
}

describe('region map at scale: the daemon on a sparse 1 TiB disk', function () {
  this.timeout(300_000);
  let dir = '';
  let child: ChildProcess | null = null;

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited(child);
    }
    child = null;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('stays within 100 MB of RSS after start and through three session ends with a live client, and its compact map names exactly the written regions', async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-scale-'));
    const st = await makeSparseState({ dir, diskBytes: TiB });
    const n = st.regionCount;
    assert.equal(n, 16 * 1024 * 1024);
    child = await withUnitNodeOptions(() => startServe(st.stateDir));
    const pid = child.pid!;
    const ctl = join(st.stateDir, 'control.sock');
    await new Promise((r) => setTimeout(r, 1000)); // the start's own restore check and GC have run
    const atStart = rssOf(pid);
    const notes: string[] = [`after start ${mb(atStart)}`];
    assert.ok(atStart <= RSS_TARGET, `RSS ${mb(atStart)} after start on 1 TiB (budget ${mb(RSS_TARGET)})`);
    const live = liveEvents(ctl);
    await waitFor('the first status event', () => live.events.some((e) => e.event === 'status'));

    // The host writes three regions at the start, one in the middle and the last one.
    const uri = nbdUri(st.stateDir);
    const mid = 10_000_000;
    await qemuIo(uri, ['write -P 0x5a 0 192k', `write -P 0x5b ${mid * REGION} 64k`, `write -P 0x5c ${(n - 1) * REGION} 64k`]);
    const expected: RegionRun[] = [
      [0, 3, RegionState.written],
      [mid, 1, RegionState.written],
      [n - 1, 1, RegionState.written],
    ];
    const map = (await callDaemon(ctl, 'GET', '/api/regions')) as WireMap;
    assert.equal(map.count, n);
    assert.equal(map.encoding, 'runs');
    assert.ok(Buffer.from(map.data, 'base64').length < 32, `a map with three written stretches takes ${Buffer.from(map.data, 'base64').length} bytes`);
    assert.deepEqual(dirtyRuns(map), expected);
    assert.deepEqual([map.written, map.pending], [5, 0]);
    // the live stream said the same, as runs
    await waitFor('region runs on the live stream', () => live.events.filter((e) => e.event === 'regions').flatMap((e) => (e.data as { runs?: RegionRun[] }).runs ?? []).length >= 3);
    const liveRuns = live.events.filter((e) => e.event === 'regions').flatMap((e) => (e.data as { runs: RegionRun[] }).runs);
    const liveWritten = new Set<number>();
    for (const [s, l, state] of liveRuns) for (let r = s; r < s + l; r++) if (state === RegionState.written) liveWritten.add(r);
    assert.deepEqual([...liveWritten].sort((a, b) => a - b), [0, 1, 2, mid, n - 1]);
    notes.push(`after writes ${mb(rssOf(pid))}`);

    for (let i = 1; i <= 3; i++) {
      const before = live.events.length;
      const bytesBefore = live.bytes();
      await callDaemon(ctl, 'POST', '/api/session/end', { wait: true });
      await waitFor(`"map replaced" after session end ${i}`, () => live.events.slice(before).some((e) => e.event === 'regions' && (e.data as { replaced?: boolean }).replaced === true));
      const after = (await callDaemon(ctl, 'GET', '/api/regions')) as WireMap;
      // what the host wrote is pending (or already restored): nothing else changed
      for (const [s, l, state] of dirtyRuns(after)) {
        assert.equal(state, RegionState.pending);
        for (let r = s; r < s + l; r++) assert.ok(r <= 2 || r === mid || r === n - 1, `region ${r} is pending but was never written`);
      }
      await waitFor('the restore', async () => ((await callDaemon(ctl, 'GET', '/api/status')) as { regions: { pending: number } }).regions.pending === 0);
      const eventBytes = live.bytes() - bytesBefore;
      assert.ok(eventBytes < 64 * 1024, `session end ${i} sent ${eventBytes} bytes of live events`);
      await new Promise((r) => setTimeout(r, 500)); // the live ticks after the end have run
      const rss = rssOf(pid);
      notes.push(`after session end ${i} ${mb(rss)}`);
      assert.ok(rss - atStart < RSS_GROWTH_BOUND, `RSS grew by ${mb(rss - atStart)} by session end ${i} (bound ${mb(RSS_GROWTH_BOUND)}): ${notes.join(', ')}`);
      assert.ok(rss <= RSS_TARGET, `RSS ${mb(rss)} after session end ${i} (budget ${mb(RSS_TARGET)}): ${notes.join(', ')}`);
    }
    const peak = rssOf(pid, 'VmHWM');
    live.close();
    assert.ok(peak < RSS_PEAK_BOUND, `peak RSS ${mb(peak)} (bound ${mb(RSS_PEAK_BOUND)}): ${notes.join(', ')}`);
    child.kill('SIGTERM');
    await exited(child);
  });
});
