/**
 * Builds an in-memory storage stack (model, working disk, write log, protected disk, hydrator)
 * on fault-injecting devices, and a reference of what the host must read, for the crash and
 * read-view tests.
 */
import { FaultDevice, PowerDomain, memoryDevice } from './fault-device.js';
import { Prng } from './prng.js';
import { RegionLog, logFileSize } from '../../appliance/storage/region-log.js';
import { ProtectedDisk } from '../../appliance/storage/protected-disk.js';
import { Hydrator } from '../../appliance/storage/hydrator.js';
import { PersistentAreas, type AreasStore } from '../../appliance/storage/persistent-areas.js';

export const MODEL_ID = 'ab'.repeat(32);

export interface Stack {
  domain: PowerDomain;
  model: FaultDevice;
  disk: FaultDevice;
  logDev: FaultDevice;
  log: RegionLog;
  pd: ProtectedDisk;
  hydrator: Hydrator;
  modelBytes: Buffer;
  /** The persistent areas, kept in `areasFile`. */
  areas: PersistentAreas;
  areasFile: AreasFile;
}

/**
 * The persistent areas' file on the power domain: each write replaces it whole or, when the
 * power goes out at that write, not at all — never torn, as durable-write.ts's temporary file
 * and rename make the real one.
 */
export class AreasFile implements AreasStore {
  readonly name = 'persistent-areas.json (in memory)';
  constructor(
    private readonly domain: PowerDomain | null,
    public text: string | null = null,
  ) {}
  async read(): Promise<string | null> {
    return this.text;
  }
  async write(text: string): Promise<void> {
    if (this.domain) {
      await this.domain.jitter();
      this.domain.tick();
    }
    this.text = text;
  }
}

/** The areas of `file`, put in force on `log` and applied by `pd` at session ends (as the engine does). */
async function attachAreas(file: AreasFile, log: RegionLog, pd: ProtectedDisk): Promise<PersistentAreas> {
  const areas = await PersistentAreas.load(file, { regionSize: log.regionSize, diskSize: log.info.diskSize });
  await log.setPersistent(areas.activeMask());
  pd.persistentAreas = areas;
  return areas;
}

export interface StackShape {
  regionSize: number;
  size: number;
  /** 'match': the disk equals the model; 'garbage': random, all pending; 'zeros': sparse new disk. */
  initialDisk: 'match' | 'garbage' | 'zeros';
}

export function randomShape(rng: Prng): StackShape {
  const regionSize = rng.pick([4096, 8192, 16384]);
  const regions = rng.pick([4, 9, 16, 33]);
  const size = regionSize * regions - (rng.chance(0.3) ? 512 * rng.range(1, regionSize / 512 - 1) : 0);
  return { regionSize, size, initialDisk: rng.pick(['match', 'garbage', 'zeros'] as const) };
}

export async function buildStack(rng: Prng, shape: StackShape): Promise<Stack> {
  const domain = new PowerDomain(rng);
  const modelBytes = rng.bytes(shape.size);
  // some all-zero regions in the model, so 'zeros' disks have clean regions too
  for (let off = 0; off < shape.size; off += shape.regionSize) if (rng.chance(0.25)) modelBytes.fill(0, off, Math.min(shape.size, off + shape.regionSize));
  const diskBytes = shape.initialDisk === 'match' ? Buffer.from(modelBytes) : shape.initialDisk === 'garbage' ? rng.bytes(shape.size) : Buffer.alloc(shape.size);
  const model = new FaultDevice('model', modelBytes, domain);
  const disk = new FaultDevice('disk', diskBytes, domain);
  const regionCount = Math.ceil(shape.size / shape.regionSize);
  const logDev = new FaultDevice('log', Buffer.alloc(logFileSize(regionCount)), domain);
  const pendingOf = (r: number): boolean => {
    if (shape.initialDisk === 'match') return false;
    if (shape.initialDisk === 'garbage') return true;
    const a = r * shape.regionSize;
    const b = Math.min(shape.size, a + shape.regionSize);
    for (let i = a; i < b; i++) if (modelBytes[i] !== 0) return true;
    return false;
  };
  const log = await RegionLog.create(logDev, { modelId: MODEL_ID, regionSize: shape.regionSize, diskSize: shape.size, sessionNumber: 1, sessionStartedAt: 0, mode: 'frozen', restoreMode: 'instant' }, pendingOf);
  const pd = new ProtectedDisk({ disk, model, log, markAheadBytes: shape.regionSize * 4 });
  const hydrator = new Hydrator(pd, { batchBytes: shape.regionSize * 3, chunkBytes: shape.regionSize, parallel: 2, maxYieldMs: 0 });
  const areasFile = new AreasFile(domain);
  const areas = await attachAreas(areasFile, log, pd);
  return { domain, model, disk, logDev, log, pd, hydrator, modelBytes, areas, areasFile };
}

