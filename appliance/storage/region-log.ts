/**
 * Region log: the persistent write log (docs/write-log-format.md), in the manner of dm-era /
 * md-bitmap. Per region two bits:
 *   D — the working disk may differ from the model here (set before any write, cleared lazily
 *       once the hydrator has durably copied the model's bytes back);
 *   S — the working disk is authoritative here in the current session (written this session).
 * A region with D and not S is *pending*: it reads from the model until it is restored.
 *
 * S bits carry the *epoch* of their 512-byte bitmap sector: a sector whose stamp is not the
 * header's epoch has no S bits. Ending a session is one header write that increments the epoch:
 * O(1) whatever the number of changed regions.
 *
 * Every bitmap sector carries a checksum. A sector that fails it (a bad SD-card sector, a torn
 * write) cannot say which of its regions differ from the model, so all of them become pending:
 * they are restored from the model, never served from a working disk nobody vouches for. The
 * damage is reported (`damage`, an error in the log); a sector is rewritten sound by the next
 * commit that writes it (the background restore of its regions does), and reported at every
 * open until then.
 *
 * Two views of S are kept in memory: `sView` (what reads obey) and `persistable S` (what may be
 * written to disk). For a clean region both are set together before the host's data is
 * written. For a pending region, S may reach the disk only after the host's data is durable
 * (otherwise, after a crash, stale bytes would be read as the host's), so the protected disk
 * records those regions with `noteWrittenPending()` and promotes them at its next flush.
 *
 * Group commit: every caller that needs bits durable gets the promise of the next commit; a
 * commit writes all dirty sectors (coalesced into contiguous runs) with FUA — on a file, through
 * an O_DSYNC descriptor, so that writing and making durable is one call rather than a write
 * and an fdatasync in turn. One commit runs at a time (two writes of a sector never overlap);
 * marks made meanwhile gather in the next. A commit resolves only once its sectors are durable:
 * set-before-write holds.
 *
 * Logs of format 1 (no checksums) are read as they are and migrated at their first write: the
 * bitmap in format 2 is written to a new area after the old one and made durable, then one
 * header write switches to it. A power cut at any point leaves the old log or the new one.
 */
