/**
 * Region log: the persistent write log (docs/write-log-format.md), in the manner of
 * dm-era / md-bitmap. Per region two bits:
 *   D — the working disk may differ from the model here (set before any write, cleared lazily
 *       once the hydrator has durably copied the model's bytes back);
 *   S — the working disk is authoritative here in the current session (written this session).
 * A region with D and not S is *pending*: it reads from the model until it is restored.
 *
 * S bits carry the *epoch* of their 512-byte bitmap sector: a sector whose stamp is not the
 * header's epoch has no S bits. Ending a session is one header write that increments the epoch:
 * O(1) whatever the number of changed regions.
 *
 * Two views of S are kept in memory: `sView` (what reads obey) and `persistable S` (what may be
 * written to disk). For a clean region both are set together before the host's data is
 * written. For a pending region, S may reach the disk only after the host's data is durable
 * (otherwise, after a crash, stale bytes would be read as the host's), so the protected disk
 * records those regions with `noteWrittenPending()` and promotes them at its next flush.
 *
 * Group commit: every caller that needs bits durable gets the promise of the next commit; a
 * commit writes all dirty sectors (coalesced into contiguous runs) and flushes once.
 */
import { crc32 } from 'node:zlib';
import type { BlockDevice } from './block-device.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';

export const LOG_MAGIC = 'SNAPLOG1';
export const LOG_VERSION = 1;
export const SLOT_SIZE = 4096;
export const SECTOR = 512;
export const BITMAP_OFFSET = 2 * SLOT_SIZE;
export const STAMP_BYTES = 8;
export const BITS_BYTES = 252; // per kind per sector
export const REGIONS_PER_SECTOR = BITS_BYTES * 8; // 2016
const D_AT = STAMP_BYTES;
const S_AT = STAMP_BYTES + BITS_BYTES;

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

const log = childLogger('region-log');

export function logFileSize(regionCount: number): number {
  return BITMAP_OFFSET + sectorCountFor(regionCount) * SECTOR;
}
function sectorCountFor(regionCount: number): number {
  return Math.max(1, Math.ceil(regionCount / REGIONS_PER_SECTOR));
}

export function encodeHeader(h: LogHeader): Buffer {
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
  b.writeBigUInt64LE(BigInt(BITMAP_OFFSET), 112);
  b.writeBigUInt64LE(BigInt(sectorCountFor(h.regionCount)), 120);
  b.writeUInt32LE(crc32(b.subarray(0, SECTOR - 4)), SECTOR - 4);
  return b;
}

