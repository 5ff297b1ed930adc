/**
 * The benchmark's result files: a run of a part replaces that part's section of latest.md and
 * keeps the others'; a partial run (`--only`) is kept as a dated record and replaces nothing, so
 * the last full figures are never lost to a run of one workload.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writePartResults, writePartialRun } from '../../bench/results-files.js';

describe('bench result files', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'snapback-bench-results-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('a part replaces its own section and keeps the other parts', () => {
    writePartResults('storage', { rows: 'full storage' }, '### Storage\n\nfull storage run', dir);
    writePartResults('fleet', { rows: 'fleet' }, '### Fleet\n\nfleet run', dir);
    const md = writePartResults('storage', { rows: 'second storage' }, '### Storage\n\nsecond storage run', dir);
    assert.match(md, /second storage run/);
    assert.doesNotMatch(md, /full storage run/);
    assert.ok(md.indexOf('### Storage') < md.indexOf('### Fleet'), 'storage before fleet');
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'latest.json'), 'utf8')).parts, { storage: { rows: 'second storage' }, fleet: { rows: 'fleet' } });
  });

  it('a partial run is kept as a dated record and leaves the part and latest.md as they were', () => {
    writePartResults('storage', { rows: 'full storage' }, '### Storage\n\nfull storage run', dir);
    const latest = readFileSync(join(dir, 'latest.md'), 'utf8');
    const part = readFileSync(join(dir, 'parts', 'storage.json'), 'utf8');
    const printed = writePartialRun('storage', { rows: 'restore only' }, '### Storage\n\nrestore only', dir);
    assert.match(printed, /restore only/);
    assert.match(printed, /partial run/);
    assert.equal(readFileSync(join(dir, 'latest.md'), 'utf8'), latest, 'latest.md unchanged');
    assert.equal(readFileSync(join(dir, 'parts', 'storage.json'), 'utf8'), part, 'the part unchanged');
    const records = readdirSync(dir).filter((f) => f.endsWith('-storage-partial.json'));
    assert.equal(records.length, 1);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, records[0]!), 'utf8')), { rows: 'restore only' });
  });
});