import { crc32 } from 'node:zlib';
import type { BlockDevice } from './block-device.js';
import { SnapbackError, isSnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

export const LOG_MAGIC = 'SNAPLOG1';
/** The format this code writes. */
export const LOG_VERSION = 2;
/** The format of release 0.1.0: read, and migrated to LOG_VERSION at the first write. */
export const LEGACY_LOG_VERSION = 1;
export const SLOT_SIZE = 4096;
export const SECTOR = 512;
export const BITMAP_OFFSET = 2 * SLOT_SIZE;
export const STAMP_BYTES = 8;
export const BITS_BYTES = 250; // per kind per sector
export const REGIONS_PER_SECTOR = BITS_BYTES * 8; // 2000
const D_AT = STAMP_BYTES;
const S_AT = STAMP_BYTES + BITS_BYTES;
/** Where a bitmap sector keeps its checksum: CRC-32 of its index (u32) and bytes 0–507. */
export const SECTOR_CRC_AT = SECTOR - 4;
// format 1: no checksum, 252 bytes of bits per kind
const V1_BITS_BYTES = 252;
const V1_REGIONS_PER_SECTOR = V1_BITS_BYTES * 8;

export type LogMode = 'frozen' | 'thawed';
export type LogRestoreMode = 'instant' | 'eager';

export interface LogHeader {
  generation: number;
  modelId: string; // 64 hex chars
  regionSize: number;
  diskSize: number;
  regionCount: number;
  epoch: number;
  sessionNumber: number;
  sessionStartedAt: number; // ms since the epoch
  mode: LogMode;
  restoreMode: LogRestoreMode;
}

/** Bitmap sectors found damaged at open, and the regions they made pending. */
export interface BitmapDamage {
  /** Indexes of the bitmap sectors whose checksum failed. */
  sectors: number[];
  /** How many regions those sectors hold (all now pending: restored from the model). */
  regions: number;
  /** The same regions as inclusive ranges, one per run of adjacent damaged sectors. */
  ranges: { first: number; last: number }[];
}

/**
 * What a failed header write left (in the error's `details.header`):
 *   'unchanged' — nothing changed: the log, in memory and on disk, is as before the call;
 *   'applied'   — the new header is written and in force (memory and any reader of the file
 *                 agree), but the flush that makes it durable failed: a power cut before the
 *                 next successful flush of the log may bring back the previous header.
 */
export type HeaderOutcome = 'unchanged' | 'applied';

/** The outcome recorded in an error from a header write (setModes, endSession, adoptModel); null for other errors. */
export function headerWriteOutcome(err: unknown): HeaderOutcome | null {
  if (!isSnapbackError(err)) return null;
  const h = err.details?.header;
  return h === 'unchanged' || h === 'applied' ? h : null;
}

function headerError(err: unknown, outcome: HeaderOutcome): SnapbackError {
  const code = isSnapbackError(err) ? err.code : 'IO_ERROR';
  const msg = err instanceof Error ? err.message : String(err);
  const what = outcome === 'unchanged' ? 'the write log is unchanged' : 'the change is in force but could not be made durable';
  return new SnapbackError(code, `${msg} (write-log header: ${what})`, { ...(isSnapbackError(err) ? err.details : {}), header: outcome }, { cause: err });
}

const log = childLogger('region-log');

export function logFileSize(regionCount: number): number {
  return BITMAP_OFFSET + sectorCountFor(regionCount) * SECTOR;
}
function sectorCountFor(regionCount: number): number {
  return Math.max(1, Math.ceil(regionCount / REGIONS_PER_SECTOR));
}
function v1SectorCountFor(regionCount: number): number {
  return Math.max(1, Math.ceil(regionCount / V1_REGIONS_PER_SECTOR));
}

export function encodeHeader(h: LogHeader, bitmapOffset = BITMAP_OFFSET): Buffer {
  const b = Buffer.alloc(SECTOR);
  b.write(LOG_MAGIC, 0, 'latin1');
  b.writeUInt32LE(LOG_VERSION, 8);
  b.writeUInt32LE(SECTOR, 12);
  b.writeBigUInt64LE(BigInt(h.generation), 16);
  Buffer.from(h.modelId, 'hex').copy(b, 24, 0, 32);
  b.writeUInt32LE(h.regionSize, 56);
  b.writeUInt32LE(0, 60); // flags, none yet
  b.writeBigUInt64LE(BigInt(h.diskSize), 64);
  b.writeBigUInt64LE(BigInt(h.regionCount), 72);
  b.writeBigUInt64LE(BigInt(h.epoch), 80);
  b.writeBigUInt64LE(BigInt(h.sessionNumber), 88);
  b.writeBigUInt64LE(BigInt(h.sessionStartedAt), 96);
  b.writeUInt8(h.mode === 'thawed' ? 1 : 0, 104);
  b.writeUInt8(h.restoreMode === 'eager' ? 1 : 0, 105);
  b.writeBigUInt64LE(BigInt(bitmapOffset), 112);
  b.writeBigUInt64LE(BigInt(sectorCountFor(h.regionCount)), 120);
  b.writeUInt32LE(crc32(b.subarray(0, SECTOR - 4)), SECTOR - 4);
  return b;
}

export interface DecodedHeader {
  header: LogHeader;
  version: number;
  bitmapOffset: number;
  bitmapSectors: number;
}

/** Decodes a header slot of format 1 or 2; returns a reason when the slot is not valid. */
export function decodeHeader(b: Buffer): DecodedHeader | { invalid: string } {
  if (b.length < SECTOR) return { invalid: 'short slot' };
  if (b.toString('latin1', 0, 8) !== LOG_MAGIC) return { invalid: 'bad magic' };
  if (crc32(b.subarray(0, SECTOR - 4)) !== b.readUInt32LE(SECTOR - 4)) return { invalid: 'checksum mismatch' };
  const version = b.readUInt32LE(8);
  if (version !== LOG_VERSION && version !== LEGACY_LOG_VERSION) return { invalid: `unsupported version ${version}` };
  return {
    version,
    bitmapOffset: Number(b.readBigUInt64LE(112)),
    bitmapSectors: Number(b.readBigUInt64LE(120)),
    header: {
      generation: Number(b.readBigUInt64LE(16)),
      modelId: b.toString('hex', 24, 56),
      regionSize: b.readUInt32LE(56),
      diskSize: Number(b.readBigUInt64LE(64)),
      regionCount: Number(b.readBigUInt64LE(72)),
      epoch: Number(b.readBigUInt64LE(80)),
      sessionNumber: Number(b.readBigUInt64LE(88)),
      sessionStartedAt: Number(b.readBigUInt64LE(96)),
      mode: b.readUInt8(104) === 1 ? 'thawed' : 'frozen',
      restoreMode: b.readUInt8(105) === 1 ? 'eager' : 'instant',
    },
  };
}

/** The checksum a bitmap sector must carry: CRC-32 of its index (u32 LE) and its bytes 0–507. */
export function bitmapSectorCrc(image: Uint8Array, s: number, base = s * SECTOR): number {
  const idx = Buffer.allocUnsafe(4);
  idx.writeUInt32LE(s >>> 0);
  return crc32(image.subarray(base, base + SECTOR_CRC_AT), crc32(idx));
}

/** One group commit: its promise, and the regions whose marks it makes durable. */
interface Batch {
  promise: Promise<void>;
  resolve: () => void;
  reject: (e: unknown) => void;
  regions: number[];
  failed: boolean;
}
function newBatch(): Batch {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => undefined); // a commit nobody waits for must not crash the process
  return { promise, resolve, reject, regions: [], failed: false };
}

export interface OpenedLog {
  log: RegionLog;
  /** Which header slot was used and why the other was not (for loud warnings). */
  slotUsed: 'A' | 'B';
  otherSlotProblem: string | null;
  /** Bitmap sectors that failed their checksum (their regions are now pending), or null. */
  bitmapDamage: BitmapDamage | null;
  /** The format the log was found in (a format-1 log is migrated at its first write). */
  formatVersion: number;
}

const POPCOUNT = new Uint8Array(256).map((_, i) => {
  let n = 0;
  for (let v = i; v; v >>= 1) n += v & 1;
  return n;
});
function popcount(b: Uint8Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) n += POPCOUNT[b[i]!]!;
  return n;
}

export class RegionLog {
  private header: LogHeader;
  private activeSlot: 0 | 1;
  /** Where the bitmap lives in the log device (BITMAP_OFFSET, or after the old area of a migrated log). */
  private bitmapOffset: number;
  /** A format-1 log not yet migrated: where its format-2 bitmap will go. */
  private migrateTo: number | null;
  /** The bitmap area exactly as it is (or will be) on disk: per sector stamp | D | persistable S | CRC. */
  private readonly image: Buffer;
  /** S bits as reads obey them, with a per-sector stamp. */
  private readonly sView: Uint8Array;
  private readonly sStamp: Float64Array;
  private readonly dirty = new Set<number>();
  /** Pending regions whose data is written but not yet known durable: S persisted after flush. */
  private readonly writtenPending = new Set<number>();
  /** Regions marked but whose mark is not yet durable, with the commit that makes it so. */
  private readonly unconfirmed = new Map<number, Batch>();
  /** The batch collecting marks (not started yet). */
  private next: Batch | null = null;
  /** A batch is writing its sectors (one at a time: writes of a sector never overlap). */
  private writing = false;
  /** Batches started and not yet settled. */
  private readonly inFlight = new Set<Batch>();
  /** A header write holds the log: no commit starts until it is done. */
  private headerBusy = false;
  private headerQueue: Promise<void> = Promise.resolve();
  private dCount = 0;
  private sCount = 0;
  private closed = false;
  /** A model switch is under way: no D bit may be cleared (see switchModel). */
  private switching = 0;
  /**
   * Regions of persistent areas (one bit a region, laid out as the D bits: sector s's bytes are
   * s * BITS_BYTES onwards), or null: the working disk is authoritative there, so D and S are
   * never set (setPersistent).
   */
  private persistent: Uint8Array | null = null;
  /** Bitmap sectors that failed their checksum at open (null: none). */
  readonly damage: BitmapDamage | null;

