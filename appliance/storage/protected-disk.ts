/**
 * Protected disk: the restore engine, and what the host sees (docs/architecture.md). It wraps the working
 * disk, the model and the region log, and implements every call itself:
 *   read  — per region: from the working disk if written this session (S) or clean (not D);
 *           from the model if pending (D and not S);
 *   write — set-before-write: a clean region's D and S are durable before its data is written
 *           (group-committed); a pending region is written whole (a partial write merges the
 *           model's bytes in) and its S bit is persisted only once that data is durable;
 *   trim / write-zeroes — exactly like writes of zeroes.
 * A sequential writer has clean regions ahead of it marked in the same commit, so a stream pays
 * one metadata commit per window rather than one per region (over-marking only costs restore
 * work later). Pending regions are never marked ahead.
 *
 * Host I/O passes a gate that `quiesce()` closes: ending a session waits for in-flight
 * requests, and requests that arrive meanwhile wait and then see the new session.
 */
import { EventEmitter } from 'node:events';
import { checkRange, readToNewBuffer, type BlockDevice, type DeviceCapabilities, directWriteWindow, type DirectWrite, type WriteOptions, type ZeroOptions } from './block-device.js';
import { headerWriteOutcome, type RegionLog } from './region-log.js';
import { RegionLocks } from './region-locks.js';
import { SnapbackError } from '../errors.js';

/** A device that can read into a caller's buffer (avoids one copy per request). */
export interface PositionalDevice extends BlockDevice {
  readInto(buf: Buffer, offset: number): Promise<void>;
}

export interface ProtectedDiskOptions {
  disk: PositionalDevice;
  model: PositionalDevice;
  log: RegionLog;
  /** Most bytes a sequential writer may have marked ahead of it. */
  markAheadBytes?: number;
}

const DEFAULT_MARK_AHEAD = 64 << 20;

/** A change of the persistent areas waiting for a session end (persistent-areas.ts). */
export interface SessionEndAreas {
  /** Applies the waiting change, if any, with host I/O stopped. */
  applyAtSessionEnd(pd: ProtectedDisk): Promise<unknown>;
}

/** Another model to put in force: its device, its id and the regions that differ (one bit a region). */
export interface ModelSwitch {
  model: PositionalDevice;
  modelId: string;
  differing: Uint8Array;
}

export class ProtectedDisk extends EventEmitter implements BlockDevice {
  readonly disk: PositionalDevice;
  /** The model in force (the one the log's header names); replaced only by a switch (endSession). */
  private _model: PositionalDevice;
  readonly log: RegionLog;
  readonly locks = new RegionLocks();
  private readonly rs: number;
  private readonly maxAhead: number;
  private inflight = 0;
  private gate: Promise<void> | null = null;
  private openGate: (() => void) | null = null;
  private drained: (() => void) | null = null;
  private seqNext = -1;
  /** Direct-write windows not yet closed (each counts as a write in flight). */
  private readonly windows = new Set<DirectWrite>();
  private aheadWindow = 0;
  private aheadEnd = 0;
  private closed = false;
  /** Persistent areas whose waiting change a session end applies (none: no areas here). */
  persistentAreas: SessionEndAreas | null = null;
  /** Counters for status and metrics. */
  readonly stats = { reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, bytesWrittenThisSession: 0, ioErrors: 0, merges: 0, flushes: 0 };

  constructor(options: ProtectedDiskOptions) {
    super();
    this.disk = options.disk;
    this._model = options.model;
    this.log = options.log;
    this.rs = options.log.regionSize;
    this.maxAhead = Math.max(1, Math.floor((options.markAheadBytes ?? DEFAULT_MARK_AHEAD) / this.rs));
    const size = options.log.info.diskSize;
    if (options.model.size !== size) throw new SnapbackError('SIZE_MISMATCH', `model is ${options.model.size} bytes, the write log is for ${size}`, { expected: size, actual: options.model.size });
    if (options.disk.size < size) throw new SnapbackError('SIZE_MISMATCH', `working disk is ${options.disk.size} bytes, smaller than the model's ${size}`, { expected: size, actual: options.disk.size });
  }

