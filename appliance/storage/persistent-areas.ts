/**
 * Persistent areas (docs/persistent-areas.md): partitions or byte ranges of the host's disk
 * whose writes are kept across session ends even when frozen — never restored, never pending,
 * left out of a capture unless asked. The write log keeps no marks there (RegionLog.setPersistent):
 * the working disk is authoritative.
 *
 * An area is whole regions of the write log. A request that is not region-aligned is narrowed
 * inward to whole regions, never widened: widening would make bytes outside the area persistent
 * (a neighbouring system partition would stop being restored there), while narrowing only leaves
 * the edge bytes protected as before. A request holding no whole region is refused.
 *
 * STATE/persistent-areas.json holds the areas in force and, when a change waits, the list that
 * will be in force from the next session end. Every change is one durable replacement of the
 * file (durable-write.ts): a power cut leaves it changed or not, never half. At the session end
 * (ProtectedDisk.endSession, host I/O stopped) the change is applied: regions entering an area
 * that are pending get the model's bytes first (the host reads them) and the working disk is
 * flushed; the file then says which list is being applied (`applying`: the log keeps no marks
 * there from an open on); the log drops its marks there and marks regions leaving an area
 * written (setPersistent, durable); and only then does the file name the new list as in force.
 * A power cut in between applies the change again at the next session end (the daemon's start
 * ends one), with the same result; at no point does a region differ from the model with neither
 * a mark nor an area. Every
 * session end flushes the working disk when areas are in force: what the host wrote there is
 * durable from then on.
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { persistentAreaSchema, type PersistentAddRequest, type PersistentArea, type PersistentList, type PersistentRemoveQuery } from '../api/persistent.js';
import { writeFileDurably } from './durable-write.js';
import { formatSize, parseSize } from './sizes.js';
import type { StateDir } from './state-dir.js';
import type { ProtectedDisk } from './protected-disk.js';
import { SnapbackError, fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('persistent-areas');

export const PERSISTENT_AREAS_FILE = 'persistent-areas.json';

const fileSchema = z
  .object({
    version: z.literal(1),
    nextId: z.number().int().positive(),
    active: z.array(persistentAreaSchema),
    pending: z.array(persistentAreaSchema).nullable(),
    /** A session end was putting this list in force (see applyAtSessionEnd); null otherwise. */
    applying: z.array(persistentAreaSchema).nullable().default(null),
  })
  .strict();
type AreasFile = z.infer<typeof fileSchema>;

/** A partition as the partition table gives it (bytes). */
export interface PartitionExtent {
  start: number;
  size: number;
}

/** Finds partition `n` of the host's disk (throws NOT_FOUND naming the partitions there are). */
export type PartitionLookup = (n: number) => Promise<PartitionExtent>;

export interface AreaChange {
  area: PersistentArea;
  /** How the request was rounded to whole regions and why; null when it was aligned. */
  adjustment: string | null;
  takesEffect: 'next-session-end';
  list: PersistentList;
}

/**
 * Where the areas are kept: a text written whole, so that a power cut leaves the old text or the
 * new one (STATE/persistent-areas.json through durable-write.ts).
 */
export interface AreasStore {
  /** The text, or null when there is none yet. */
  read(): Promise<string | null>;
  write(text: string): Promise<void>;
  /** For messages. */
  readonly name: string;
}