  private readonly dev: BlockDevice;

  private constructor(dev: BlockDevice, header: LogHeader, activeSlot: 0 | 1, image: Buffer, bitmapOffset: number, damaged: readonly number[], migrateTo: number | null) {
    this.dev = dev;
    this.header = header;
    this.activeSlot = activeSlot;
    this.image = image;
    this.bitmapOffset = bitmapOffset;
    this.migrateTo = migrateTo;
    const n = header.regionCount;
    const sectors = sectorCountFor(n);
    this.sView = new Uint8Array(sectors * BITS_BYTES);
    this.sStamp = new Float64Array(sectors);
    let damagedRegions = 0;
    const ranges: { first: number; last: number }[] = [];
    for (const s of damaged) {
      // nothing in this sector can be trusted: every region of it pending, none written
      const base = s * SECTOR;
      const count = Math.min(REGIONS_PER_SECTOR, n - s * REGIONS_PER_SECTOR);
      image.fill(0, base, base + SECTOR);
      image.writeBigUInt64LE(BigInt(header.epoch), base);
      setAllD(image, s, n);
      // not written back here: until a write of this sector (a mark, a restored region), every
      // open finds and reports the damage again, and reads it the same safe way
      damagedRegions += count;
      const first = s * REGIONS_PER_SECTOR;
      const last = first + count - 1;
      const prev = ranges[ranges.length - 1];
      if (prev && prev.last + 1 === first) prev.last = last;
      else ranges.push({ first, last });
    }
    this.damage = damaged.length ? { sectors: [...damaged], regions: damagedRegions, ranges } : null;
    for (let s = 0; s < sectors; s++) {
      const base = s * SECTOR;
      if (Number(image.readBigUInt64LE(base)) === header.epoch) {
        this.sStamp[s] = header.epoch;
        let repaired = false;
        for (let i = 0; i < BITS_BYTES; i++) {
          const sv = image[base + S_AT + i]!;
          const d = image[base + D_AT + i]!;
          // S without D cannot be: repair to the safe side
          if (sv & ~d) {
            image[base + D_AT + i] = d | sv;
            repaired = true;
          }
        }
        if (repaired) this.dirty.add(s);
        this.sView.set(image.subarray(base + S_AT, base + S_AT + BITS_BYTES), s * BITS_BYTES);
      }
      this.dCount += popcount(image, base + D_AT, base + D_AT + BITS_BYTES);
    }
    this.sCount = popcount(this.sView, 0, this.sView.length);
  }

  /** Creates a new log on `dev` (which must hold at least logFileSize bytes) and opens it. */
  static async create(dev: BlockDevice, init: Omit<LogHeader, 'generation' | 'regionCount' | 'epoch'>, allPending: boolean | ((region: number) => boolean)): Promise<RegionLog> {
    await dev.open();
    const regionCount = Math.ceil(init.diskSize / init.regionSize);
    const header: LogHeader = { ...init, generation: 1, regionCount, epoch: 1 };
    const sectors = sectorCountFor(regionCount);
    const image = Buffer.alloc(sectors * SECTOR);
    if (allPending === true) {
      for (let s = 0; s < sectors; s++) setAllD(image, s, regionCount);
    } else if (typeof allPending === 'function') {
      for (let r = 0; r < regionCount; r++) {
        if (allPending(r)) setBit(image, Math.floor(r / REGIONS_PER_SECTOR) * SECTOR + D_AT, r % REGIONS_PER_SECTOR, true);
      }
    }
    for (let s = 0; s < sectors; s++) image.writeUInt32LE(bitmapSectorCrc(image, s), s * SECTOR + SECTOR_CRC_AT);
    // Bitmap first, then the header that makes it meaningful; slot B is zeroed (invalid).
    await dev.write(BITMAP_OFFSET, image);
    await dev.write(SLOT_SIZE, Buffer.alloc(SECTOR));
    await dev.flush();
    await dev.write(0, encodeHeader(header));
    await dev.flush();
    return new RegionLog(dev, header, 0, image, BITMAP_OFFSET, [], null);
  }