  get size(): number {
    return this.log.info.diskSize;
  }
  get model(): PositionalDevice {
    return this._model;
  }
  get regionSize(): number {
    return this.rs;
  }
  get capabilities(): DeviceCapabilities {
    return { canWrite: true, canFlush: true, canFua: true, canTrim: true, canZero: true, preferredBlockSize: 4096 };
  }
  /** Host requests in flight (the hydrator yields while this is above zero). */
  get hostInflight(): number {
    return this.inflight;
  }

  async open(): Promise<void> {
    // The parts are opened by whoever assembled them (see engine.ts).
  }

  // ---- the gate -------------------------------------------------------------------------

  private async enter(): Promise<void> {
    if (this.closed) throw new SnapbackError('CLOSED', 'the protected disk is closed');
    while (this.gate) await this.gate;
    this.inflight++;
  }
  private leave(): void {
    this.inflight--;
    if (this.inflight === 0 && this.drained) {
      const d = this.drained;
      this.drained = null;
      d();
    }
  }

  /** Stops host I/O: new requests wait, direct-write windows are asked back; resolves once none is in flight. */
  async quiesce(): Promise<void> {
    if (!this.gate) this.gate = new Promise<void>((res) => (this.openGate = res));
    for (const w of this.windows) w.onRevoke?.();
    if (this.inflight > 0) await new Promise<void>((res) => (this.drained = res));
  }

  /** Lets host I/O through again. */
  resume(): void {
    const open = this.openGate;
    this.gate = null;
    this.openGate = null;
    open?.();
  }

  get quiesced(): boolean {
    return this.gate !== null;
  }

  // ---- reads ----------------------------------------------------------------------------

  private fromModel(r: number): boolean {
    return this.log.isPending(r);
  }

  read(offset: number, length: number): Promise<Buffer> {
    return readToNewBuffer(this, offset, length);
  }

  readInto(buf: Buffer, offset: number): Promise<void> {
    const length = buf.length;
    try {
      checkRange(this.size, offset, length, 'read');
    } catch (err) {
      return Promise.reject(err);
    }
    if (length === 0) return Promise.resolve();
    if (this.gate !== null || this.closed) return this.readIntoGated(buf, offset);
    // The common case, the gate open: no async frames between the host's request and the disk.
    this.inflight++;
    let p: Promise<void>;
    try {
      p = this.readParts(buf, offset);
    } catch (err) {
      p = Promise.reject(err);
    }
    return p.then(this.leaveAfterRead, this.leaveAfterFailedRead);
  }

  /**
   * A read done before returning (BlockDevice.readNow): only when no region of the range is
   * pending (all of it is on the working disk) and the working disk can read now. False
   * otherwise; never while host I/O is stopped.
   */
  readNow(buf: Buffer, offset: number): boolean {
    if (this.disk.readNow === undefined || !this.readableNow(offset, buf.length)) return false;
    let done: boolean;
    try {
      done = this.disk.readNow(buf, offset);
    } catch (err) {
      this.stats.ioErrors++;
      throw err;
    }
    if (done) {
      this.stats.reads++;
      this.stats.bytesRead += buf.length;
    }
    return done;
  }

  /**
   * A read spliced into a pipe before returning (BlockDevice.readToPipe): on the same terms as
   * readNow (no region pending, the gate open), from the working disk. The pipe then holds page
   * references: a later write to the range, before the client has read the reply, may show in
   * it, as it may for any read racing a write (docs/native-io.md).
   */
  readToPipe(pipeFd: number, offset: number, length: number): boolean {
    if (this.disk.readToPipe === undefined || !this.readableNow(offset, length)) return false;
    let done: boolean;
    try {
      done = this.disk.readToPipe(pipeFd, offset, length);
    } catch (err) {
      this.stats.ioErrors++;
      throw err;
    }
    if (done) {
      this.stats.reads++;
      this.stats.bytesRead += length;
    }
    return done;
  }

  /**
   * Whether a read of the range may be done before returning, from the working disk (readNow,
   * readToPipe): host I/O not stopped, and no region of the range pending. OUT_OF_RANGE throws.
   */
  private readableNow(offset: number, length: number): boolean {
    if (this.gate !== null || this.closed || length === 0) return false;
    checkRange(this.size, offset, length, 'read');
    return this.noPending(offset, length);
  }

