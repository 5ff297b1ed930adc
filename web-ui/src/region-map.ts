/**
 * The disk's region map on a canvas: one cell per region (or, on a disk with more regions than
 * the canvas has cells, one cell per run of regions, showing the most significant state among
 * them: written this session, then pending, then clean). Redraws at most once per frame.
 */
import { REGION_CLEAN, REGION_PENDING, REGION_WRITTEN } from './region-states.js';

const COLORS: Record<number, [number, number, number]> = {
  [REGION_CLEAN]: [203, 213, 225],
  [REGION_WRITTEN]: [220, 38, 38],
  [REGION_PENDING]: [245, 158, 11],
};
const DARK_CLEAN: [number, number, number] = [51, 65, 85];
/** Which state wins when a cell covers several regions. */
const RANK: Record<number, number> = { [REGION_CLEAN]: 0, [REGION_PENDING]: 1, [REGION_WRITTEN]: 2 };

export class RegionMap {
  readonly canvas: HTMLCanvasElement;
  #map: Uint8Array = new Uint8Array(0);
  #frame = 0;
  #resize: ResizeObserver;
  #width = 0;
  /** Regions per cell and the cell size in CSS pixels, from the last layout. */
  layout = { perCell: 1, cell: 8, cols: 1, rows: 1 };

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

  setMap(map: Uint8Array): void {
    this.#map = map;
    this.schedule();
  }

  apply(changes: [number, number][]): void {
    for (const [r, s] of changes) if (r >= 0 && r < this.#map.length) this.#map[r] = s;
    this.schedule();
  }

  counts(): { clean: number; written: number; pending: number } {
    const c = { clean: 0, written: 0, pending: 0 };
    for (const v of this.#map) {
      if (v === REGION_WRITTEN) c.written++;
      else if (v === REGION_PENDING) c.pending++;
      else c.clean++;
    }
    return c;
  }

  schedule(): void {
    if (this.#frame) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = 0;
      this.draw();
    });
  }

  draw(): void {
    const n = this.#map.length;
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
      let best = REGION_CLEAN;
      const end = Math.min(n, (c + 1) * perCell);
      for (let r = c * perCell; r < end; r++) {
        const v = this.#map[r] ?? REGION_CLEAN;
        if ((RANK[v] ?? 0) > (RANK[best] ?? 0)) best = v;
        if (best === REGION_WRITTEN) break;
      }
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
    this.canvas.dataset.regions = String(n);
    this.canvas.dataset.perCell = String(perCell);
    const cnt = this.counts();
    this.canvas.dataset.written = String(cnt.written);
    this.canvas.dataset.pending = String(cnt.pending);
    this.canvas.setAttribute(
      'aria-label',
      `Region map: ${n} regions, ${cnt.written} written this session, ${cnt.pending} pending restore, ${cnt.clean} clean`,
    );
  }
}