  /**
   * Opens an existing log: the newer valid header slot wins; no valid slot refuses (LOG_CORRUPT)
   * and writes nothing. Opening never writes: damaged bitmap sectors are repaired, and a
   * format-1 log migrated, by the first commit or header write.
   */
  static async open(dev: BlockDevice): Promise<OpenedLog> {
    await dev.open();
    if (dev.size < BITMAP_OFFSET + SECTOR) throw new SnapbackError('LOG_CORRUPT', `write log is too short (${dev.size} bytes)`);
    const a = decodeHeader(await dev.read(0, SECTOR));
    const b = decodeHeader(await dev.read(SLOT_SIZE, SECTOR));
    let slot: 0 | 1;
    let d: DecodedHeader;
    let other: string | null = null;
    if ('header' in a && 'header' in b) {
      slot = b.header.generation > a.header.generation ? 1 : 0;
      d = slot === 1 ? b : a;
    } else if ('header' in a) {
      slot = 0;
      d = a;
      other = `slot B: ${(b as { invalid: string }).invalid}`;
    } else if ('header' in b) {
      slot = 1;
      d = b;
      other = `slot A: ${(a as { invalid: string }).invalid}`;
    } else {
      throw new SnapbackError('LOG_CORRUPT', `write log has no valid header (slot A: ${(a as { invalid: string }).invalid}; slot B: ${(b as { invalid: string }).invalid}); refusing to serve`, {
        slotA: (a as { invalid: string }).invalid,
        slotB: (b as { invalid: string }).invalid,
      });
    }
    const header = d.header;
    const expectCount = Math.ceil(header.diskSize / header.regionSize);
    if (header.regionCount !== expectCount) throw new SnapbackError('LOG_CORRUPT', `write log header is inconsistent: ${header.regionCount} regions for ${header.diskSize} bytes at ${header.regionSize}`);
    const legacy = d.version === LEGACY_LOG_VERSION;
    const sectors = legacy ? v1SectorCountFor(header.regionCount) : sectorCountFor(header.regionCount);
    const offset = legacy ? BITMAP_OFFSET : d.bitmapOffset;
    if (d.bitmapSectors !== sectors || offset < BITMAP_OFFSET || offset % SECTOR !== 0) {
      throw new SnapbackError('LOG_CORRUPT', `write log header is inconsistent: a bitmap of ${d.bitmapSectors} sectors at ${d.bitmapOffset} for ${header.regionCount} regions`);
    }
    const need = offset + sectors * SECTOR;
    if (dev.size < need) throw new SnapbackError('LOG_CORRUPT', `write log is truncated: ${dev.size} bytes, needs ${need}`);
    const raw = await dev.read(offset, sectors * SECTOR);
    // a slot that was never written (all zeroes, as create() leaves slot B) is no problem
    if (other && (await dev.read(slot === 0 ? SLOT_SIZE : 0, SECTOR)).every((x) => x === 0)) other = null;
    if (other) log.warn({ problem: other }, 'one write-log header slot is not valid; using the other');
    let rlog: RegionLog;
    if (legacy) {
      const image = convertV1Bitmap(raw, header);
      // the format-2 bitmap goes after the old one, on a fresh 4 KiB boundary
      const migrateTo = Math.ceil(need / SLOT_SIZE) * SLOT_SIZE;
      log.info({ regions: header.regionCount }, 'the write log is of format 1: it is migrated to format 2 (checksummed bitmap sectors) at its first write');
      rlog = new RegionLog(dev, header, slot, image, offset, [], migrateTo);
    } else {
      const damaged: number[] = [];
      for (let s = 0; s < sectors; s++) if (bitmapSectorCrc(raw, s) !== raw.readUInt32LE(s * SECTOR + SECTOR_CRC_AT)) damaged.push(s);
      rlog = new RegionLog(dev, header, slot, raw, offset, damaged, null);
      if (rlog.damage) {
        log.error(
          { sectors: rlog.damage.sectors, regions: rlog.damage.regions, ranges: rlog.damage.ranges },
          `THE WRITE LOG'S BITMAP IS DAMAGED: ${rlog.damage.sectors.length} sector(s) failed their checksum; their ${rlog.damage.regions} regions are now pending and will be restored from the model (changes the host made there are lost)`,
        );
      }
    }
    return { log: rlog, slotUsed: slot === 0 ? 'A' : 'B', otherSlotProblem: other, bitmapDamage: rlog.damage, formatVersion: d.version };
  }

  get info(): Readonly<LogHeader> {
    return this.header;
  }
  get regionCount(): number {
    return this.header.regionCount;
  }
  get regionSize(): number {
    return this.header.regionSize;
  }
  get dirtyCount(): number {
    return this.dCount;
  }
  get writtenCount(): number {
    return this.sCount;
  }
  get pendingCount(): number {
    return this.dCount - this.sCount;
  }
  /** Bytes of memory the bitmap takes (the on-disk image, the read view of S and its stamps). */
  get memoryBytes(): number {
    return this.image.length + this.sView.length + this.sStamp.byteLength;
  }

  isDirty(r: number): boolean {
    return getBit(this.image, Math.floor(r / REGIONS_PER_SECTOR) * SECTOR + D_AT, r % REGIONS_PER_SECTOR);
  }
  isWritten(r: number): boolean {
    const s = Math.floor(r / REGIONS_PER_SECTOR);
    if (this.sStamp[s] !== this.header.epoch) return false;
    return getBit(this.sView, s * BITS_BYTES, r % REGIONS_PER_SECTOR);
  }
  isPending(r: number): boolean {
    return this.isDirty(r) && !this.isWritten(r);
  }
  /** Region r lies in a persistent area: what the host writes there is kept, never restored. */
  isPersistent(r: number): boolean {
    return this.persistent !== null && getBit(this.persistent, 0, r);
  }
  /** How many regions lie in persistent areas. */
  get persistentCount(): number {
    return this.persistent ? popcount(this.persistent, 0, this.persistent.length) : 0;
  }

