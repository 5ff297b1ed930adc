/**
 * The region map on the wire, compact at any disk size (GET /api/regions, live events). A disk
 * of 1 TiB has 16 M regions of 64 KiB: one object, or even one byte, per region is too much for
 * the appliance to build on every session end. Two encodings, the smaller one is sent:
 *
 * - `runs`: the map as runs of equal state, in region order, each one unsigned LEB128 varint
 *   holding `length * 4 + state`. A clean disk is one byte; a session's scattered writes are a
 *   few bytes per written stretch.
 * - `bits2`: two bits per region, four regions per byte, region r in byte r >> 2 at bit
 *   (r & 3) * 2. The bound for any map: count / 4 bytes (4 MiB at 16 M regions).
 *
 * Live changes travel as runs too: `[start, length, state]` triples. No Node APIs beyond a
 * timer; the web UI carries the same decoder (web-ui/src/region-map.ts).
 */
import { RegionState } from './appliance-service.js';
import { SnapbackError } from '../errors.js';

export type RegionMapEncoding = 'runs' | 'bits2';

export interface EncodedRegionMap {
  /** Regions on the disk. */
  count: number;
  encoding: RegionMapEncoding;
  data: Uint8Array;
  /** Regions written this session and pending restore, counted while encoding. */
  written: number;
  pending: number;
}

/** A change to the map: `length` regions from `start` now have `state`. */
export type RegionRun = [start: number, length: number, state: number];

/** Where the encoder reads region states from, with a way to skip clean stretches quickly. */
export interface RegionStateSource {
  readonly count: number;
  stateOf(region: number): number;
  /** The first region at or after `from` that is not clean; `count` when there is none. */
  nextNonClean(from: number): number;
}

/** One byte per region (tests, small fakes). */
export function bytesStateSource(map: Uint8Array): RegionStateSource {
  return {
    count: map.length,
    stateOf: (r) => map[r] ?? RegionState.clean,
    nextNonClean(from) {
      for (let r = from; r < map.length; r++) if (map[r] !== RegionState.clean) return r;
      return map.length;
    },
  };
}

/** Appends bytes to a buffer that grows by doubling. */
class ByteSink {
  buf: Uint8Array;
  length = 0;
  constructor(initial = 64) {
    this.buf = new Uint8Array(initial);
  }
  varint(v: number): void {
    if (this.length + 10 > this.buf.length) {
      const next = new Uint8Array(this.buf.length * 2);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
    }
    // arithmetic, not bit operators: lengths may exceed 2^31 / 4
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.length++] = v;
  }
  bytes(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** Regions examined one by one between two yields of the asynchronous encoder. */
const SLICE = 1 << 16;

/** Encodes the map in the smaller of the two encodings. Never holds one byte per region. */
export function encodeRegionMap(src: RegionStateSource): EncodedRegionMap {
  const it = encodeSteps(src);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
  }
}

/**
 * The same, giving the event loop back every SLICE regions examined one by one (a dense map of
 * 16 M regions takes about half a second of CPU; the host's I/O must not wait for it).
 */
export async function encodeRegionMapAsync(src: RegionStateSource): Promise<EncodedRegionMap> {
  const it = encodeSteps(src);
  for (;;) {
    const r = it.next();
    if (r.done) return r.value;
    await new Promise<void>((res) => setImmediate(res));
  }
}

