/**
 * The compact region map (appliance/session/region-map-codec.ts encodes it,
 * appliance/api/region-map-wire.ts decodes it for the tests and the web UI): what GET /api/regions
 * and the live events carry. Every map decodes to exactly the states it was made from, whatever its
 * shape, in at most two bits per region; damaged maps are refused; changes become runs of the
 * regions' current states and give up to "replaced" past their bound.
 */
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegionState } from '../../appliance/session/appliance-service.js';
import { RegionChangeBuffer, bytesStateSource, encodeRegionMap, encodeRegionMapAsync, regionLogStates, runsOf } from '../../appliance/session/region-map-codec.js';
import { RegionMapDecodeError, decodeRegionMap, forEachRun } from '../../appliance/api/region-map-wire.js';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { RegionLog, logFileSize } from '../../appliance/storage/region-log.js';
import { Prng } from '../helpers/prng.js';

const { clean, written, pending } = RegionState;

function counts(map: Uint8Array): { written: number; pending: number } {
  let w = 0;
  let p = 0;
  for (const v of map) {
    if (v === written) w++;
    else if (v === pending) p++;
  }
  return { written: w, pending: p };
}

describe('region map codec', () => {
  it('a clean 16 M-region disk (1 TiB) is one byte on the wire', () => {
    const n = 16 * 1024 * 1024;
    const src = { count: n, stateOf: () => clean, nextNonClean: () => n };
    const enc = encodeRegionMap(src);
    assert.equal(enc.encoding, 'runs');
    assert.ok(enc.data.length <= 5, `${enc.data.length} bytes`);
    let seen = 0;
    forEachRun(enc, (start, length, state) => {
      assert.deepEqual([start, length, state], [0, n, clean]);
      seen++;
    });
    assert.equal(seen, 1);
  });

  it('every map decodes to the states it was made from, in the smaller encoding, never over two bits per region', () => {
    const rng = new Prng(0x5eed);
    const rand = (): number => rng.next();
    const shapes: { name: string; n: number; gen: (r: number) => number }[] = [
      { name: 'empty', n: 0, gen: () => clean },
      { name: 'one region', n: 1, gen: () => written },
      { name: 'scattered writes', n: 100_003, gen: () => (rand() < 0.001 ? written : clean) },
      { name: 'long runs', n: 200_000, gen: (r) => [clean, written, pending][Math.floor(r / 5000) % 3]! },
      { name: 'every other region (worst case for runs)', n: 65_537, gen: (r) => (r % 2 ? pending : written) },
      { name: 'random thirds', n: 50_001, gen: () => [clean, written, pending][Math.floor(rand() * 3)]! },
      { name: 'all pending', n: 123_457, gen: () => pending },
    ];
    for (const s of shapes) {
      const map = new Uint8Array(s.n);
      for (let r = 0; r < s.n; r++) map[r] = s.gen(r);
      const enc = encodeRegionMap(bytesStateSource(map));
      assert.equal(enc.count, s.n, s.name);
      assert.deepEqual(decodeRegionMap(enc), map, `${s.name}: decodes to the same states`);
      assert.deepEqual({ written: enc.written, pending: enc.pending }, counts(map), `${s.name}: counts`);
      assert.ok(enc.data.length <= Math.max(1, Math.ceil(s.n / 4)), `${s.name}: ${enc.data.length} bytes for ${s.n} regions`);
      // the runs encoding is kept whenever it is no larger than two bits per region
      let runBytes = 0;
      forEachRun(enc, (_start, length) => {
        let v = length * 4;
        do {
          runBytes++;
          v = Math.floor(v / 128);
        } while (v > 0);
      });
      if (runBytes <= Math.ceil(s.n / 4)) assert.equal(enc.encoding, 'runs', s.name);
      else assert.equal(enc.encoding, 'bits2', s.name);
    }
  });

  it('refuses damaged maps with a clear error', () => {
    const map = new Uint8Array(1000);
    map.fill(written, 10, 20);
    const enc = encodeRegionMap(bytesStateSource(map));
    assert.equal(enc.encoding, 'runs');
    const bad = [
      { ...enc, data: enc.data.subarray(0, enc.data.length - 1) }, // a run missing
      { ...enc, count: 999 }, // runs past the end
      { ...enc, data: Uint8Array.of(0x80) }, // ends inside a varint
      { ...enc, data: Uint8Array.of(0x00) }, // a run of length 0
      { count: 1000, encoding: 'bits2' as const, data: new Uint8Array(249) },
      { count: 1000, encoding: 'bytes' as unknown as 'runs', data: new Uint8Array(1000) },
    ];
    for (const b of bad) assert.throws(() => decodeRegionMap(b), (err: unknown) => err instanceof RegionMapDecodeError && err.code === 'BAD_ARGUMENT' && /region map/.test(err.message));
  });

  it('changes become runs of the current state; past the bound the map is "replaced"', () => {
    const now = new Uint8Array(100);
    now.fill(written, 10, 14);
    now[20] = pending;
    const buf = new RegionChangeBuffer(50);
    assert.equal(buf.empty, true);
    for (const r of [13, 10, 11, 12, 20, 11, 21]) buf.add(r);
    assert.deepEqual(buf.take((r) => now[r]!), [
      [10, 4, written],
      [20, 1, pending],
      [21, 1, clean],
    ]);
    assert.equal(buf.empty, true);
    for (let r = 0; r < 51; r++) buf.add(r);
    assert.equal(buf.take((r) => now[r]!), 'replaced');
    assert.equal(buf.empty, true);
    buf.replaceAll();
    buf.add(3);
    assert.equal(buf.take((r) => now[r]!), 'replaced', 'a session end wins over later single changes until taken');
    assert.deepEqual(runsOf([1, 2, 3, 5], () => written), [
      [1, 3, written],
      [5, 1, written],
    ]);
  });

  it('reads the states straight from a region log (written, pending, clean) without a byte per region', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'snapback-codec-'));
    try {
      const regionSize = 64 * 1024;
      const n = 50_000; // spans many bitmap sectors
      const path = join(dir, 'write-log.bin');
      const fd = openSync(path, 'w');
      ftruncateSync(fd, logFileSize(n));
      closeSync(fd);
      const dev = new FileDevice(path, { size: logFileSize(n) });
      const pend = new Set([0, 1, 2, 4030, 4031, 49_999]);
      const log = await RegionLog.create(
        dev,
        { modelId: 'ab'.repeat(32), regionSize, diskSize: n * regionSize, sessionNumber: 1, sessionStartedAt: Date.now(), mode: 'frozen', restoreMode: 'instant' },
        (r) => pend.has(r),
      );
      try {
        for (const r of [7, 8, 9, 30_000]) await log.markForWrite(r);
        log.noteWrittenPending(4031);
        const expect = new Uint8Array(n);
        for (const r of pend) expect[r] = pending;
        for (const r of [7, 8, 9, 30_000, 4031]) expect[r] = written;
        const src = regionLogStates(log);
        const enc = encodeRegionMap(src);
        assert.deepEqual(await encodeRegionMapAsync(src), enc, 'the sliced encoder gives the same map');
        assert.equal(enc.encoding, 'runs');
        assert.deepEqual(decodeRegionMap(enc), expect);
        assert.deepEqual({ written: enc.written, pending: enc.pending }, { written: 5, pending: 5 });
        assert.ok(enc.data.length < 64, `${enc.data.length} bytes`);
      } finally {
        await log.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