  private readonly leaveAfterRead = (): void => this.leave();
  private readonly leaveAfterFailedRead = (err: unknown): never => {
    this.stats.ioErrors++;
    this.leave();
    throw err;
  };

  /** A read that arrived while host I/O is stopped: it waits for the gate, then reads. */
  private async readIntoGated(buf: Buffer, offset: number): Promise<void> {
    await this.enter();
    try {
      await this.readParts(buf, offset);
    } catch (err) {
      this.stats.ioErrors++;
      throw err;
    } finally {
      this.leave();
    }
  }

  /** Reads each run of regions from where it lives now (the working disk, or the model if pending). */
  private readParts(buf: Buffer, offset: number): Promise<void> {
    const length = buf.length;
    this.stats.reads++;
    this.stats.bytesRead += length;
    if (this.log.pendingCount === 0) return this.disk.readInto(buf, offset);
    const r0 = Math.floor(offset / this.rs);
    const r1 = Math.floor((offset + length - 1) / this.rs);
    // Walk runs of regions that read from the same source.
    let runStart = r0;
    let runModel = this.fromModel(r0);
    const parts: Promise<void>[] = [];
    for (let r = r0 + 1; r <= r1 + 1; r++) {
      const m = r <= r1 ? this.fromModel(r) : !runModel;
      if (m !== runModel) {
        const from = Math.max(offset, runStart * this.rs);
        const to = Math.min(offset + length, r * this.rs);
        const view = buf.subarray(from - offset, to - offset);
        parts.push((runModel ? this.model : this.disk).readInto(view, from));
        runStart = r;
        runModel = m;
      }
    }
    return parts.length === 1 ? parts[0]! : Promise.all(parts).then(() => undefined);
  }

  // ---- writes ---------------------------------------------------------------------------

  write(offset: number, data: Buffer, options: WriteOptions = {}): Promise<void> {
    checkRange(this.size, offset, data.length, 'write');
    if (data.length === 0) return Promise.resolve();
    const fua = options.fua === true;
    if (!fua && this.gate === null && !this.closed && this.alreadyDurable(offset, data.length)) {
      // Fast path: every region is written this session and its mark is durable, so the data
      // may go straight to the working disk (the common case once a host is running).
      this.inflight++;
      this.countWrite(data.length);
      return this.disk.write(offset, data).then(
        () => this.leave(),
        (err: unknown) => {
          this.stats.ioErrors++;
          this.leave();
          throw err;
        },
      );
    }
    if (!fua && this.gate === null && !this.closed && this.noPending(offset, data.length)) {
      // No pending region in the way (first writes to clean regions): set-before-write with
      // no more promise hops than the mark's commit and the data write.
      this.inflight++;
      this.countWrite(data.length);
      const r1 = Math.floor((offset + data.length - 1) / this.rs);
      let marks: Promise<void> | null;
      try {
        marks = this.markRange(Math.floor(offset / this.rs), r1);
      } catch (err) {
        this.stats.ioErrors++;
        this.leave();
        return Promise.reject(err);
      }
      const written = marks ? marks.then(() => this.disk.write(offset, data)) : this.disk.write(offset, data);
      return written.then(
        () => this.leave(),
        (err: unknown) => {
          this.stats.ioErrors++;
          this.leave();
          throw err;
        },
      );
    }
    return this.guarded(() => this.writeRange(offset, data.length, data, fua));
  }

  /**
   * A plain write done before returning (BlockDevice.writeNow): only on the fast path of
   * write(), where every region is written this session with its mark durable, and only if the
   * working disk can write now. False, having changed nothing, otherwise.
   */
  writeNow(offset: number, data: Buffer): boolean {
    if (this.disk.writeNow === undefined || !this.writableNow(offset, data.length)) return false;
    let done: boolean;
    try {
      done = this.disk.writeNow(offset, data);
    } catch (err) {
      this.stats.ioErrors++;
      throw err;
    }
    if (done) this.countWrite(data.length);
    return done;
  }