/** STATE/persistent-areas.json, replaced durably. */
export function areasFileOf(state: StateDir): AreasStore {
  const path = join(state.path, PERSISTENT_AREAS_FILE);
  return {
    name: path,
    async read() {
      try {
        return await readFile(path, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw fromSystemError(err, `reading ${path}`);
      }
    },
    write: (text) => writeFileDurably(path, text, 0o600),
  };
}

/** What a session end put in force. */
export interface AppliedAreas {
  added: PersistentArea[];
  removed: PersistentArea[];
}

/** Parses "OFFSET:LENGTH" (each a size: 4096, 64K, 1M, 2G); BAD_ARGUMENT naming what is wrong. */
export function parseRange(text: string): { offset: number; length: number } {
  const m = /^\s*([^:\s]+)\s*:\s*([^:\s]+)\s*$/.exec(text);
  if (!m) throw new SnapbackError('BAD_ARGUMENT', `range "${text}" is not OFFSET:LENGTH (example: 1G:512M)`);
  const [, o, l] = m as unknown as [string, string, string];
  if (o.startsWith('-')) throw new SnapbackError('BAD_ARGUMENT', `range "${text}": the offset is negative`);
  if (l.startsWith('-')) throw new SnapbackError('BAD_ARGUMENT', `range "${text}": the length is negative`);
  const offset = parseSize(o, `range "${text}": offset`);
  const length = parseSize(l, `range "${text}": length`);
  if (length === 0) throw new SnapbackError('BAD_ARGUMENT', `range "${text}": the length is zero`);
  return { offset, length };
}

/** One bit a region, set for every region of `areas`. */
function maskOf(areas: readonly PersistentArea[], regionSize: number, regionCount: number): Uint8Array {
  const mask = new Uint8Array(Math.ceil(regionCount / 8));
  for (const a of areas) {
    const r1 = Math.ceil((a.offset + a.length) / regionSize);
    for (let r = Math.floor(a.offset / regionSize); r < r1 && r < regionCount; r++) mask[r >> 3] = mask[r >> 3]! | (1 << (r & 7));
  }
  return mask;
}

const bytes = (a: number, b: number) => `bytes ${a}–${b - 1}`;

export class PersistentAreas extends EventEmitter {
  private file: AreasFile;
  /** Changes are made one at a time (each reads the list the one before left). */
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly store: AreasStore,
    readonly regionSize: number,
    readonly diskSize: number,
    file: AreasFile,
    private partitionLookup: PartitionLookup | null,
  ) {
    super();
    this.file = file;
  }

  /** Reads the areas (none kept yet: no areas). */
  static async load(store: AreasStore, shape: { regionSize: number; diskSize: number }, partitions: PartitionLookup | null = null): Promise<PersistentAreas> {
    let file: AreasFile = { version: 1, nextId: 1, active: [], pending: null, applying: null };
    const text = await store.read();
    if (text !== null) {
      try {
        file = fileSchema.parse(JSON.parse(text));
      } catch (err) {
        throw new SnapbackError('STATE_CORRUPT', `${store.name} is not valid (${(err as Error).message}); restore it from a backup, or remove it to have no persistent areas`);
      }
    }
    return new PersistentAreas(store, shape.regionSize, shape.diskSize, file, partitions);
  }

  /** Where `--partition N` finds partition N (the partition table reader). */
  setPartitionLookup(lookup: PartitionLookup | null): void {
    this.partitionLookup = lookup;
  }

  get regionCount(): number {
    return Math.ceil(this.diskSize / this.regionSize);
  }

  list(): PersistentList {
    return { regionSize: this.regionSize, diskSize: this.diskSize, active: [...this.file.active], pending: this.file.pending ? [...this.file.pending] : null };
  }

  /** A change waits for the next session end. */
  get changePending(): boolean {
    return this.file.pending !== null;
  }

  /**
   * The regions the write log must keep no marks in at open (one bit a region), or null when
   * there are none: the areas in force, and those a session end cut by a power cut was putting
   * in force (the log may already have dropped its marks there; see applyAtSessionEnd).
   */
  activeMask(): Uint8Array | null {
    const areas = [...this.file.active, ...(this.file.applying ?? [])];
    return areas.length ? maskOf(areas, this.regionSize, this.regionCount) : null;
  }

  /** Adds an area (a partition or a range) to the list that takes effect at the next session end. */
  add(req: PersistentAddRequest): Promise<AreaChange> {
    return this.serial(async () => {
      let requested: { offset: number; length: number };
      let partition: number | null = null;
      let what: string;
      if ('partition' in req) {
        if (!Number.isInteger(req.partition) || req.partition < 1) throw new SnapbackError('BAD_ARGUMENT', `partition ${req.partition}: partition numbers start at 1`);
        if (!this.partitionLookup) throw new SnapbackError('NOT_SUPPORTED', 'partitions cannot be read here: give the area as --range OFFSET:LENGTH');
        const p = await this.partitionLookup(req.partition);
        partition = req.partition;
        requested = { offset: p.start, length: p.size };
        what = `partition ${partition}`;
        if (p.size <= 0) throw new SnapbackError('BAD_ARGUMENT', `partition ${partition} is empty`);
      } else {
        requested = parseRange(req.range);
        what = `range ${req.range}`;
      }
      const end = requested.offset + requested.length;
      if (end > this.diskSize) {
        throw new SnapbackError('BAD_ARGUMENT', `${what} ends at byte ${end}, beyond the end of the disk (${this.diskSize} bytes, ${formatSize(this.diskSize)})`, { diskSize: this.diskSize });
      }
      const rs = this.regionSize;
      const start = Math.ceil(requested.offset / rs) * rs;
      const stop = end === this.diskSize ? end : Math.floor(end / rs) * rs;
      if (stop <= start) {
        throw new SnapbackError(
          'BAD_ARGUMENT',
          `${what} (${bytes(requested.offset, end)}) holds no whole region of ${formatSize(rs)}: persistence is kept per region, so an area must cover at least one whole region (for example ${Math.floor(requested.offset / rs) * rs}:${rs})`,
        );
      }
      const adjustment =
        start === requested.offset && stop === end
          ? null
          : `narrowed to whole regions of ${formatSize(rs)}: ${bytes(start, stop)} are persistent; ${[start > requested.offset ? bytes(requested.offset, start) : null, stop < end ? bytes(stop, end) : null]
              .filter((x) => x !== null)
              .join(' and ')} stay protected (restored at each session end), because a region is either persistent or protected and widening would make bytes outside the area persistent`;
      const target = this.file.pending ?? this.file.active;
      for (const a of target) {
        const overlapsBytes = requested.offset < a.requested.offset + a.requested.length && a.requested.offset < end;
        const overlapsRegions = start < a.offset + a.length && a.offset < stop;
        if (overlapsBytes || overlapsRegions) {
          throw new SnapbackError('BAD_ARGUMENT', `${what} overlaps persistent area ${a.id} (${a.partition !== null ? `partition ${a.partition}, ` : ''}${bytes(a.offset, a.offset + a.length)}): remove that one first`, {
            overlaps: a.id,
          });
        }
      }
      const area: PersistentArea = { id: String(this.file.nextId), offset: start, length: stop - start, partition, requested, addedAt: new Date().toISOString() };
      await this.save({ ...this.file, nextId: this.file.nextId + 1, pending: [...target, area].sort((x, y) => x.offset - y.offset) });
      log.info({ area, adjustment }, 'a persistent area will be added at the next session end');
      return { area, adjustment, takesEffect: 'next-session-end' as const, list: this.list() };
    });
  }

  /** Removes an area (by id, partition or range) from the list that takes effect at the next session end. */
  remove(sel: PersistentRemoveQuery): Promise<AreaChange> {
    return this.serial(async () => {
      const target = this.file.pending ?? this.file.active;
      let found: PersistentArea | undefined;
      let what: string;
      if (sel.id !== undefined) {
        what = `id ${sel.id}`;
        found = target.find((a) => a.id === sel.id);
      } else if (sel.partition !== undefined) {
        const n = Number(sel.partition);
        if (!Number.isInteger(n) || n < 1) throw new SnapbackError('BAD_ARGUMENT', `partition ${sel.partition}: partition numbers start at 1`);
        what = `partition ${n}`;
        found = target.find((a) => a.partition === n);
      } else {
        const r = parseRange(sel.range ?? '');
        what = `range ${sel.range}`;
        found = target.find((a) => (a.requested.offset === r.offset && a.requested.length === r.length) || (a.offset === r.offset && a.length === r.length));
      }
      if (!found) {
        const have = target.map((a) => `${a.id} (${a.partition !== null ? `partition ${a.partition}` : `${a.requested.offset}:${a.requested.length}`})`).join(', ');
        throw new SnapbackError('NOT_FOUND', `no persistent area is ${what}${have ? ` (the areas are: ${have})` : ' (there are none)'}`);
      }
      const area = found;
      await this.save({ ...this.file, pending: target.filter((a) => a !== area) });
      log.info({ area }, 'a persistent area will be removed at the next session end');
      return { area, adjustment: null, takesEffect: 'next-session-end' as const, list: this.list() };
    });
  }

  /**
   * Puts the waiting change in force; called by the protected disk at a session end with host
   * I/O stopped (see the module comment). Null when no change waits.
   */
  applyAtSessionEnd(pd: ProtectedDisk): Promise<AppliedAreas | null> {
    return this.serial(async () => {
      const next = this.file.pending;
      if (next === null) {
        // what the host wrote in its areas is durable at every session end, like the log's marks elsewhere
        if (this.file.active.length > 0) await pd.disk.flush();
        return null;
      }
      const rs = pd.regionSize;
      const n = pd.log.regionCount;
      const mask = maskOf(next, rs, n);
      // regions entering an area: the working disk must hold what the host reads there
      const restore: number[] = [];
      for (let i = 0; i < mask.length; i++) {
        if (mask[i] === 0) continue;
        for (let b = 0; b < 8; b++) if (mask[i]! & (1 << b) && !pd.log.isPersistent(i * 8 + b) && pd.log.isPending(i * 8 + b)) restore.push(i * 8 + b);
      }
      await pd.restoreRegions(restore);
      // durable from here: the model's bytes restored, the host's bytes in every area
      await pd.disk.flush();
      // Said before the log drops its marks: a power cut after that finds every region of this
      // list authoritative on the working disk at open, as the log then has it (no region
      // differs from the model without a mark or an area). The next session end applies it again.
      const applying = [...(this.file.applying ?? []).filter((a) => !next.some((b) => b.id === a.id)), ...next];
      if (JSON.stringify(applying) !== JSON.stringify(this.file.applying)) await this.save({ ...this.file, applying });
      await pd.log.setPersistent(mask);
      const ids = (l: readonly PersistentArea[]) => new Set(l.map((a) => a.id));
      const nextIds = ids(next);
      const activeIds = ids(this.file.active);
      const applied: AppliedAreas = { added: next.filter((a) => !activeIds.has(a.id)), removed: this.file.active.filter((a) => !nextIds.has(a.id)) };
      await this.save({ ...this.file, active: next, pending: null, applying: null });
      log.info({ added: applied.added.map((a) => a.id), removed: applied.removed.map((a) => a.id), restored: restore.length }, 'the persistent areas changed at the session end');
      this.emit('applied', applied);
      return applied;
    });
  }

  private async save(next: AreasFile): Promise<void> {
    await this.store.write(JSON.stringify(next, null, 2) + '\n');
    this.file = next;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