  /**
   * Puts persistent areas in force (`mask`: one bit a region; null: none). The caller vouches
   * that the working disk durably holds what the host may read in every region of the mask
   * (nothing pending there: restored first, see persistent-areas.ts). Regions entering the mask
   * lose D and S: never pending, never restored, never marked again. Regions leaving it get D
   * and S, as if written this session: the working disk may differ from the model there, so a
   * frozen session end restores them and a thawed one keeps them. Durable when it resolves.
   */
  async setPersistent(mask: Uint8Array | null): Promise<void> {
    const n = this.header.regionCount;
    const before = this.persistent;
    this.persistent = mask && popcount(mask, 0, Math.min(mask.length, Math.ceil(n / 8))) > 0 ? Uint8Array.from(mask.subarray(0, Math.ceil(n / 8))) : null;
    let changed = false;
    for (let s = 0; s < sectorCountFor(n); s++) {
      for (let i = 0; i < BITS_BYTES; i++) {
        const k = s * BITS_BYTES + i;
        const was = before?.[k] ?? 0;
        const now = this.persistent?.[k] ?? 0;
        if (was === 0 && now === 0) continue;
        for (let b = 0; b < 8; b++) {
          const r = k * 8 + b;
          if (r >= n) break;
          const bit = 1 << b;
          if (now & bit) {
            if (this.dropMarks(r)) changed = true;
          } else if (was & bit) {
            this.freshen(s);
            if (!this.isDirty(r)) this.dCount++;
            if (!getBit(this.sView, s * BITS_BYTES, r % REGIONS_PER_SECTOR)) this.sCount++;
            setBit(this.image, s * SECTOR + D_AT, r % REGIONS_PER_SECTOR, true);
            setBit(this.image, s * SECTOR + S_AT, r % REGIONS_PER_SECTOR, true);
            setBit(this.sView, s * BITS_BYTES, r % REGIONS_PER_SECTOR, true);
            this.dirty.add(s);
            changed = true;
          }
        }
      }
    }
    if (changed) await this.commit();
  }

  /** Clears D and S of region r (a persistent region); true if anything changed. */
  private dropMarks(r: number): boolean {
    const s = Math.floor(r / REGIONS_PER_SECTOR);
    const bit = r % REGIONS_PER_SECTOR;
    let changed = false;
    if (this.isWritten(r)) {
      setBit(this.sView, s * BITS_BYTES, bit, false);
      this.sCount--;
    }
    if (getBit(this.image, s * SECTOR + S_AT, bit)) {
      setBit(this.image, s * SECTOR + S_AT, bit, false);
      changed = true;
    }
    if (this.isDirty(r)) {
      setBit(this.image, s * SECTOR + D_AT, bit, false);
      this.dCount--;
      changed = true;
    }
    this.writtenPending.delete(r);
    this.unconfirmed.delete(r);
    if (changed) this.dirty.add(s);
    return changed;
  }

  /** Clears the D bits of persistent regions in bitmap sector s after a whole-sector mark. */
  private unmarkPersistent(s: number): void {
    const p = this.persistent;
    if (!p) return;
    const at = s * SECTOR + D_AT;
    for (let i = 0; i < BITS_BYTES; i++) {
      const m = p[s * BITS_BYTES + i] ?? 0;
      if (m === 0) continue;
      this.image[at + i] = this.image[at + i]! & ~m;
    }
  }

  /** Finds the next pending region at or after `from` (wrapping not done); -1 when none. */
  nextPending(from: number): number {
    const n = this.header.regionCount;
    if (this.pendingCount === 0) return -1;
    for (let r = from; r < n; r++) {
      // skip whole clean sectors quickly
      if (r % REGIONS_PER_SECTOR === 0 && this.sectorHasNoD(r / REGIONS_PER_SECTOR)) {
        r += REGIONS_PER_SECTOR - 1;
        continue;
      }
      if (this.isPending(r)) return r;
    }
    return -1;
  }

  /**
   * Finds the next region at or after `from` that may differ from the model (D set: written or
   * pending); -1 when none. Skips clean sectors and clean bytes, so reading the whole map of a
   * 16 M-region disk costs little more than its dirty regions.
   */
  nextDirty(from: number): number {
    const n = this.header.regionCount;
    if (this.dCount === 0) return -1;
    let r = Math.max(0, from);
    while (r < n) {
      const s = Math.floor(r / REGIONS_PER_SECTOR);
      const bit = r % REGIONS_PER_SECTOR;
      if (bit === 0 && this.sectorHasNoD(s)) {
        r += REGIONS_PER_SECTOR;
        continue;
      }
      if ((bit & 7) === 0 && this.image[s * SECTOR + D_AT + (bit >> 3)] === 0) {
        r += 8;
        continue;
      }
      if (this.isDirty(r)) return r;
      r++;
    }
    return -1;
  }

  private sectorHasNoD(s: number): boolean {
    const base = s * SECTOR + D_AT;
    for (let i = 0; i < BITS_BYTES; i++) if (this.image[base + i] !== 0) return false;
    return true;
  }

  private setD(r: number, on: boolean): void {
    const s = Math.floor(r / REGIONS_PER_SECTOR);
    setBit(this.image, s * SECTOR + D_AT, r % REGIONS_PER_SECTOR, on);
    this.dirty.add(s);
  }

  /** Brings a sector's stamps to the current epoch, clearing its stale S bits (both views). */
  private freshen(s: number): void {
    const epoch = this.header.epoch;
    if (this.sStamp[s] !== epoch) {
      this.sView.fill(0, s * BITS_BYTES, (s + 1) * BITS_BYTES);
      this.sStamp[s] = epoch;
    }
    const base = s * SECTOR;
    if (Number(this.image.readBigUInt64LE(base)) !== epoch) {
      this.image.fill(0, base + S_AT, base + S_AT + BITS_BYTES);
      this.image.writeBigUInt64LE(BigInt(epoch), base);
    }
  }

  /**
   * Marks a clean or written region as written this session (D and S, both views) and returns
   * the commit to await before the host's data may be written. Returns null when the region
   * needs nothing made durable. Must not be used for a pending region.
   */
  markForWrite(r: number): Promise<void> | null {
    if (this.persistent !== null && getBit(this.persistent, 0, r)) return null; // the disk is authoritative: no mark
    const s = Math.floor(r / REGIONS_PER_SECTOR);
    this.freshen(s);
    const bit = r % REGIONS_PER_SECTOR;
    const wasD = this.isDirty(r);
    const wasS = getBit(this.sView, s * BITS_BYTES, bit);
    if (wasS) {
      // Written-pending (S not persistable until the data is durable): nothing to wait for.
      if (!getBit(this.image, s * SECTOR + S_AT, bit)) return null;
      const b = this.unconfirmed.get(r);
      if (!b) return null;
      if (!b.failed) return b.promise;
      // that commit failed (its sectors are dirty again): ask for another
      this.dirty.add(s);
      return this.track(r, this.batch()).promise;
    }
    if (wasD && !wasS) throw new SnapbackError('BUSY', `region ${r} is pending: it cannot be marked ahead of its write`);
    if (!wasD) {
      setBit(this.image, s * SECTOR + D_AT, bit, true);
      this.dCount++;
    }
    if (!wasS) {
      setBit(this.sView, s * BITS_BYTES, bit, true);
      this.sCount++;
    }
    setBit(this.image, s * SECTOR + S_AT, bit, true);
    this.dirty.add(s);
    return this.track(r, this.batch()).promise;
  }

