/** Byte sizes as users write them ("64K", "1M", "4096") and the region-size rule (2^n, 4K to 16M). */
import { SnapbackError } from '../errors.js';

export const MIN_REGION_SIZE = 4096;
export const MAX_REGION_SIZE = 16 << 20;

export function isValidRegionSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_REGION_SIZE && n <= MAX_REGION_SIZE && (n & (n - 1)) === 0;
}

const UNITS: Record<string, number> = { '': 1, B: 1, K: 1024, KB: 1024, KIB: 1024, M: 1 << 20, MB: 1 << 20, MIB: 1 << 20, G: 1 << 30, GB: 1 << 30, GIB: 1 << 30, T: 2 ** 40, TB: 2 ** 40, TIB: 2 ** 40 };

/** Parses "64K", "1MiB", "4096"; throws BAD_ARGUMENT with the offending text otherwise. */
export function parseSize(text: string, what = 'size'): number {
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[(m[2] ?? '').toUpperCase()] : undefined;
  if (!m || unit === undefined) throw new SnapbackError('BAD_ARGUMENT', `${what} "${text}" is not a size (examples: 4096, 64K, 1M)`);
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n)) throw new SnapbackError('BAD_ARGUMENT', `${what} "${text}" is too large`);
  return n;
}

export function formatSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}