/** The encoder; yields after every SLICE regions it examined one by one. */
function* encodeSteps(src: RegionStateSource): Generator<void, EncodedRegionMap, void> {
  const n = src.count;
  const bits2Bytes = Math.ceil(n / 4);
  const sink = new ByteSink();
  let written = 0;
  let pending = 0;
  let runState: number = RegionState.clean;
  let runStart = 0;
  let tooBig = false;
  let budget = SLICE;
  const close = (end: number): void => {
    if (end > runStart) sink.varint((end - runStart) * 4 + runState);
  };
  let r = 0;
  while (r < n) {
    if (--budget === 0) {
      budget = SLICE;
      yield;
    }
    const next = src.nextNonClean(r);
    if (next > r) {
      // a clean stretch [r, next)
      if (runState !== RegionState.clean) {
        close(r);
        runState = RegionState.clean;
        runStart = r;
      }
      r = next;
      continue;
    }
    const s = src.stateOf(r);
    if (s === RegionState.written) written++;
    else if (s === RegionState.pending) pending++;
    if (s !== runState) {
      close(r);
      runState = s;
      runStart = r;
      if (sink.length > bits2Bytes) {
        tooBig = true;
        break;
      }
    }
    r++;
  }
  if (!tooBig) {
    close(n);
    if (sink.length <= bits2Bytes) return { count: n, encoding: 'runs', data: sink.bytes(), written, pending };
  }
  // dense map: two bits per region
  const data = new Uint8Array(bits2Bytes);
  written = 0;
  pending = 0;
  r = 0;
  while (r < n) {
    if (--budget === 0) {
      budget = SLICE;
      yield;
    }
    const next = src.nextNonClean(r);
    if (next > r) {
      r = next;
      continue;
    }
    const s = src.stateOf(r) & 3;
    if (s === RegionState.written) written++;
    else if (s === RegionState.pending) pending++;
    data[r >> 2]! |= s << ((r & 3) * 2);
    r++;
  }
  return { count: n, encoding: 'bits2', data, written, pending };
}

/** A map that does not decode (a client sent or kept a damaged one). */
export class RegionMapDecodeError extends SnapbackError {
  constructor(message: string) {
    super('BAD_ARGUMENT', message);
  }
}

/** Calls `run` for each run of equal state, in region order. Throws on a malformed map. */
export function forEachRun(enc: Pick<EncodedRegionMap, 'count' | 'encoding' | 'data'>, run: (start: number, length: number, state: number) => void): void {
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

/** One byte per region (tests and small maps only: 16 MB at 16 M regions). */
export function decodeRegionMap(enc: Pick<EncodedRegionMap, 'count' | 'encoding' | 'data'>): Uint8Array {
  const out = new Uint8Array(enc.count);
  forEachRun(enc, (start, length, state) => {
    if (state !== RegionState.clean) out.fill(state, start, start + length);
  });
  return out;
}

/**
 * Collects changed regions between two notifications and turns them into runs of the state the
 * map has now. Bounded: past `limit` distinct regions it gives up and reports "replaced" (the
 * client fetches the whole map instead).
 */
export class RegionChangeBuffer {
  private regions = new Set<number>();
  private replaced = false;
  constructor(private readonly limit = 65_536) {}

  get empty(): boolean {
    return !this.replaced && this.regions.size === 0;
  }

  add(region: number): void {
    if (this.replaced) return;
    this.regions.add(region);
    if (this.regions.size > this.limit) this.replaceAll();
  }

  /** The whole map changed (a session ended). */
  replaceAll(): void {
    this.replaced = true;
    this.regions.clear();
  }

  /** Runs of the current states of the changed regions, or 'replaced'; empties the buffer. */
  take(stateOf: (region: number) => number): RegionRun[] | 'replaced' {
    if (this.replaced) {
      this.replaced = false;
      return 'replaced';
    }
    const sorted = Float64Array.from(this.regions).sort();
    this.regions.clear();
    return runsOf(sorted, stateOf);
  }
}

/** Sorted distinct regions to runs of consecutive regions with equal state. */
export function runsOf(sorted: ArrayLike<number>, stateOf: (region: number) => number): RegionRun[] {
  const out: RegionRun[] = [];
  let cur: RegionRun | null = null;
  for (let i = 0; i < sorted.length; i++) {
    const r = sorted[i]!;
    const s = stateOf(r);
    if (cur && cur[0] + cur[1] === r && cur[2] === s) cur[1]++;
    else {
      cur = [r, 1, s];
      out.push(cur);
    }
  }
  return out;
}

/** The region log as a state source (written this session, else pending, else clean). */
export function regionLogStates(log: { regionCount: number; isWritten(r: number): boolean; isDirty(r: number): boolean; nextDirty?(from: number): number }): RegionStateSource {
  const n = log.regionCount;
  const stateOf = (r: number): number => (log.isWritten(r) ? RegionState.written : log.isDirty(r) ? RegionState.pending : RegionState.clean);
  return {
    count: n,
    stateOf,
    nextNonClean(from) {
      // written implies dirty: the non-clean regions are exactly the dirty ones
      if (log.nextDirty) {
        const d = log.nextDirty(from);
        return d < 0 ? n : d;
      }
      for (let r = from; r < n; r++) if (log.isDirty(r)) return r;
      return n;
    },
  };
}