  /**
   * A pending region's data (model merged with the host's bytes) has been written: reads now
   * come from the working disk. Its S bit is persisted by `promoteWrittenPending()` once the
   * caller has made the data durable.
   */
  noteWrittenPending(r: number): void {
    const s = Math.floor(r / REGIONS_PER_SECTOR);
    this.freshen(s);
    const bit = r % REGIONS_PER_SECTOR;
    if (!getBit(this.sView, s * BITS_BYTES, bit)) {
      setBit(this.sView, s * BITS_BYTES, bit, true);
      this.sCount++;
    }
    this.writtenPending.add(r);
  }

  /**
   * Call after the working disk was flushed: persists S for every region noted before the
   * flush, and resolves once those S bits are durable — including bits another caller promoted
   * a moment ago whose commit is still running.
   */
  promoteWrittenPending(regions?: Iterable<number>): Promise<void> {
    const list = regions ? [...regions] : [...this.writtenPending];
    const promoted: number[] = [];
    for (const r of list) {
      if (!this.writtenPending.delete(r)) continue;
      if (!this.isWritten(r)) continue; // the session ended since
      const s = Math.floor(r / REGIONS_PER_SECTOR);
      this.freshen(s);
      setBit(this.image, s * SECTOR + S_AT, r % REGIONS_PER_SECTOR, true);
      this.dirty.add(s);
      promoted.push(r);
    }
    if (promoted.length) {
      const b = this.batch();
      for (const r of promoted) this.track(r, b);
    }
    const waits = new Set<Promise<void>>();
    for (const r of list) {
      const b = this.unconfirmed.get(r);
      if (b) waits.add(b.failed ? this.commit() : b.promise);
    }
    return waits.size ? Promise.all(waits).then(() => undefined) : Promise.resolve();
  }

  /** Region r's mark becomes durable with batch b. */
  private track(r: number, b: Batch): Batch {
    this.unconfirmed.set(r, b);
    b.regions.push(r);
    return b;
  }

  get writtenPendingRegions(): number[] {
    return [...this.writtenPending];
  }
  get writtenPendingCount(): number {
    return this.writtenPending.size;
  }

  /** The hydrator durably copied the model into region r: clear D (persisted lazily). */
  clearRestored(r: number): void {
    if (!this.isPending(r) || this.switching > 0) return;
    this.setD(r, false);
    this.dCount--;
  }

  /** Marks every region pending and not written (a log found to belong to another model). */
  async markAllPending(): Promise<void> {
    // sector by sector, not region by region: a 1 TiB disk has 16 M regions
    const n = this.header.regionCount;
    for (let s = 0; s < sectorCountFor(n); s++) {
      const at = s * SECTOR + D_AT;
      const before = popcount(this.image, at, at + BITS_BYTES);
      setAllD(this.image, s, n);
      this.unmarkPersistent(s);
      const after = popcount(this.image, at, at + BITS_BYTES);
      if (after !== before) {
        this.dCount += after - before;
        this.dirty.add(s);
      }
    }
    await this.commit();
  }

  /** Makes the bitmap as it stands durable (used by lazily cleared D bits). */
  sync(): Promise<void> {
    return this.dirty.size > 0 || this.inFlight.size > 0 || this.next ? this.commit() : Promise.resolve();
  }

  /**
   * Ends the session in one atomic header write. Frozen: the epoch moves on, so every S bit
   * lapses and every D region becomes pending. Thawed (`keepWrites`): only the session number
   * moves on; the host keeps its changes. A failure says in its error what it left
   * (`headerWriteOutcome`).
   */
  async endSession(keepWrites: boolean, now = Date.now()): Promise<void> {
    await this.sync(); // lazily cleared D bits and queued marks first
    await this.writeHeader((h) => ({ ...h, sessionNumber: h.sessionNumber + 1, sessionStartedAt: now, epoch: keepWrites ? h.epoch : h.epoch + 1 }));
  }

  async setModes(mode: LogMode, restoreMode: LogRestoreMode): Promise<void> {
    if (mode === this.header.mode && restoreMode === this.header.restoreMode) return;
    await this.writeHeader((h) => ({ ...h, mode, restoreMode }));
  }

