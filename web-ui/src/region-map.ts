/**
 * The disk's region map on a canvas. Every region of a view (the whole disk, or a zoomed part of
 * it) is drawn: one cell per region, or, when there are more regions than cells, one cell per run
 * of regions showing the most significant state among them (written this session, then pending,
 * then clean) — a 1 TiB disk has 16 M regions. Clicking a cell zooms in on it; hovering tells
 * which regions and bytes a cell covers and what they hold. Redraws at most once per frame.
 * The cells where a partition begins or ends get a dark mark on their left edge (`boundaries`,
 * set by the page from the partition table; partition-band.ts).
 *
 * The map arrives compact (GET /api/regions: runs or two bits per region) and is decoded by
 * the wire contract's own decoder, the one module of appliance/api the browser loads as code
 * (`./api/…` resolves there through web-ui/tsconfig.json's rootDirs; web-ui/build.ts puts it
 * beside these scripts). Changes arrive as runs [start, length, state].
 */
import type { RegionMapReply } from '../../appliance/api/regions.js';
import { RegionState, decodeRegionMap } from './api/region-map-wire.js';

const REGION_CLEAN = RegionState.clean;
const REGION_WRITTEN = RegionState.written;
const REGION_PENDING = RegionState.pending;

const COLORS: Record<number, [number, number, number]> = {
  [REGION_CLEAN]: [203, 213, 225],
  [REGION_WRITTEN]: [220, 38, 38],
  [REGION_PENDING]: [245, 158, 11],
};
const DARK_CLEAN: [number, number, number] = [51, 65, 85];
/** One bit per state, so a block's summary says which states it holds. */
const BIT: Record<number, number> = { [REGION_CLEAN]: 1, [REGION_WRITTEN]: 2, [REGION_PENDING]: 4 };
/** Regions per summary block: a cell covering many regions reads blocks, not regions. */
const BLOCK = 64;
/** A zoom step divides (or multiplies) the regions in view by this. */
export const ZOOM_STEP = 16;