  /**
   * A window for a plain write straight into the working disk (BlockDevice.directWrite): on the
   * terms of writeNow (every region written this session with its mark durable, host I/O not
   * stopped). With `reach`, it extends over the following regions on the same terms, up to
   * `reach` bytes from `offset`: those stay so until the session ends, and the window is asked
   * back (onRevoke) when host I/O stops. The window counts as a write in flight until closed:
   * ending a session waits for it.
   */
  directWrite(offset: number, length: number, reach = length): DirectWrite | null {
    if (this.disk.directWrite === undefined || !this.writableNow(offset, length)) return null;
    const end = this.durableEnd(offset + length, Math.min(this.size, offset + Math.max(length, reach)));
    const inner = this.disk.directWrite(offset, length, end - offset);
    if (inner === null) return null;
    this.inflight++;
    const w = directWriteWindow({
      fd: inner.fd,
      position: inner.position,
      offset,
      length,
      end: Math.min(end, inner.end),
      wrote: (at, n, outcome) => {
        const err = inner.wrote(at, n, outcome);
        if (err) this.stats.ioErrors++;
        else {
          this.countWrite(n);
          this.seqNext = Math.floor((at + n - 1) / this.rs) + 1; // the sequential-stream detector
        }
        return err;
      },
      closed: () => {
        inner.close();
        this.windows.delete(w);
        this.leave();
      },
    });
    inner.onRevoke = () => w.onRevoke?.();
    this.windows.add(w);
    return w;
  }

  /**
   * How far from `from` (a region boundary or the end of a write) up to `limit` every region is
   * written this session with its mark durable: the end of the last such region, capped at
   * `limit`; `from` when the next one is not.
   */
  private durableEnd(from: number, limit: number): number {
    let end = from;
    while (end < limit) {
      const r = Math.floor(end / this.rs);
      if (!this.durable(r)) break;
      end = Math.min(limit, (r + 1) * this.rs);
    }
    return end;
  }

  /**
   * Whether a plain write of the range may go straight to the working disk (writeNow,
   * directWrite): host I/O not stopped, and every region of it written this session with its
   * mark durable. OUT_OF_RANGE throws.
   */
  private writableNow(offset: number, length: number): boolean {
    if (this.gate !== null || this.closed || length === 0) return false;
    checkRange(this.size, offset, length, 'write');
    return this.alreadyDurable(offset, length);
  }

  /** True when no region of the range is pending (each is clean or written this session). */
  private noPending(offset: number, length: number): boolean {
    if (this.log.pendingCount === 0) return true;
    const r1 = Math.floor((offset + length - 1) / this.rs);
    for (let r = Math.floor(offset / this.rs); r <= r1; r++) if (this.log.isPending(r)) return false;
    return true;
  }

  /** Region r is written this session and its mark is durable (markForWrite has nothing to wait for). */
  private durable(r: number): boolean {
    return this.log.isWritten(r) && this.log.markForWrite(r) === null;
  }

  /** True when every region of the range is written this session with its mark durable. */
  private alreadyDurable(offset: number, length: number): boolean {
    const r1 = Math.floor((offset + length - 1) / this.rs);
    for (let r = Math.floor(offset / this.rs); r <= r1; r++) {
      if (!this.durable(r)) return false;
    }
    this.seqNext = r1 + 1; // keep the sequential-stream detector in step
    return true;
  }

  async writeZeroes(offset: number, length: number, options: ZeroOptions = {}): Promise<void> {
    checkRange(this.size, offset, length, 'write-zeroes');
    if (length === 0) return;
    await this.guarded(() => this.writeRange(offset, length, null, options.fua === true));
  }

  /** Trim is write-zeroes here: a trimmed region must not read back the old session's bytes. */
  async trim(offset: number, length: number, options: WriteOptions = {}): Promise<void> {
    await this.writeZeroes(offset, length, options);
  }

  private async guarded(fn: () => Promise<void>): Promise<void> {
    await this.enter();
    try {
      await fn();
    } catch (err) {
      this.stats.ioErrors++;
      throw err;
    } finally {
      this.leave();
    }
  }

  private countWrite(length: number): void {
    this.stats.writes++;
    this.stats.bytesWritten += length;
    this.stats.bytesWrittenThisSession += length;
  }

