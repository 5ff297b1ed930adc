/**
 * Encodes the region map compact at any disk size (GET /api/regions, live events): the wire form
 * and its decoder are appliance/api/region-map-wire.ts. A disk of 1 TiB has 16 M regions of
 * 64 KiB: one object, or even one byte, per region is too much for the appliance to build on
 * every session end, so the encoder walks the map as runs of equal state (skipping clean
 * stretches quickly) and sends the smaller of `runs` and `bits2`. No Node APIs beyond a timer.
 */
import { RegionState, type RegionMapBytes, type RegionRun } from '../api/region-map-wire.js';

export type { RegionMapEncoding, RegionRun } from '../api/region-map-wire.js';

export interface EncodedRegionMap extends RegionMapBytes {
  /** Regions written this session and pending restore, counted while encoding. */
  written: number;
  pending: number;
}

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

/**
 * The map's runs of equal state in region order (clean stretches found with nextNonClean, other
 * regions read one by one); `null` after every SLICE regions read one by one, a point where the
 * asynchronous encoder gives the event loop back.
 */
function* runsOfSource(src: RegionStateSource): Generator<RegionRun | null, void, void> {
  const n = src.count;
  let runState: number = RegionState.clean;
  let runStart = 0;
  let budget = SLICE;
  let r = 0;
  while (r < n) {
    if (--budget === 0) {
      budget = SLICE;
      yield null;
    }
    const next = src.nextNonClean(r);
    const s = next > r ? RegionState.clean : src.stateOf(r);
    if (s !== runState) {
      if (r > runStart) yield [runStart, r - runStart, runState];
      runState = s;
      runStart = r;
    }
    r = next > r ? next : r + 1;
  }
  if (n > runStart) yield [runStart, n - runStart, runState];
}

/** The encoder; yields where the run walk gives the event loop back. */
function* encodeSteps(src: RegionStateSource): Generator<void, EncodedRegionMap, void> {
  const n = src.count;
  const bits2Bytes = Math.ceil(n / 4);
  const sink = new ByteSink();
  let written = 0;
  let pending = 0;
  const count = ([, length, state]: RegionRun): void => {
    if (state === RegionState.written) written += length;
    else if (state === RegionState.pending) pending += length;
  };
  let tooBig = false;
  for (const run of runsOfSource(src)) {
    if (run === null) {
      yield;
      continue;
    }
    count(run);
    sink.varint(run[1] * 4 + run[2]);
    if (sink.length > bits2Bytes) {
      tooBig = true;
      break;
    }
  }
  if (!tooBig) return { count: n, encoding: 'runs', data: sink.bytes(), written, pending };
  // dense map: two bits per region
  const data = new Uint8Array(bits2Bytes);
  written = 0;
  pending = 0;
  for (const run of runsOfSource(src)) {
    if (run === null) {
      yield;
      continue;
    }
    count(run);
    const [start, length, state] = run;
    if (state === RegionState.clean) continue;
    for (let r = start; r < start + length; r++) data[r >> 2]! |= (state & 3) << ((r & 3) * 2);
  }
  return { count: n, encoding: 'bits2', data, written, pending };
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