/** Reopens a stack from the images a power cut left (and the persistent areas' file, if any). */
export async function reopenStack(
  modelBytes: Buffer,
  diskImg: Buffer,
  logImg: Buffer,
  areasText: string | null = null,
): Promise<{ log: RegionLog; pd: ProtectedDisk; hydrator: Hydrator; disk: FaultDevice; areas: PersistentAreas }> {
  const rng = new Prng(7);
  const disk = memoryDevice('disk', diskImg, rng);
  const model = memoryDevice('model', modelBytes, rng);
  const { log } = await RegionLog.open(memoryDevice('log', logImg, rng));
  const pd = new ProtectedDisk({ disk, model, log });
  const areas = await attachAreas(new AreasFile(null, areasText), log, pd);
  const hydrator = new Hydrator(pd, { batchBytes: log.regionSize * 4, chunkBytes: log.regionSize, maxYieldMs: 0 });
  return { log, pd, hydrator, disk, areas };
}

interface RefWrite {
  offset: number;
  data: Buffer;
  acked: boolean;
  durable: boolean;
}

/**
 * What the host may read: the bytes at the last session start (`base`) and every write since,
 * in issue order, each acknowledged or not and durable (a flush that began after its
 * acknowledgement completed, or FUA) or not. After a power cut a byte may read as the newest
 * durable write covering it (or the base), or as any write issued after that one.
 */
export class HostReference {
  base: Buffer;
  writes: RefWrite[] = [];
  constructor(initial: Buffer) {
    this.base = Buffer.from(initial);
  }
  issue(offset: number, data: Buffer): RefWrite {
    const w = { offset, data, acked: false, durable: false };
    this.writes.push(w);
    return w;
  }
  /** Returns a function to call when the flush completes: it makes what was acknowledged before it durable. */
  flushIssued(): () => void {
    const covered = this.writes.filter((w) => w.acked);
    return () => {
      for (const w of covered) w.durable = true;
    };
  }
  /** What reads see now, without a crash: every acknowledged write applied. */
  current(): Buffer {
    const b = Buffer.from(this.base);
    for (const w of this.writes) if (w.acked) w.data.copy(b, w.offset);
    return b;
  }
  /** The bytes that must read exactly (for messages). */
  get stable(): Buffer {
    const b = Buffer.from(this.base);
    for (const w of this.writes) if (w.durable) w.data.copy(b, w.offset);
    return b;
  }
  reset(to: Buffer): void {
    this.base = Buffer.from(to);
    this.writes = [];
  }
  /** First byte that no allowed outcome explains (bytes where `skip` says so are not checked); -1 if none. */
  firstViolation(actual: Buffer, skip?: (i: number) => boolean): number {
    for (let i = 0; i < actual.length; i++) {
      if (skip?.(i)) continue;
      let ok = false;
      let anchored = false;
      for (let k = this.writes.length - 1; k >= 0; k--) {
        const w = this.writes[k]!;
        if (i < w.offset || i >= w.offset + w.data.length) continue;
        if (w.data[i - w.offset] === actual[i]) {
          ok = true;
          break;
        }
        if (w.durable) {
          anchored = true;
          break;
        }
      }
      if (!ok && !anchored && this.base[i] === actual[i]) ok = true;
      if (!ok) return i;
    }
    return -1;
  }
}