  private async writeRange(offset: number, length: number, data: Buffer | null, fua: boolean): Promise<void> {
    this.countWrite(length);
    const r0 = Math.floor(offset / this.rs);
    const r1 = Math.floor((offset + length - 1) / this.rs);
    let anyPending = false;
    for (let r = r0; r <= r1; r++) {
      if (this.log.isPending(r)) {
        anyPending = true;
        break;
      }
    }
    if (!anyPending) {
      const marks = this.markRange(r0, r1);
      if (marks) await marks;
      await this.put(offset, length, data, fua);
      // FUA into a region merged earlier this session: its S bit must now be made durable too
      if (fua) await this.log.promoteWrittenPending(this.rangeList(r0, r1));
      return;
    }
    // Pending regions in the way: lock them, then look again (the hydrator may have restored
    // some, or a concurrent write merged them).
    const pendingList: number[] = [];
    for (let r = r0; r <= r1; r++) if (this.log.isPending(r)) pendingList.push(r);
    const release = await this.locks.acquire(pendingList);
    try {
      const pendingNow: number[] = [];
      for (let r = r0; r <= r1; r++) if (this.log.isPending(r)) pendingNow.push(r);
      const waits: Promise<void>[] = [];
      for (let r = r0; r <= r1; r++) {
        if (!this.log.isPending(r)) {
          const m = this.log.markForWrite(r);
          if (m) waits.push(m);
        }
      }
      const end = offset + length;
      const headStart = r0 * this.rs;
      const tailEnd = Math.min(this.size, (r1 + 1) * this.rs);
      const mergeHead = offset > headStart && this.log.isPending(r0);
      const mergeTail = end < tailEnd && this.log.isPending(r1);
      if (waits.length) await Promise.all(waits);
      if (!mergeHead && !mergeTail) {
        await this.put(offset, length, data, false);
      } else {
        this.stats.merges++;
        const from = mergeHead ? headStart : offset;
        const to = mergeTail ? tailEnd : end;
        if (to - from <= 4 * this.rs || data !== null) {
          // one buffer: model bytes around the host's bytes
          const whole = Buffer.allocUnsafe(to - from);
          if (mergeHead) await this.model.readInto(whole.subarray(0, offset - from), from);
          if (mergeTail) await this.model.readInto(whole.subarray(end - from), end);
          if (data) data.copy(whole, offset - from);
          else whole.fill(0, offset - from, end - from);
          await this.disk.write(from, whole);
        } else {
          // a long zeroing: merge the edge regions, zero the middle without a big buffer
          let midStart = offset;
          let midEnd = end;
          if (mergeHead) {
            midStart = (r0 + 1) * this.rs;
            const head = Buffer.alloc(midStart - from);
            await this.model.readInto(head.subarray(0, offset - from), from);
            await this.disk.write(from, head);
          }
          if (mergeTail) {
            midEnd = r1 * this.rs;
            const tail = Buffer.alloc(to - midEnd);
            await this.model.readInto(tail.subarray(end - midEnd), end);
            await this.disk.write(midEnd, tail);
          }
          await this.disk.writeZeroes(midStart, midEnd - midStart);
        }
      }
      for (const r of pendingNow) this.log.noteWrittenPending(r);
      if (fua) {
        await this.disk.flush();
        await this.log.promoteWrittenPending(this.rangeList(r0, r1));
      }
      this.emitChanges(pendingNow, 1);
    } finally {
      release();
    }
  }

  private rangeList(r0: number, r1: number): number[] {
    const list: number[] = [];
    for (let r = r0; r <= r1; r++) list.push(r);
    return list;
  }

  /** Marks clean regions r0..r1 (and, for a sequential writer, clean regions ahead). */
  private markRange(r0: number, r1: number): Promise<void> | null {
    let wait: Promise<void> | null = null;
    const changed: number[] = [];
    for (let r = r0; r <= r1; r++) {
      const wasWritten = this.log.isWritten(r);
      const m = this.log.markForWrite(r);
      if (!wasWritten && !this.log.isPersistent(r)) changed.push(r);
      if (m && m !== wait) wait = wait ? Promise.all([wait, m]).then(() => undefined) : m;
    }
    // sequential stream detection: mark ahead in the same commit
    const sequential = r0 === this.seqNext || r0 === this.seqNext - 1;
    this.seqNext = r1 + 1;
    if (sequential && changed.length > 0) {
      this.aheadWindow = Math.min(this.maxAhead, Math.max(16, this.aheadWindow * 2));
      if (this.aheadEnd < r1 + 1 + this.aheadWindow / 2) {
        const target = Math.min(this.log.regionCount, r1 + 1 + this.aheadWindow);
        for (let r = Math.max(this.aheadEnd, r1 + 1); r < target; r++) {
          if (!this.log.isDirty(r) && !this.log.isPersistent(r)) {
            this.log.markForWrite(r);
            changed.push(r);
          }
        }
        this.aheadEnd = target;
      }
    } else if (!sequential) {
      this.aheadWindow = 0;
    }
    if (changed.length) this.emitChanges(changed, 1);
    return wait;
  }