  /**
   * Puts another model in force. D is set for every region `differing` names (one bit a region,
   * as planned by model-switch.ts) and made durable first; then one header write names the new
   * model and moves the epoch on, so the session's S bits lapse and every D region is pending:
   * restored from the new model. A power cut before that header write leaves the old model in
   * force, with at most some regions more pending (restored from it again: harmless); after it,
   * the new model, with D wherever the working disk may differ from it. Never a mix.
   * `newSession` also moves the session number on (a session end); without it the host's session
   * goes on (a captured disk made the new baseline). No D bit is cleared while this runs: the
   * background restore copying the old model's bytes must not make a region clean under the new
   * one. A failure says in its error what it left (`headerWriteOutcome`).
   */
  async switchModel(modelId: string, differing: Uint8Array, options: { newSession: boolean; now?: number }): Promise<void> {
    if (!/^[0-9a-f]{64}$/.test(modelId)) throw new SnapbackError('BAD_ARGUMENT', `model id ${modelId} is not 64 hex digits`);
    const n = this.header.regionCount;
    if (differing.length < Math.ceil(n / 8)) throw new SnapbackError('BAD_ARGUMENT', `the switch names ${differing.length * 8} regions, the log holds ${n}`);
    this.switching++;
    try {
      await this.sync(); // marks made before the switch first
      for (let s = 0; s < sectorCountFor(n); s++) {
        const at = s * SECTOR + D_AT;
        const count = Math.min(REGIONS_PER_SECTOR, n - s * REGIONS_PER_SECTOR);
        const bytes = Math.ceil(count / 8);
        let changed = false;
        for (let i = 0; i < bytes; i++) {
          let add = differing[s * BITS_BYTES + i]! & ~this.image[at + i]! & ~(this.persistent?.[s * BITS_BYTES + i] ?? 0);
          if (i === bytes - 1 && count & 7) add &= (1 << (count & 7)) - 1; // no bits past the last region
          if (add === 0) continue;
          this.image[at + i] = this.image[at + i]! | add;
          this.dCount += POPCOUNT[add]!;
          changed = true;
        }
        if (changed) this.dirty.add(s);
      }
      await this.commit(); // D durable before the header that makes it mean the new model
      const now = options.now ?? Date.now();
      await this.writeHeader((h) => ({
        ...h,
        modelId,
        epoch: h.epoch + 1,
        ...(options.newSession ? { sessionNumber: h.sessionNumber + 1, sessionStartedAt: now } : {}),
      }));
    } finally {
      this.switching--;
    }
  }

  /**
   * Clears D for the regions `restored` names that are pending now: the caller vouches that the
   * working disk durably holds the model's bytes there (a captured disk made the model). Made
   * durable before it resolves. Regions written since are left alone.
   */
  async clearMatching(restored: Uint8Array): Promise<number> {
    const n = this.header.regionCount;
    let cleared = 0;
    for (let r = this.nextDirty(0); r >= 0 && r < n; r = this.nextDirty(r + 1)) {
      if (!((restored[r >> 3] ?? 0) & (1 << (r & 7)))) continue;
      if (!this.isPending(r)) continue;
      this.setD(r, false);
      this.dCount--;
      cleared++;
    }
    await this.commit();
    return cleared;
  }

  /**
   * Adopts another model: every region becomes pending and unwritten (bitmap made durable
   * first, then one header write with the new model id and a new epoch).
   */
  async adoptModel(modelId: string): Promise<void> {
    await this.markAllPending();
    await this.writeHeader((h) => ({ ...h, modelId, epoch: h.epoch + 1 }));
  }