/** Decodes a header slot; returns null with a reason when the slot is not valid. */
export function decodeHeader(b: Buffer): { header: LogHeader } | { invalid: string } {
  if (b.length < SECTOR) return { invalid: 'short slot' };
  if (b.toString('latin1', 0, 8) !== LOG_MAGIC) return { invalid: 'bad magic' };
  if (crc32(b.subarray(0, SECTOR - 4)) !== b.readUInt32LE(SECTOR - 4)) return { invalid: 'checksum mismatch' };
  const version = b.readUInt32LE(8);
  if (version !== LOG_VERSION) return { invalid: `unsupported version ${version}` };
  return {
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
}

export class RegionLog {
  private header: LogHeader;
  private activeSlot: 0 | 1;
  /** The bitmap area exactly as it is (or will be) on disk: per sector stamp | D | persistable S. */
  private readonly image: Buffer;
  /** S bits as reads obey them, with a per-sector stamp. */
  private readonly sView: Uint8Array;
  private readonly sStamp: Float64Array;
  private readonly dirty = new Set<number>();
  /** Pending regions whose data is written but not yet known durable: S persisted after flush. */
  private readonly writtenPending = new Set<number>();
  /** Regions marked but whose mark is not yet durable, with the commit that makes it so. */
  private readonly unconfirmed = new Map<number, Batch>();
  private next: Batch | null = null;
  private running: Promise<void> | null = null;
  private dCount = 0;
  private sCount = 0;
  private closed = false;

  private constructor(
    private readonly dev: BlockDevice,
    header: LogHeader,
    activeSlot: 0 | 1,
    image: Buffer,
  ) {
    this.header = header;
    this.activeSlot = activeSlot;
    this.image = image;
    const sectors = sectorCountFor(header.regionCount);
    this.sView = new Uint8Array(sectors * BITS_BYTES);
    this.sStamp = new Float64Array(sectors);
    for (let s = 0; s < sectors; s++) {
      const base = s * SECTOR;
      const stamp = Number(image.readBigUInt64LE(base));
      if (stamp === header.epoch) {
        this.sStamp[s] = stamp;
        this.sView.set(image.subarray(base + S_AT, base + S_AT + BITS_BYTES), s * BITS_BYTES);
      }
    }
    for (let r = 0; r < header.regionCount; r++) {
      if (this.isDirty(r)) this.dCount++;
      if (this.isWritten(r)) {
        if (!this.isDirty(r)) this.setD(r, true); // S without D cannot be: repair to the safe side
        this.sCount++;
      }
    }
  }

  /** Creates a new log on `dev` (which must hold at least logFileSize bytes) and opens it. */
  static async create(dev: BlockDevice, init: Omit<LogHeader, 'generation' | 'regionCount' | 'epoch'>, allPending: boolean | ((region: number) => boolean)): Promise<RegionLog> {
    await dev.open();
    const regionCount = Math.ceil(init.diskSize / init.regionSize);
    const header: LogHeader = { ...init, generation: 1, regionCount, epoch: 1 };
    const sectors = sectorCountFor(regionCount);
    const image = Buffer.alloc(sectors * SECTOR);
    for (let r = 0; r < regionCount; r++) {
      const pending = typeof allPending === 'function' ? allPending(r) : allPending;
      if (pending) setBit(image, Math.floor(r / REGIONS_PER_SECTOR) * SECTOR + D_AT, r % REGIONS_PER_SECTOR, true);
    }
    // Bitmap first, then the header that makes it meaningful; slot B is zeroed (invalid).
    await dev.write(BITMAP_OFFSET, image);
    await dev.write(SLOT_SIZE, Buffer.alloc(SECTOR));
    await dev.flush();
    await dev.write(0, encodeHeader(header));
    await dev.flush();
    return new RegionLog(dev, header, 0, image);
  }

  /** Opens an existing log: the newer valid header slot wins; no valid slot refuses (LOG_CORRUPT) and writes nothing. */
  static async open(dev: BlockDevice): Promise<OpenedLog> {
    await dev.open();
    if (dev.size < BITMAP_OFFSET + SECTOR) throw new SnapbackError('LOG_CORRUPT', `write log is too short (${dev.size} bytes)`);
    const a = decodeHeader(await dev.read(0, SECTOR));
    const b = decodeHeader(await dev.read(SLOT_SIZE, SECTOR));
    let slot: 0 | 1;
    let header: LogHeader;
    let other: string | null = null;
    if ('header' in a && 'header' in b) {
      slot = b.header.generation > a.header.generation ? 1 : 0;
      header = slot === 1 ? b.header : a.header;
    } else if ('header' in a) {
      slot = 0;
      header = a.header;
      other = `slot B: ${(b as { invalid: string }).invalid}`;
    } else if ('header' in b) {
      slot = 1;
      header = b.header;
      other = `slot A: ${(a as { invalid: string }).invalid}`;
    } else {
      throw new SnapbackError('LOG_CORRUPT', `write log has no valid header (slot A: ${(a as { invalid: string }).invalid}; slot B: ${(b as { invalid: string }).invalid}); refusing to serve`, {
        slotA: (a as { invalid: string }).invalid,
        slotB: (b as { invalid: string }).invalid,
      });
    }
    const expectCount = Math.ceil(header.diskSize / header.regionSize);
    if (header.regionCount !== expectCount) throw new SnapbackError('LOG_CORRUPT', `write log header is inconsistent: ${header.regionCount} regions for ${header.diskSize} bytes at ${header.regionSize}`);
    const need = logFileSize(header.regionCount);
    if (dev.size < need) throw new SnapbackError('LOG_CORRUPT', `write log is truncated: ${dev.size} bytes, needs ${need}`);
    const image = await dev.read(BITMAP_OFFSET, need - BITMAP_OFFSET);
    // a slot that was never written (all zeroes, as create() leaves slot B) is no problem
    if (other && (await dev.read(slot === 0 ? SLOT_SIZE : 0, SECTOR)).every((x) => x === 0)) other = null;
    if (other) log.warn({ problem: other }, 'one write-log header slot is not valid; using the other');
    return { log: new RegionLog(dev, header, slot, image), slotUsed: slot === 0 ? 'A' : 'B', otherSlotProblem: other };
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
      this.image.fill(0, base + S_AT, base + SECTOR);
      this.image.writeBigUInt64LE(BigInt(epoch), base);
    }
  }

  /**
   * Marks a clean or written region as written this session (D and S, both views) and returns
   * the commit to await before the host's data may be written. Returns null when the region
   * needs nothing made durable. Must not be used for a pending region.
   */
  markForWrite(r: number): Promise<void> | null {
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
    if (!this.isPending(r)) return;
    this.setD(r, false);
    this.dCount--;
  }

  /** Marks every region pending and not written (a log found to belong to another model). */
  async markAllPending(): Promise<void> {
    for (let r = 0; r < this.header.regionCount; r++) {
      if (!this.isDirty(r)) {
        this.setD(r, true);
        this.dCount++;
      }
    }
    await this.commit();
  }

  /** Makes the bitmap as it stands durable (used by lazily cleared D bits). */
  sync(): Promise<void> {
    return this.dirty.size > 0 || this.running ? this.commit() : Promise.resolve();
  }

  /**
   * Ends the session in one atomic header write. Frozen: the epoch moves on, so every S bit
   * lapses and every D region becomes pending. Thawed (`keepWrites`): only the session number
   * moves on; the host keeps its changes.
   */
  async endSession(keepWrites: boolean, now = Date.now()): Promise<void> {
    await this.sync(); // lazily cleared D bits and queued marks first
    const h = { ...this.header, sessionNumber: this.header.sessionNumber + 1, sessionStartedAt: now };
    if (!keepWrites) h.epoch = this.header.epoch + 1;
    await this.writeHeader(h);
    if (!keepWrites) {
      this.sCount = 0;
      this.writtenPending.clear();
      this.unconfirmed.clear();
    }
  }

  async setModes(mode: LogMode, restoreMode: LogRestoreMode): Promise<void> {
    if (mode === this.header.mode && restoreMode === this.header.restoreMode) return;
    await this.writeHeader({ ...this.header, mode, restoreMode });
  }

  /**
   * Adopts another model: every region becomes pending and unwritten (bitmap made durable
   * first, then one header write with the new model id and a new epoch).
   */
  async adoptModel(modelId: string): Promise<void> {
    await this.markAllPending();
    await this.writeHeader({ ...this.header, modelId, epoch: this.header.epoch + 1 });
    this.sCount = 0;
    this.writtenPending.clear();
    this.unconfirmed.clear();
  }

  private async writeHeader(next: LogHeader): Promise<void> {
    // Serialise with bitmap commits: the header must not overtake queued bits.
    while (this.running) await this.running.catch(() => undefined);
    const h = { ...next, generation: this.header.generation + 1 };
    const slot: 0 | 1 = this.activeSlot === 0 ? 1 : 0;
    this.checkOpen();
    await this.dev.write(slot * SLOT_SIZE, encodeHeader(h));
    await this.dev.flush();
    this.header = h;
    this.activeSlot = slot;
  }

  /** Group commit: resolves once every bit set before the call is durable. */
  commit(): Promise<void> {
    return this.batch().promise;
  }

  /** The batch the next commit will write (created, and its commit scheduled, if none). */
  private batch(): Batch {
    if (!this.next) {
      this.next = newBatch();
      if (!this.running) queueMicrotask(() => this.startCommit());
    }
    return this.next;
  }

  private startCommit(): void {
    if (this.running || !this.next) return;
    const batch = this.next;
    this.next = null;
    const sectors = [...this.dirty].sort((x, y) => x - y);
    this.dirty.clear();
    this.running = this.writeSectors(sectors)
      .then(
        () => {
          for (const r of batch.regions) if (this.unconfirmed.get(r) === batch) this.unconfirmed.delete(r);
          batch.resolve();
        },
        (err) => {
          for (const s of sectors) this.dirty.add(s); // retried by the next commit
          batch.failed = true;
          batch.reject(err);
        },
      )
      .finally(() => {
        this.running = null;
        if (this.next) this.startCommit();
      });
  }

  private async writeSectors(sectors: number[]): Promise<void> {
    this.checkOpen();
    let i = 0;
    while (i < sectors.length) {
      // one write per span; clean sectors in small gaps ride along (their bytes are current)
      let j = i;
      while (j + 1 < sectors.length && sectors[j + 1]! - sectors[j]! <= 8) j++;
      const first = sectors[i]!;
      const last = sectors[j]!;
      // copy: the image may change while the write is in flight
      const data = Buffer.from(this.image.subarray(first * SECTOR, (last + 1) * SECTOR));
      await this.dev.write(BITMAP_OFFSET + first * SECTOR, data);
      i = j + 1;
    }
    await this.dev.flush();
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

function getBit(buf: Uint8Array, base: number, bit: number): boolean {
  return ((buf[base + (bit >> 3)] ?? 0) & (1 << (bit & 7))) !== 0;
}
function setBit(buf: Uint8Array, base: number, bit: number, on: boolean): void {
  const i = base + (bit >> 3);
  const v = buf[i] ?? 0;
  buf[i] = on ? v | (1 << (bit & 7)) : v & ~(1 << (bit & 7));
}