  private async put(offset: number, length: number, data: Buffer | null, fua: boolean): Promise<void> {
    if (data) await this.disk.write(offset, data, { fua });
    else await this.disk.writeZeroes(offset, length, { fua });
  }

  /** Makes every write that completed before this call durable, data and log alike. */
  async flush(): Promise<void> {
    await this.enter();
    try {
      this.stats.flushes++;
      const promote = this.log.writtenPendingRegions;
      await this.disk.flush();
      await this.log.promoteWrittenPending(promote);
      await this.log.sync();
    } catch (err) {
      this.stats.ioErrors++;
      throw err;
    } finally {
      this.leave();
    }
  }

  /**
   * Ends the session: host I/O stops, the log's epoch moves on in one header write (thawed:
   * only the session number), host I/O resumes unless `keepQuiesced`.
   * With `switchTo` the session ends on another model (RegionLog.switchModel): the session's
   * writes lapse whatever the mode, the regions it names become pending, and reads and the
   * restore use the new model from the moment the header names it. Whoever calls this keeps the
   * background restore paused meanwhile (model-switch.ts).
   */
  async endSession(options: { keepWrites: boolean; keepQuiesced?: boolean; switchTo?: ModelSwitch }): Promise<void> {
    await this.quiesce();
    try {
      await this.persistentAreas?.applyAtSessionEnd(this);
      const to = options.switchTo;
      if (to) await this.switchModel(to, true);
      else await this.log.endSession(options.keepWrites);
      this.seqNext = -1;
      this.aheadWindow = 0;
      this.aheadEnd = 0;
      this.stats.bytesWrittenThisSession = 0;
      this.emit('session-ended');
    } finally {
      if (!options.keepQuiesced) this.resume();
    }
  }

  /**
   * Puts another model in force while host I/O is stopped (the caller quiesced it). When the
   * header write failed but is in force ('applied'), the new model is in force here too.
   */
  async switchModel(to: ModelSwitch, newSession: boolean): Promise<void> {
    if (!this.quiesced || this.inflight > 0) throw new SnapbackError('BUSY', 'a model switch needs host I/O stopped');
    if (to.model.size !== this.size) throw new SnapbackError('SIZE_MISMATCH', `the new model holds ${to.model.size} bytes, the disk ${this.size}`, { expected: this.size, actual: to.model.size });
    try {
      await this.log.switchModel(to.modelId, to.differing, { newSession });
    } catch (err) {
      if (headerWriteOutcome(err) === 'applied') this._model = to.model;
      throw err;
    }
    this._model = to.model;
  }

  /**
   * Copies the model's bytes into these pending regions of the working disk (each under its
   * region lock, as the background restore does), durably; the regions stay pending until the
   * caller clears them. Regions no longer pending are skipped.
   */
  async restoreRegions(regions: readonly number[]): Promise<void> {
    if (regions.length === 0) return;
    const buf = Buffer.allocUnsafe(this.rs);
    for (const r of regions) {
      const release = await this.locks.acquire([r]);
      try {
        if (!this.log.isPending(r)) continue;
        const off = r * this.rs;
        const view = buf.subarray(0, Math.min(this.rs, this.size - off));
        await this.model.readInto(view, off);
        await this.disk.write(off, view);
      } finally {
        release();
      }
    }
    await this.disk.flush();
  }

  emitChanges(regions: number[], state: 0 | 1 | 2): void {
    if (regions.length && this.listenerCount('regions') > 0) {
      this.emit(
        'regions',
        regions.map((region) => ({ region, state })),
      );
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.quiesce();
    this.closed = true;
    this.resume();
  }
}
