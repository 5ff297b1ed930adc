/**
 * The model library of a state directory: many models, one of them active (the one the write
 * log's header names; see activeModelId). Layout:
 *
 *   STATE/models/ID/record.json     what the model is (model-record.ts)
 *   STATE/models/ID/manifest.json   its manifest
 *   STATE/models/ID/image           its image (unless the record names a file registered in place)
 *   STATE/models/library.json       the rollback target: the model the active one replaced
 *   STATE/models/.staging/…         imports in progress; never listed
 *
 * A model becomes visible in one step: everything is written, fsync'd and checked in a staging
 * directory, which is then renamed to models/ID and the directory fsync'd. An import that fails
 * or is aborted (or a power cut) leaves nothing but a staging directory, removed at the next
 * open. A lazily provisioned model (regions that arrive later) is committed at once with
 * `complete: false` and marked complete when its last region is verified.
 *
 * Models are referred to by name, by id, or by a unique prefix of the id (at least 4 digits).
 * Names are unique. The mutating calls of one process run one at a time.
 */
import { copyFile, constants as fsConstants, mkdir, open, readdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { ModelPartition, ModelSource } from '../api/models.js';
import { SnapbackError, fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';
import { syncDir, writeFileDurably } from './durable-write.js';
import { FileDevice } from './file-device.js';
import type { HashName } from './hash-functions.js';
import type { HashPool } from './hash-pool.js';
import { createManifest, DEFAULT_MANIFEST_HASH, DEFAULT_MANIFEST_REGION_SIZE, Manifest, manifestPathFor } from './manifest.js';
import { MODEL_RECORD_FORMAT, readRecord, writeRecord, type LibraryRecord } from './model-record.js';
import { writeAndHash } from './model-ingest.js';
import { readLogModelId } from './log-header.js';
import { readPendingSwitch } from './pending-switch.js';
import type { StateDir } from './state-dir.js';

const log = childLogger('model-library');

export const MODELS_DIR = 'models';
const STAGING_DIR = '.staging';
const LIBRARY_FILE = 'library.json';
const RECORD_FILE = 'record.json';
const MANIFEST_FILE = 'manifest.json';
const IMAGE_FILE = 'image';
/** Kept free besides what an import needs (the manifest, the record, the filesystem's own). */
const SPACE_RESERVE = 16 << 20;
const MIN_ID_PREFIX = 4;
export const MAX_MODEL_NAME = 100;

/** A model in the library, with where its files are. */
export interface StoredModel {
  readonly record: LibraryRecord;
  readonly dir: string;
  readonly imagePath: string;
  readonly manifestPath: string;
}

export interface ImportOptions {
  name: string;
  /** Bytes copied and hashed so far, of the total. */
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  signal?: AbortSignal;
  /** The hash worker threads (default: the process's shared pool). */
  hashPool?: HashPool;
}

export interface StreamImportOptions extends ImportOptions {
  /** The stream's length in bytes: more or fewer bytes fail the import. */
  size: number;
  source: ModelSource;
  /** The manifest the bytes must match (size and every region's hash); none: a new one is made. */
  manifest?: Manifest;
  /** For a new manifest (default 1 MiB, DEFAULT_MANIFEST_HASH). */
  regionSize?: number;
  hash?: HashName;
}

/** What a new model's record says besides what its manifest says. */
export interface CommitInfo {
  source: ModelSource;
  parent?: string | null;
  /** Default true; false for a lazily provisioned model whose regions arrive later. */
  complete?: boolean;
  /** A partition model: the partition it protects (partition-model.ts). */
  partition?: ModelPartition;
  /**
   * The manifest was made here from the whole image (none came with it): a model the library
   * holds already is found only now, and the error says so.
   */
  hashedHere?: boolean;
}

/**
 * A model being written: its image goes to `imagePath` (in the staging directory); commit()
 * makes it a model of the library, abort() removes everything. For writers the library does
 * not do itself (a capture of the host's disk).
 */
export interface ModelStaging {
  readonly dir: string;
  readonly imagePath: string;
  readonly name: string;
  /** Free bytes needed in the library for `bytes` more: NO_SPACE now rather than half-way. */
  ensureSpace(bytes: number): Promise<void>;
  /** The image must be complete and fsync'd (or, with complete: false, sized). */
  commit(manifest: Manifest, info: CommitInfo): Promise<StoredModel>;
  abort(): Promise<void>;
}

const libraryFileSchema = z.object({ previous: z.string().nullable() });

export class ModelLibrary {
  readonly dir: string;
  private readonly stagingRoot: string;
  /** Names of imports in progress in this process (unique against the library and each other). */
  private readonly reserved = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  private cleaned = false;

  constructor(readonly state: StateDir) {
    this.dir = join(state.path, MODELS_DIR);
    this.stagingRoot = join(this.dir, STAGING_DIR);
  }

  // ---- reading -------------------------------------------------------------------------------

  /** Every model, complete or arriving, oldest first. */
  async list(): Promise<StoredModel[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fromSystemError(err, `reading the model library ${this.dir}`);
    }
    const out: StoredModel[] = [];
    for (const n of names) {
      if (!/^[0-9a-f]{64}$/.test(n)) continue;
      const dir = join(this.dir, n);
      try {
        await stat(join(dir, RECORD_FILE));
      } catch {
        continue; // a model directory being removed
      }
      out.push(this.stored(dir, await readRecord(join(dir, RECORD_FILE))));
    }
    return out.sort((a, b) => a.record.createdAt.localeCompare(b.record.createdAt) || a.record.name.localeCompare(b.record.name));
  }

  /** The model with this id, or null. */
  async find(id: string): Promise<StoredModel | null> {
    if (!/^[0-9a-f]{64}$/.test(id)) return null;
    const dir = join(this.dir, id);
    try {
      await stat(join(dir, RECORD_FILE));
    } catch {
      return null;
    }
    return this.stored(dir, await readRecord(join(dir, RECORD_FILE)));
  }

  /** The model a user means by `ref`: its name, its id, or a unique prefix of its id. */
  async resolve(ref: string): Promise<StoredModel> {
    const all = await this.list();
    const byName = all.find((m) => m.record.name === ref);
    if (byName) return byName;
    const lower = ref.toLowerCase();
    if (/^[0-9a-f]+$/.test(lower) && lower.length >= MIN_ID_PREFIX) {
      const hits = all.filter((m) => m.record.id.startsWith(lower));
      if (hits.length === 1) return hits[0]!;
      if (hits.length > 1) throw new SnapbackError('BAD_ARGUMENT', `"${ref}" is the start of ${hits.length} model ids (${hits.map((m) => m.record.name).join(', ')}); give more digits or the name`);
    }
    throw new SnapbackError('NOT_FOUND', `no model named "${ref}" or with that id in the library${all.length ? ` (models: ${all.map((m) => m.record.name).join(', ')})` : ' (the library is empty)'}`);
  }

  /** The active model's id: the one the write log's header names; null before the log exists. */
  async activeModelId(): Promise<string | null> {
    return readLogModelId(this.state.logPath);
  }

  /** The model the active one replaced (one activate rolls back to it), or null. */
  async previous(): Promise<string | null> {
    try {
      return libraryFileSchema.parse(JSON.parse(await readFile(join(this.dir, LIBRARY_FILE), 'utf8'))).previous;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new SnapbackError('STATE_CORRUPT', `${join(this.dir, LIBRARY_FILE)} is not valid: ${(err as Error).message}`);
    }
  }

  /** Records the rollback target (set by an activation to the model it replaced). */
  setPrevious(id: string | null): Promise<void> {
    return this.serial(async () => {
      await mkdir(this.dir, { recursive: true });
      await writeFileDurably(join(this.dir, LIBRARY_FILE), JSON.stringify({ previous: id }, null, 2) + '\n');
    });
  }

  // ---- changing ------------------------------------------------------------------------------

  /** Renames a model; the new name must be free. */
  rename(ref: string, newName: string): Promise<StoredModel> {
    const name = checkName(newName);
    return this.serial(async () => {
      const m = await this.resolve(ref);
      if (m.record.name === name) return m;
      await this.checkNameFree(name);
      const record = { ...m.record, name };
      await writeRecord(join(m.dir, RECORD_FILE), record);
      log.info({ id: m.record.id, from: m.record.name, to: name }, 'model renamed');
      return this.stored(m.dir, record);
    });
  }

  /**
   * Removes a model. The active model is refused (IN_USE), and so is the target of a pending
   * activation (STATE/model-switch.json, or one the caller names in `pending`), and the rollback
   * target (the model the active one replaced) unless `force`. A model registered in place loses
   * its record only: its image file, outside the library, is left where it is.
   */
  remove(ref: string, options: { force?: boolean; active?: string | null; pending?: string | null } = {}): Promise<StoredModel> {
    return this.serial(async () => {
      const m = await this.resolve(ref);
      const id = m.record.id;
      const active = options.active ?? (await this.activeModelId());
      if (id === active) {
        throw new SnapbackError('IN_USE', `model "${m.record.name}" is the active model; activate another one before removing it`);
      }
      if (id === options.pending || id === (await readPendingSwitch(this.state))?.modelId) {
        throw new SnapbackError(
          'IN_USE',
          `model "${m.record.name}" is the pending activation target (it becomes the active model at the next session end); cancel that with "snapback model activate --cancel" before removing it`,
        );
      }
      if (!options.force && id === (await this.previous())) {
        throw new SnapbackError('IN_USE', `model "${m.record.name}" is the previous version (the rollback target of the active model); remove it with --force to give up the rollback`);
      }
      const trash = join(this.stagingRoot, `removed-${process.pid}-${id}`);
      await mkdir(this.stagingRoot, { recursive: true });
      try {
        await rename(m.dir, trash);
        await syncDir(this.dir);
      } catch (err) {
        throw fromSystemError(err, `removing model ${m.record.name}`);
      }
      if (id === (await this.previous())) await writeFileDurably(join(this.dir, LIBRARY_FILE), JSON.stringify({ previous: null }, null, 2) + '\n');
      await rm(trash, { recursive: true, force: true });
      log.info({ id, name: m.record.name }, 'model removed');
      return m;
    });
  }

  /** Starts writing a new model named `name` (see ModelStaging). */
  async stage(name: string): Promise<ModelStaging> {
    const n = checkName(name);
    await this.cleanStaging();
    if (this.reserved.has(n)) throw nameTaken(n, 'an import in progress');
    await this.checkNameFree(n);
    this.reserved.add(n);
    let dir: string;
    try {
      await mkdir(this.stagingRoot, { recursive: true });
      dir = join(this.stagingRoot, `${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`);
      await mkdir(dir);
    } catch (err) {
      this.reserved.delete(n);
      throw fromSystemError(err, `preparing an import into ${this.dir}`);
    }
    let done = false;
    const finish = async (removeDir: boolean) => {
      if (done) return;
      done = true;
      this.reserved.delete(n);
      if (removeDir) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    };
    return {
      dir,
      imagePath: join(dir, IMAGE_FILE),
      name: n,
      ensureSpace: (bytes) => this.ensureSpace(bytes),
      commit: async (manifest, info) => {
        if (done) throw new SnapbackError('CLOSED', 'this import is already finished');
        try {
          const m = await this.commitStaged(dir, n, manifest, info, null);
          await finish(false);
          return m;
        } catch (err) {
          await finish(true);
          throw err;
        }
      },
      abort: () => finish(true),
    };
  }

  /**
   * Imports the image at `path` (a file or block device): copied into the library (a reflink
   * when the filesystem can), and hashed into a manifest, or checked against the manifest
   * beside it (PATH.manifest.json: its size, then every region's hash).
   */
  async importFile(path: string, options: ImportOptions): Promise<StoredModel> {
    const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOENT' ? new SnapbackError('NOT_FOUND', `model image ${path} does not exist`) : fromSystemError(err, `reading ${path}`);
    });
    if (!st.isFile() && !st.isBlockDevice()) throw new SnapbackError('BAD_ARGUMENT', `${path} is not a file or a block device`);
    const size = st.isFile() ? st.size : await deviceSize(path);
    const beside = manifestPathFor(path);
    const manifest = (await exists(beside)) ? await Manifest.load(beside) : null;
    if (manifest && manifest.size !== size) {
      throw new SnapbackError('MANIFEST_INVALID', `the manifest ${beside} is for ${manifest.size} bytes but ${path} holds ${size}`, { expected: manifest.size, actual: size });
    }
    if (manifest) await this.assertNotHeld(manifest.id);
    const staging = await this.stage(options.name);
    try {
      const source: ModelSource = { kind: 'file', path };
      if (st.isFile() && (await reflink(path, staging.imagePath))) {
        log.info({ path }, 'model image copied as a reflink');
        const made = await createManifest(staging.imagePath, { regionSize: manifest?.regionSize ?? DEFAULT_MANIFEST_REGION_SIZE, hash: manifest?.hash ?? DEFAULT_MANIFEST_HASH, name: staging.name, onProgress: options.onProgress, hashPool: options.hashPool });
        if (manifest) assertSameDigests(manifest, made.allDigests, path);
        return await staging.commit(manifest ?? made, { source, hashedHere: !manifest });
      }
      await staging.ensureSpace(st.isFile() ? Math.min(size, st.blocks * 512) : size);
      const stream = createReadStream(path, { highWaterMark: 1 << 20 });
      return await this.fillAndCommit(staging, stream, { ...options, size, source, ...(manifest ? { manifest } : {}) });
    } catch (err) {
      await staging.abort();
      throw err;
    }
  }

  /**
   * Imports `size` bytes from a stream (an upload, a download): written to the library and
   * hashed on the way, region by region, never held whole in memory.
   */
  async importStream(stream: Readable, options: StreamImportOptions): Promise<StoredModel> {
    if (options.manifest && options.manifest.size !== options.size) {
      throw new SnapbackError('MANIFEST_INVALID', `the manifest is for ${options.manifest.size} bytes but the image has ${options.size}`, { expected: options.manifest.size, actual: options.size });
    }
    if (options.manifest) await this.assertNotHeld(options.manifest.id);
    const staging = await this.stage(options.name);
    try {
      await staging.ensureSpace(options.size);
      return await this.fillAndCommit(staging, stream, options);
    } catch (err) {
      stream.destroy();
      await staging.abort();
      throw err;
    }
  }

  /**
   * Registers an image where it lies, without copying it (the model of a state directory made
   * before the library, `snapback init --model`): the library keeps the record and the
   * manifest; the image stays the caller's. The same model registered again is returned as is.
   */
  registerInPlace(imagePath: string, manifest: Manifest, info: { name: string; source: ModelSource }): Promise<StoredModel> {
    return this.serial(async () => {
      const existing = await this.find(manifest.id);
      if (existing) return existing;
      const name = await this.freeNameLike(checkName(info.name));
      await this.cleanStaging();
      await mkdir(this.stagingRoot, { recursive: true });
      const dir = join(this.stagingRoot, `${process.pid}-inplace-${manifest.id.slice(0, 16)}`);
      await rm(dir, { recursive: true, force: true });
      await mkdir(dir);
      try {
        return await this.commitStagedLocked(dir, name, manifest, { source: info.source }, imagePath);
      } catch (err) {
        await rm(dir, { recursive: true, force: true }).catch(() => undefined);
        throw err;
      }
    });
  }

  /**
   * Registers a model whose regions arrive later (lazy provisioning): its image is made sparse
   * at the manifest's size and it is listed at once with complete: false. The caller writes
   * verified regions into `imagePath` and calls markComplete() when every one is there.
   */
  async createIncomplete(manifest: Manifest, info: { name: string; source: ModelSource }): Promise<StoredModel> {
    await this.assertNotHeld(manifest.id);
    const staging = await this.stage(info.name);
    try {
      const fh = await open(staging.imagePath, 'wx', 0o644);
      try {
        await fh.truncate(manifest.size);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return await staging.commit(manifest, { source: info.source, complete: false });
    } catch (err) {
      await staging.abort();
      throw fromSystemError(err, `registering model ${info.name}`);
    }
  }

  /** Marks a lazily provisioned model complete (every region local and verified). */
  markComplete(id: string): Promise<StoredModel> {
    return this.serial(async () => {
      const m = await this.find(id);
      if (!m) throw new SnapbackError('NOT_FOUND', `no model with id ${id} in the library`);
      if (m.record.complete) return m;
      const fh = await open(m.imagePath, 'r');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      const record = { ...m.record, complete: true };
      await writeRecord(join(m.dir, RECORD_FILE), record);
      return this.stored(m.dir, record);
    });
  }

  // ---- internals -----------------------------------------------------------------------------

  private async fillAndCommit(staging: ModelStaging, stream: Readable, o: StreamImportOptions): Promise<StoredModel> {
    const regionSize = o.manifest?.regionSize ?? o.regionSize ?? DEFAULT_MANIFEST_REGION_SIZE;
    const hash = o.manifest?.hash ?? o.hash ?? DEFAULT_MANIFEST_HASH;
    const digests = await writeAndHash(stream, { dest: staging.imagePath, size: o.size, regionSize, hash, hashPool: o.hashPool, onProgress: o.onProgress, signal: o.signal });
    let manifest = o.manifest;
    if (manifest) assertSameDigests(manifest, digests, sourceText(o.source));
    else manifest = Manifest.fromDigests({ name: staging.name, size: o.size, regionSize, hash, createdAt: new Date().toISOString(), image: { size: o.size, mtimeMs: 0, ino: 0 } }, digests);
    return staging.commit(manifest, { source: o.source, hashedHere: !o.manifest });
  }

  private commitStaged(dir: string, name: string, manifest: Manifest, info: CommitInfo, inPlace: string | null): Promise<StoredModel> {
    return this.serial(() => this.commitStagedLocked(dir, name, manifest, info, inPlace));
  }

  /**
   * Refuses (ALREADY_EXISTS, naming it) a model the library holds already: at once when a
   * manifest names the image before any byte is copied; `hashedHere` when it was known only
   * once the whole image was hashed.
   */
  async assertNotHeld(id: string, hashedHere = false): Promise<void> {
    const existing = await this.find(id);
    if (existing) {
      const when = hashedHere ? ' (found once the whole image was hashed: no manifest came with it to tell before)' : '';
      throw new SnapbackError('ALREADY_EXISTS', `this image is already in the library as "${existing.record.name}" (id ${id.slice(0, 12)}…)${when}`, { id, name: existing.record.name });
    }
  }

  /** Writes the manifest and record into the staging directory and renames it into place. */
  private async commitStagedLocked(dir: string, name: string, manifest: Manifest, info: CommitInfo, inPlace: string | null): Promise<StoredModel> {
    await this.assertNotHeld(manifest.id, info.hashedHere ?? false);
    await this.checkNameFree(name);
    const imagePath = inPlace ?? join(dir, IMAGE_FILE);
    // the manifest describes the file as it lies in the library, so that opening it trusts it
    const st = await stat(imagePath);
    const kept = inPlace ? manifest : new Manifest({ ...manifest.json, name, image: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } }, manifest.allDigests);
    if (!inPlace) await syncFile(imagePath);
    await kept.save(join(dir, MANIFEST_FILE));
    const record: LibraryRecord = {
      format: MODEL_RECORD_FORMAT,
      id: manifest.id,
      name,
      size: manifest.size,
      regionSize: manifest.regionSize,
      hash: manifest.hash,
      createdAt: new Date().toISOString(),
      source: info.source,
      parent: info.parent ?? null,
      complete: info.complete ?? true,
      image: inPlace,
      ...(info.partition ? { partition: info.partition } : {}),
    };
    await writeRecord(join(dir, RECORD_FILE), record);
    await syncDir(dir);
    const final = join(this.dir, manifest.id);
    try {
      await rename(dir, final);
      await syncDir(this.dir);
    } catch (err) {
      throw fromSystemError(err, `adding model ${name} to the library`);
    }
    log.info({ id: manifest.id, name, source: info.source, complete: record.complete }, 'model added to the library');
    return this.stored(final, record);
  }

  private async ensureSpace(bytes: number): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const fs = await statfs(this.dir);
    const free = fs.bavail * fs.bsize;
    if (free < bytes + SPACE_RESERVE) {
      throw new SnapbackError('NO_SPACE', `not enough free space for the model in ${this.dir}: it needs ${bytes + SPACE_RESERVE} bytes, ${free} are free`, { needed: bytes + SPACE_RESERVE, free });
    }
  }

  /** Refuses (ALREADY_EXISTS) a name that a model of the library has. */
  async checkNameFree(name: string): Promise<void> {
    const taken = (await this.list()).find((m) => m.record.name === name);
    if (taken) throw nameTaken(name, `model ${taken.record.id.slice(0, 12)}…`);
  }

  /** `name`, or `name (2)`, … : for models registered without a user choosing the name. */
  private async freeNameLike(name: string): Promise<string> {
    const names = new Set((await this.list()).map((m) => m.record.name));
    if (!names.has(name) && !this.reserved.has(name)) return name;
    for (let i = 2; ; i++) if (!names.has(`${name} (${i})`)) return `${name} (${i})`;
  }

  /** Removes what imports of processes no longer running left in the staging directory. */
  private async cleanStaging(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    let entries: string[];
    try {
      entries = await readdir(this.stagingRoot);
    } catch {
      return;
    }
    for (const e of entries) {
      const pid = Number(/^(?:removed-)?(\d+)-/.exec(e)?.[1]);
      if (pid === process.pid || alive(pid)) continue;
      log.info({ dir: e }, 'removing what an interrupted import left');
      await rm(join(this.stagingRoot, e), { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private stored(dir: string, record: LibraryRecord): StoredModel {
    return { record, dir, imagePath: record.image ?? join(dir, IMAGE_FILE), manifestPath: join(dir, MANIFEST_FILE) };
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/** A model name: 1 to 100 characters, no control characters, not only spaces. */
export function checkName(name: string): string {
  const n = name.trim();
  if (n.length === 0) throw new SnapbackError('BAD_ARGUMENT', 'a model name must not be empty');
  if (n.length > MAX_MODEL_NAME) throw new SnapbackError('BAD_ARGUMENT', `a model name is at most ${MAX_MODEL_NAME} characters`);
  if (/\p{Cc}/u.test(n)) throw new SnapbackError('BAD_ARGUMENT', 'a model name must not contain control characters');
  return n;
}

function nameTaken(name: string, by: string): SnapbackError {
  return new SnapbackError('ALREADY_EXISTS', `the name "${name}" is taken (by ${by}); choose another name or rename that model first`, { name });
}

/** Throws MANIFEST_INVALID naming the first region whose digest is not the manifest's. */
export function assertSameDigests(manifest: Manifest, digests: Buffer, what: string): void {
  if (digests.equals(manifest.allDigests)) return;
  const n = manifest.digestLength;
  let r = 0;
  while (r < manifest.regionCount && digests.subarray(r * n, r * n + n).equals(manifest.digest(r))) r++;
  throw new SnapbackError('MANIFEST_INVALID', `${what} does not match its manifest: region ${r} (at byte ${r * manifest.regionSize}) hashes differently`, {
    region: r,
    expected: manifest.digest(r).toString('hex'),
    actual: digests.subarray(r * n, r * n + n).toString('hex'),
  });
}

function sourceText(s: ModelSource): string {
  switch (s.kind) {
    case 'file':
      return s.path;
    case 'url':
      return s.url;
    case 'upload':
      return `the upload${s.fileName ? ` ${s.fileName}` : ''}`;
    case 'capture':
      return `the capture of session ${s.session}`;
  }
}

/** A copy sharing the source's blocks (btrfs, XFS): instant; false where the filesystem cannot. */
async function reflink(src: string, dest: string): Promise<boolean> {
  try {
    await copyFile(src, dest, fsConstants.COPYFILE_FICLONE_FORCE);
    return true;
  } catch (err) {
    await rm(dest, { force: true }).catch(() => undefined);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EXDEV' || code === 'EINVAL' || code === 'ENOSYS' || code === 'EPERM') return false;
    throw fromSystemError(err, `copying ${src}`);
  }
}

async function deviceSize(path: string): Promise<number> {
  const dev = new FileDevice(path, { readOnly: true });
  await dev.open();
  try {
    return dev.size;
  } finally {
    await dev.close();
  }
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
