/**
 * The region map's compact wire form, and its decoder: what GET /api/regions and the live
 * `regions` event carry (the daemon encodes it: appliance/session/region-map-codec.ts).
 *
 * - `runs`: the map as runs of equal state, in region order, each one unsigned LEB128 varint
 *   holding `length * 4 + state`. A clean disk is one byte; a session's scattered writes are a
 *   few bytes per written stretch.
 * - `bits2`: two bits per region, four regions per byte, region r in byte r >> 2 at bit
 *   (r & 3) * 2. The bound for any map: count / 4 bytes (4 MiB at 16 M regions).
 *
 * Live changes travel as runs too: `[start, length, state]` triples.
 *
 * This module imports nothing at all, so the browser loads it as it is (web-ui/build.ts copies
 * it next to the web UI's scripts): the daemon's tests and the web UI decode with the same code.
 */

/** Region states in the region map (two bits each on the wire). */
export const RegionState = { clean: 0, written: 1, pending: 2 } as const;

export type RegionMapEncoding = 'runs' | 'bits2';

/** The encoded map (its bytes, not yet base64). */
export interface RegionMapBytes {
  /** Regions on the disk. */
  count: number;
  encoding: RegionMapEncoding;
  data: Uint8Array;
}

/** A change to the map: `length` regions from `start` now have `state`. */
export type RegionRun = [start: number, length: number, state: number];

/** A map that does not decode (a client sent or kept a damaged one). */
export class RegionMapDecodeError extends Error {
  readonly code = 'BAD_ARGUMENT';
  constructor(message: string) {
    super(message);
    this.name = 'RegionMapDecodeError';
  }
}

/** Calls `run` for each run of equal state, in region order. Throws on a malformed map. */
export function forEachRun(enc: RegionMapBytes, run: (start: number, length: number, state: number) => void): void {
  const { count, data } = enc;
  if (enc.encoding === 'bits2') {
    if (data.length !== Math.ceil(count / 4)) throw new RegionMapDecodeError(`bits2 region map of ${count} regions needs ${Math.ceil(count / 4)} bytes, got ${data.length}`);
    let start = 0;
    let state = count > 0 ? data[0]! & 3 : 0;
    for (let r = 1; r < count; r++) {
      const s = (data[r >> 2]! >> ((r & 3) * 2)) & 3;
      if (s !== state) {
        run(start, r - start, state);
        start = r;
        state = s;
      }
    }
    if (count > 0) run(start, count - start, state);
    return;
  }
  if (enc.encoding !== 'runs') throw new RegionMapDecodeError(`unknown region map encoding ${String(enc.encoding)}`);
  let pos = 0;
  let at = 0;
  while (pos < data.length) {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = data[pos++];
      if (b === undefined) throw new RegionMapDecodeError('region map ends inside a run');
      v += (b & 0x7f) * mul;
      if (b < 0x80) break;
      mul *= 0x80;
    }
    const state = v % 4;
    const length = Math.floor(v / 4);
    if (length === 0 || at + length > count) throw new RegionMapDecodeError(`region map run of ${length} at region ${at} does not fit ${count} regions`);
    run(at, length, state);
    at += length;
  }
  if (at !== count) throw new RegionMapDecodeError(`region map covers ${at} of ${count} regions`);
}

/** One byte per region (16 MB at 16 M regions). */
export function decodeRegionMap(enc: RegionMapBytes): Uint8Array {
  const out = new Uint8Array(enc.count);
  forEachRun(enc, (start, length, state) => {
    if (state !== RegionState.clean) out.fill(state, start, start + length);
  });
  return out;
}