  /**
   * Writes a new header (to the slot not holding the current one), serialised with commits:
   * every batch in flight settles first, and none starts until the header is written.
   */
  private writeHeader(change: (h: LogHeader) => LogHeader): Promise<void> {
    const run = this.headerQueue.then(async () => {
      this.headerBusy = true;
      try {
        while (this.writing || this.inFlight.size > 0) await Promise.allSettled([...this.inFlight].map((b) => b.promise));
        this.checkOpen();
        await this.migrate();
        await this.putHeader(change(this.header));
      } finally {
        this.headerBusy = false;
        if (this.next) this.startCommit();
      }
    });
    this.headerQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * One header write and flush. A failed write changed nothing (the slot written is not the one
   * in force; a torn one fails its checksum). A failed flush is retried once with the bytes
   * written again (a failed fdatasync may leave the page clean without writing it); if that
   * fails too, the header is in force in memory as it is for any reader of the file, and the
   * error says 'applied'.
   */
  private async putHeader(next: LogHeader): Promise<void> {
    const h = { ...next, generation: this.header.generation + 1 };
    const slot: 0 | 1 = this.activeSlot === 0 ? 1 : 0;
    const bytes = encodeHeader(h, this.bitmapOffset);
    try {
      await this.dev.write(slot * SLOT_SIZE, bytes);
    } catch (err) {
      throw headerError(err, 'unchanged');
    }
    let flushErr: unknown = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        if (attempt > 0) await this.dev.write(slot * SLOT_SIZE, bytes);
        await this.dev.flush();
        flushErr = null;
        break;
      } catch (err) {
        flushErr = err;
      }
    }
    const epochMoved = h.epoch !== this.header.epoch;
    this.header = h;
    this.activeSlot = slot;
    if (epochMoved) {
      this.sCount = 0;
      this.writtenPending.clear();
      this.unconfirmed.clear();
    }
    if (flushErr) {
      log.error({ err: flushErr }, 'a write-log header was written but could not be made durable');
      throw headerError(flushErr, 'applied');
    }
  }

  /**
   * A format-1 log: writes the whole bitmap in format 2 to its new area and makes it durable,
   * then one header write (format 2, naming the new area) puts it in force. Called with the
   * log held (a commit's write stage or a header write).
   */
  private async migrate(): Promise<void> {
    const to = this.migrateTo;
    if (to === null) return;
    const need = to + this.image.length;
    if (this.dev.size < need) {
      if (!this.dev.grow) throw new SnapbackError('NOT_SUPPORTED', `the write log must grow to ${need} bytes to be migrated to format ${LOG_VERSION}, and its device cannot grow`);
      await this.dev.grow(need);
    }
    const sectors = this.image.length / SECTOR;
    for (let s = 0; s < sectors; s++) this.seal(s);
    await this.dev.write(to, Buffer.from(this.image));
    await this.dev.flush();
    const from = this.bitmapOffset;
    this.bitmapOffset = to;
    try {
      await this.putHeader(this.header);
    } catch (err) {
      if (headerWriteOutcome(err) === 'unchanged') this.bitmapOffset = from;
      else this.migrateTo = null;
      throw err;
    }
    this.migrateTo = null;
    log.info({ bitmapOffset: to }, `the write log was migrated to format ${LOG_VERSION}`);
  }

  /** Group commit: resolves once every bit set before the call is durable. */
  async commit(): Promise<void> {
    const earlier = [...this.inFlight].map((b) => b.promise);
    const mine = this.batch().promise;
    const settled = await Promise.allSettled(earlier);
    await mine;
    // an earlier commit failed after this one took its sectors: its sectors are dirty again
    if (settled.some((x) => x.status === 'rejected')) await this.batch().promise;
  }

  /** The batch the next commit will write (created, and its commit scheduled, if none). */
  private batch(): Batch {
    if (!this.next) {
      this.next = newBatch();
      // after the I/O callbacks of this turn of the event loop: marks they make join this batch
      setImmediate(() => this.startCommit());
    }
    return this.next;
  }

  private startCommit(): void {
    if (this.writing || this.headerBusy || !this.next) return;
    const batch = this.next;
    this.next = null;
    const sectors = [...this.dirty].sort((x, y) => x - y);
    this.dirty.clear();
    this.writing = true;
    this.inFlight.add(batch);
    void this.runCommit(batch, sectors);
  }

  /**
   * A commit: its sectors written with FUA (durable when the write returns: O_DSYNC on a file,
   * one call where a write and an fdatasync would be two), one commit at a time so that two
   * writes of a sector never overlap. Marks made meanwhile gather in the next batch.
   */
  private async runCommit(batch: Batch, sectors: number[]): Promise<void> {
    try {
      this.checkOpen();
      await this.migrate();
      await this.writeSectors(sectors);
    } catch (err) {
      this.failBatch(batch, sectors, err);
      return;
    } finally {
      this.writing = false;
      if (this.next) setImmediate(() => this.startCommit());
    }
    this.inFlight.delete(batch);
    for (const r of batch.regions) if (this.unconfirmed.get(r) === batch) this.unconfirmed.delete(r);
    batch.resolve();
  }

  private failBatch(batch: Batch, sectors: number[], err: unknown): void {
    for (const s of sectors) this.dirty.add(s); // retried by the next commit
    this.inFlight.delete(batch);
    batch.failed = true;
    batch.reject(err);
  }

  /** Sets the checksum of bitmap sector s in the image (its bytes as they are now). */
  private seal(s: number): void {
    this.image.writeUInt32LE(bitmapSectorCrc(this.image, s), s * SECTOR + SECTOR_CRC_AT);
  }

  /** Writes the sectors (ascending), durable when it resolves: one FUA write per span, spans in parallel. */
  private async writeSectors(sectors: number[]): Promise<void> {
    const writes: Promise<void>[] = [];
    let i = 0;
    while (i < sectors.length) {
      // one write per span; clean sectors in small gaps ride along (their bytes are current)
      let j = i;
      while (j + 1 < sectors.length && sectors[j + 1]! - sectors[j]! <= 8) j++;
      const first = sectors[i]!;
      const last = sectors[j]!;
      for (let s = first; s <= last; s++) this.seal(s);
      // copy: the image may change while the write is in flight
      const data = Buffer.from(this.image.subarray(first * SECTOR, (last + 1) * SECTOR));
      writes.push(this.dev.write(this.bitmapOffset + first * SECTOR, data, { fua: true }));
      i = j + 1;
    }
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private checkOpen(): void {
    if (this.closed) throw new SnapbackError('CLOSED', 'the write log is closed');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.sync();
    } finally {
      this.closed = true;
      await this.dev.close();
    }
  }
}

/** A format-1 bitmap (2016 regions per sector, no checksum) in format 2's layout, stamped with the current epoch. */
function convertV1Bitmap(raw: Buffer, header: LogHeader): Buffer {
  const n = header.regionCount;
  const sectors = sectorCountFor(n);
  const image = Buffer.alloc(sectors * SECTOR);
  for (let s = 0; s < sectors; s++) image.writeBigUInt64LE(BigInt(header.epoch), s * SECTOR);
  let s1 = -1;
  let sValid = false;
  for (let r = 0; r < n; r++) {
    const s = Math.floor(r / V1_REGIONS_PER_SECTOR);
    if (s !== s1) {
      s1 = s;
      sValid = Number(raw.readBigUInt64LE(s * SECTOR)) === header.epoch;
    }
    const bit1 = r % V1_REGIONS_PER_SECTOR;
    const base2 = Math.floor(r / REGIONS_PER_SECTOR) * SECTOR;
    const bit2 = r % REGIONS_PER_SECTOR;
    if (getBit(raw, s * SECTOR + STAMP_BYTES, bit1)) setBit(image, base2 + D_AT, bit2, true);
    if (sValid && getBit(raw, s * SECTOR + STAMP_BYTES + V1_BITS_BYTES, bit1)) setBit(image, base2 + S_AT, bit2, true);
  }
  return image;
}

function getBit(buf: Uint8Array, base: number, bit: number): boolean {
  return ((buf[base + (bit >> 3)] ?? 0) & (1 << (bit & 7))) !== 0;
}
/** Sets the D bit of every region of bitmap sector `s` (of a log of `regionCount` regions), a byte at a time. */
function setAllD(image: Uint8Array, s: number, regionCount: number): void {
  const base = s * SECTOR + D_AT;
  const count = Math.min(REGIONS_PER_SECTOR, regionCount - s * REGIONS_PER_SECTOR);
  image.fill(0xff, base, base + (count >> 3));
  const last = base + (count >> 3);
  if (count & 7) image[last] = (image[last] ?? 0) | ((1 << (count & 7)) - 1);
}

function setBit(buf: Uint8Array, base: number, bit: number, on: boolean): void {
  const i = base + (bit >> 3);
  const v = buf[i] ?? 0;
  buf[i] = on ? v | (1 << (bit & 7)) : v & ~(1 << (bit & 7));
}
