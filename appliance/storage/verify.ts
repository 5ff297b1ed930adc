/**
 * Verification of a working disk against the model, region by region (`snapback verify`):
 * which regions differ, and which of those differences the write log does not cover (D clear):
 * an *unlogged difference*, the one thing invariant 1 forbids. Regions of persistent areas are
 * left out: the host's writes stay there by design (persistent-areas.ts).
 */
import type { RegionLog } from './region-log.js';

interface Readable {
  readonly size: number;
  readInto(buf: Buffer, offset: number): Promise<void>;
}

export interface Comparison {
  regionCount: number;
  regionSize: number;
  differing: number[];
}

export async function compareDiskWithModel(disk: Readable, model: Readable, regionSize: number, onProgress?: (done: number, total: number) => void): Promise<Comparison> {
  const size = model.size;
  const count = Math.ceil(size / regionSize);
  const chunkRegions = Math.max(1, Math.floor((4 << 20) / regionSize));
  const a = Buffer.allocUnsafe(chunkRegions * regionSize);
  const b = Buffer.allocUnsafe(chunkRegions * regionSize);
  const differing: number[] = [];
  for (let r = 0; r < count; r += chunkRegions) {
    const off = r * regionSize;
    const len = Math.min(a.length, size - off);
    await Promise.all([disk.readInto(a.subarray(0, len), off), model.readInto(b.subarray(0, len), off)]);
    for (let i = 0; i < chunkRegions && r + i < count; i++) {
      const s = i * regionSize;
      const e = Math.min(len, s + regionSize);
      if (!a.subarray(s, e).equals(b.subarray(s, e))) differing.push(r + i);
    }
    onProgress?.(Math.min(count, r + chunkRegions), count);
  }
  return { regionCount: count, regionSize, differing };
}

export interface VerifyReport {
  regionCount: number;
  regionSize: number;
  differing: number;
  pending: number;
  writtenThisSession: number;
  /** Regions that differ from the model with D clear: invariant 1 broken. */
  unlogged: number[];
  /** Regions outside S that differ from the model (what a restore has still to do). */
  differingOutsideSession: number;
  ok: boolean;
}

export async function verifyAgainstLog(disk: Readable, model: Readable, log: RegionLog, onProgress?: (done: number, total: number) => void): Promise<VerifyReport> {
  const all = await compareDiskWithModel(disk, model, log.regionSize, onProgress);
  const cmp = { ...all, differing: all.differing.filter((r) => !log.isPersistent(r)) };
  const unlogged = cmp.differing.filter((r) => !log.isDirty(r));
  return {
    regionCount: cmp.regionCount,
    regionSize: cmp.regionSize,
    differing: cmp.differing.length,
    pending: log.pendingCount,
    writtenThisSession: log.writtenCount,
    unlogged,
    differingOutsideSession: cmp.differing.filter((r) => !log.isWritten(r)).length,
    ok: unlogged.length === 0,
  };
}