function fromBase64(text: string): Uint8Array {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Decodes the compact map into one byte per region (RegionState values). Throws on a damaged map. */
export function decodeWireMap(wire: RegionMapReply): Uint8Array {
  return decodeRegionMap({ count: wire.count, encoding: wire.encoding, data: fromBase64(wire.data) });
}

export interface CellInfo {
  first: number;
  last: number;
  written: number;
  pending: number;
  clean: number;
}

export class RegionMap {
  readonly canvas: HTMLCanvasElement;
  #map: Uint8Array = new Uint8Array(0);
  /** Per block of BLOCK regions: the OR of BIT[state] of its regions. */
  #blocks: Uint8Array = new Uint8Array(0);
  #counts = { clean: 0, written: 0, pending: 0 };
  #view = { start: 0, end: 0 };
  #whole = true;
  #frame = 0;
  #resize: ResizeObserver;
  #width = 0;
  /** Bytes per region, for the inspect text (set by the page from the status). */
  regionSize = 0;
  /** Regions per cell, the cell size in CSS pixels and the grid, from the last layout. */
  layout = { perCell: 1, cell: 8, cols: 1, rows: 1 };
  /** Regions where a partition begins or ends: their cells are marked. */
  boundaries: number[] = [];
  /** Called after each draw (the page updates its zoom controls and texts). */
  onDraw: (() => void) | null = null;

  constructor(canvas: HTMLCanvasElement) {
    this.canvas = canvas;
    this.#resize = new ResizeObserver(() => {
      const w = Math.floor(canvas.parentElement?.clientWidth ?? canvas.clientWidth);
      if (w !== this.#width) {
        this.#width = w;
        this.schedule();
      }
    });
    if (canvas.parentElement) this.#resize.observe(canvas.parentElement);
  }

  destroy(): void {
    this.#resize.disconnect();
    if (this.#frame) cancelAnimationFrame(this.#frame);
  }

  get size(): number {
    return this.#map.length;
  }

  /** The regions in view: [start, end). */
  get view(): { start: number; end: number; whole: boolean } {
    return { ...this.#view, whole: this.#whole };
  }

  setMap(map: Uint8Array): void {
    const sameSize = map.length === this.#map.length;
    this.#map = map;
    this.#blocks = new Uint8Array(Math.ceil(map.length / BLOCK));
    const c = { clean: 0, written: 0, pending: 0 };
    for (let b = 0; b < this.#blocks.length; b++) this.#summarise(b, c);
    this.#counts = c;
    if (!sameSize || this.#whole) this.#setView(0, map.length, true);
    this.schedule();
  }

  /** Applies live changes: runs of [start, length, state], in order. */
  apply(runs: [number, number, number][]): void {
    const n = this.#map.length;
    for (const [start, length, state] of runs) {
      const a = Math.max(0, start);
      const b = Math.min(n, start + length);
      if (b <= a) continue;
      for (let r = a; r < b; r++) {
        const old = this.#map[r]!;
        if (old === state) continue;
        this.#count(old, -1);
        this.#count(state, 1);
        this.#map[r] = state;
      }
      for (let blk = Math.floor(a / BLOCK); blk <= Math.floor((b - 1) / BLOCK); blk++) this.#summarise(blk, null);
    }
    this.schedule();
  }

  counts(): { clean: number; written: number; pending: number } {
    return { ...this.#counts };
  }

  #count(state: number, d: number): void {
    if (state === REGION_WRITTEN) this.#counts.written += d;
    else if (state === REGION_PENDING) this.#counts.pending += d;
    else this.#counts.clean += d;
  }

  /** Recomputes a block's summary (and counts its regions into `c` when given). */
  #summarise(blk: number, c: { clean: number; written: number; pending: number } | null): void {
    let bits = 0;
    const end = Math.min(this.#map.length, (blk + 1) * BLOCK);
    for (let r = blk * BLOCK; r < end; r++) {
      const v = this.#map[r]!;
      bits |= BIT[v] ?? 1;
      if (c) {
        if (v === REGION_WRITTEN) c.written++;
        else if (v === REGION_PENDING) c.pending++;
        else c.clean++;
      }
    }
    this.#blocks[blk] = bits;
  }

  // ---- zoom ----------------------------------------------------------------------------

  #setView(start: number, end: number, whole = false): void {
    const n = this.#map.length;
    const span = Math.max(1, Math.min(n, end - start));
    const s = Math.max(0, Math.min(n - span, start));
    this.#view = { start: s, end: s + span };
    this.#whole = whole || (s === 0 && span >= n);
  }

  /** The fewest regions a view shows: one region per cell at the largest cell. */
  get minSpan(): number {
    return Math.min(this.#map.length, 256);
  }

  /** Zooms in around region `center` (ZOOM_STEP times fewer regions in view). */
  zoomIn(center: number): void {
    const span = this.#view.end - this.#view.start;
    const next = Math.max(this.minSpan, Math.ceil(span / ZOOM_STEP));
    if (next >= span) return;
    this.#setView(Math.round(center - next / 2), Math.round(center - next / 2) + next);
    this.schedule();
  }

  zoomOut(): void {
    const span = this.#view.end - this.#view.start;
    const center = this.#view.start + span / 2;
    const next = Math.min(this.#map.length, span * ZOOM_STEP);
    this.#setView(Math.round(center - next / 2), Math.round(center - next / 2) + next, next >= this.#map.length);
    this.schedule();
  }

  /** Moves the view by whole views: -1 towards the start of the disk, +1 towards its end. */
  pan(direction: -1 | 1): void {
    const span = this.#view.end - this.#view.start;
    this.#setView(this.#view.start + direction * span, this.#view.end + direction * span);
    this.schedule();
  }

  showWhole(): void {
    this.#setView(0, this.#map.length, true);
    this.schedule();
  }

  // ---- inspect -------------------------------------------------------------------------

  /** The cell under a point of the canvas (CSS pixels from its top left), or null. */
  cellAt(x: number, y: number): number | null {
    const { cell, cols, perCell } = this.layout;
    const col = Math.floor(x / cell);
    const row = Math.floor(y / cell);
    if (col < 0 || col >= cols || row < 0) return null;
    const c = row * cols + col;
    const first = this.#view.start + c * perCell;
    return first < this.#view.end ? c : null;
  }

  /** What the regions of cell `c` hold. */
  cellInfo(c: number): CellInfo {
    const first = this.#view.start + c * this.layout.perCell;
    const last = Math.min(this.#view.end, first + this.layout.perCell) - 1;
    const info: CellInfo = { first, last, written: 0, pending: 0, clean: 0 };
    for (let r = first; r <= last; r++) {
      const v = this.#map[r];
      if (v === REGION_WRITTEN) info.written++;
      else if (v === REGION_PENDING) info.pending++;
      else info.clean++;
    }
    return info;
  }

  // ---- drawing -------------------------------------------------------------------------

  schedule(): void {
    if (this.#frame) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.draw();
    });
  }

  /** The most significant state of regions [a, b). */
  #worst(a: number, b: number): number {
    let bits = 0;
    let r = a;
    // regions up to the next block boundary, then whole blocks, then the rest
    const firstFull = Math.min(b, Math.ceil(a / BLOCK) * BLOCK);
    for (; r < firstFull; r++) bits |= BIT[this.#map[r]!] ?? 1;
    for (; r + BLOCK <= b; r += BLOCK) {
      bits |= this.#blocks[r / BLOCK]!;
      if (bits & BIT[REGION_WRITTEN]!) return REGION_WRITTEN;
    }
    for (; r < b; r++) bits |= BIT[this.#map[r]!] ?? 1;
    return bits & BIT[REGION_WRITTEN]! ? REGION_WRITTEN : bits & BIT[REGION_PENDING]! ? REGION_PENDING : REGION_CLEAN;
  }

  draw(): void {
    const { start, end } = this.#view;
    const n = end - start;
    const width = Math.max(100, this.#width || this.canvas.parentElement?.clientWidth || 600);
    const maxHeight = width < 600 ? 260 : 320;
    // The largest cell (2..16 px) that fits every region; below 2 px, several regions per cell.
    let cell = 16;
    while (cell > 2 && Math.ceil(n / Math.floor(width / cell)) * cell > maxHeight) cell--;
    const cols = Math.max(1, Math.floor(width / cell));
    const maxRows = Math.max(1, Math.floor(maxHeight / cell));
    const perCell = Math.max(1, Math.ceil(n / (cols * maxRows)));
    const cells = Math.ceil(n / perCell);
    const rows = Math.max(1, Math.ceil(cells / cols));
    this.layout = { perCell, cell, cols, rows };

    const dpr = Math.min(3, window.devicePixelRatio || 1);
    const cssW = cols * cell;
    const cssH = rows * cell;
    const pw = Math.round(cssW * dpr);
    const ph = Math.round(cssH * dpr);
    if (this.canvas.width !== pw || this.canvas.height !== ph) {
      this.canvas.width = pw;
      this.canvas.height = ph;
      this.canvas.style.width = `${cssW}px`;
      this.canvas.style.height = `${cssH}px`;
    }
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    const img = ctx.createImageData(pw, ph);
    const px = img.data;
    const dark = window.matchMedia('(prefers-color-scheme: dark)').matches;
    const gap = cell >= 5 ? 1 : 0;
    const cellPx = cell * dpr;
    for (let c = 0; c < cells; c++) {
      const a = start + c * perCell;
      const best = perCell === 1 ? (this.#map[a] ?? REGION_CLEAN) : this.#worst(a, Math.min(end, a + perCell));
      const [cr, cg, cb] = best === REGION_CLEAN && dark ? DARK_CLEAN : (COLORS[best] ?? COLORS[REGION_CLEAN]!);
      const x0 = Math.round((c % cols) * cellPx);
      const y0 = Math.round(Math.floor(c / cols) * cellPx);
      const x1 = Math.round(((c % cols) + 1) * cellPx) - Math.round(gap * dpr);
      const y1 = Math.round((Math.floor(c / cols) + 1) * cellPx) - Math.round(gap * dpr);
      for (let y = y0; y < y1; y++) {
        let o = (y * pw + x0) * 4;
        for (let x = x0; x < x1; x++) {
          px[o] = cr;
          px[o + 1] = cg;
          px[o + 2] = cb;
          px[o + 3] = 255;
          o += 4;
        }
      }
    }
    ctx.putImageData(img, 0, 0);
    let marks = 0;
    ctx.fillStyle = dark ? '#e6edf5' : '#17202c';
    for (const b of this.boundaries) {
      if (b <= start || b >= end) continue;
      const c = Math.floor((b - start) / perCell);
      ctx.fillRect(Math.round((c % cols) * cellPx), Math.round(Math.floor(c / cols) * cellPx), Math.max(1, Math.round(dpr)), Math.round(cellPx));
      marks++;
    }
    const total = this.#map.length;
    const cnt = this.#counts;
    const d = this.canvas.dataset;
    d.regions = String(total);
    d.perCell = String(perCell);
    d.cell = String(cell);
    d.cols = String(cols);
    d.viewStart = String(start);
    d.viewEnd = String(end);
    d.written = String(cnt.written);
    d.pending = String(cnt.pending);
    d.boundaryMarks = String(marks);
    this.canvas.setAttribute(
      'aria-label',
      `Region map: ${total} regions, ${cnt.written} written this session, ${cnt.pending} pending restore, ${cnt.clean} clean` +
        (this.#whole ? '' : `; showing regions ${start} to ${end - 1}`),
    );
    this.onDraw?.();
  }
}
