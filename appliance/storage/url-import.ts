/**
 * Models imported from http(s) URLs into the model library (model-library.ts).
 *
 * - With a manifest beside the image and Range support: the image arrives region by region,
 *   several in flight, each verified against the manifest on arrival (remote-model.ts).
 *   * lazily (`lazy`): the model is registered at once (complete: false) and usable at once;
 *     its regions are fetched when read and in the background, into its own directory;
 *   * otherwise it is downloaded into `models/.downloads/MANIFEST-ID/` (resumable: the present
 *     bitmap survives a network loss and a daemon restart) and becomes a model only once every
 *     region is there.
 * - Without a manifest, or from a server without Range support: the image is downloaded whole
 *   (continued after a network loss when the server has Range), then hashed where it lies into
 *   a new manifest, or checked against the one the server has, and moved into the library: it
 *   needs the image's size on disk once, never a second copy.
 *
 * A URL model's directory keeps `download.json` (the URL, the CA to trust, the rate) and
 * `present` (the regions already here) until the model is complete.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir, rename, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { HttpRangeSource, parseModelUrl, RemoteError, type RetryPolicy } from './http-range-source.js';
import { createManifest, DEFAULT_MANIFEST_REGION_SIZE, Manifest, manifestPathFor } from './manifest.js';
import { assertSameDigests, checkName, type ModelLibrary, type StoredModel } from './model-library.js';
import { fetchRemoteImage, type RemoteImage } from './remote-manifest.js';
import { RemoteModel } from './remote-model.js';
import { writeFileDurably } from './durable-write.js';
import type { HashPool } from './hash-pool.js';
import { DEFAULT_MANIFEST_HASH, digestOf } from './hash-functions.js';
import { SnapbackError, fromSystemError } from '../errors.js';
import { childLogger } from '../logger.js';

const log = childLogger('url-import');

const DOWNLOAD_FILE = 'download.json';
const PRESENT_FILE = 'present';
const DOWNLOADS_DIR = '.downloads';
/** Kept free besides the image (the manifest, the record, the filesystem's own). */
const SPACE_RESERVE = 16 << 20;

const downloadInfoSchema = z.object({
  url: z.string(),
  /** A CA (PEM file) trusted besides the system's for this URL. */
  caFile: z.string().nullable(),
  /** The background download's rate in bytes per second; null for unlimited. */
  rateLimit: z.number().nullable(),
  /** The model's name (for a download that is not a model yet). */
  name: z.string(),
});
export type DownloadInfo = z.infer<typeof downloadInfoSchema>;

/** What a URL model's directory says about its download, or null (not a URL model arriving). */
export async function readDownloadInfo(dir: string): Promise<DownloadInfo | null> {
  let text: string;
  try {
    text = await readFile(join(dir, DOWNLOAD_FILE), 'utf8');
  } catch {
    return null;
  }
  try {
    return downloadInfoSchema.parse(JSON.parse(text));
  } catch (err) {
    throw new SnapbackError('STATE_CORRUPT', `${join(dir, DOWNLOAD_FILE)} is not valid: ${(err as Error).message}`);
  }
}

export async function writeDownloadInfo(dir: string, info: DownloadInfo): Promise<void> {
  await writeFileDurably(join(dir, DOWNLOAD_FILE), JSON.stringify(info, null, 2) + '\n');
}

export interface RemoteModelTuning {
  parallel?: number;
  readAttempts?: number;
  readRetryBaseMs?: number;
  readRetryMaxMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  hashPool?: HashPool;
}

/** Opens the RemoteModel of an arriving URL model of the library (its files in `entry.dir`). */
export async function openRemoteModel(entry: StoredModel, tuning: RemoteModelTuning = {}): Promise<RemoteModel> {
  const info = await readDownloadInfo(entry.dir);
  const url = info?.url ?? (entry.record.source.kind === 'url' ? entry.record.source.url : null);
  if (!url) throw new SnapbackError('NOT_SUPPORTED', `model "${entry.record.name}" is not complete and has no URL to fetch its regions from`);
  return openRemote(entry.imagePath, join(entry.dir, PRESENT_FILE), await Manifest.load(entry.manifestPath), url, info, tuning);
}

async function openRemote(imagePath: string, presentPath: string, manifest: Manifest, url: string, info: DownloadInfo | null, tuning: RemoteModelTuning): Promise<RemoteModel> {
  const source = new HttpRangeSource(url, info?.caFile ? { caFile: info.caFile } : {});
  const model = new RemoteModel({ imagePath, presentPath, manifest, source, rateLimit: info?.rateLimit ?? null, ...tuning });
  model.once('closed', () => source.close());
  try {
    await model.open();
  } catch (err) {
    source.close();
    throw err;
  }
  return model;
}

/** Persists a URL model's background download rate (bytes per second; null: unlimited). */
export async function saveDownloadRate(entry: StoredModel, rateLimit: number | null): Promise<void> {
  const info = await readDownloadInfo(entry.dir);
  if (!info) return;
  await writeDownloadInfo(entry.dir, { ...info, rateLimit });
}

/**
 * A lazily provisioned model whose every region is here: its manifest now describes the file
 * as it lies (so a later open trusts it), the record says complete, the bitmap goes.
 */
export async function finishLazyModel(library: ModelLibrary, entry: StoredModel, model: RemoteModel): Promise<StoredModel> {
  if (!model.complete) throw new SnapbackError('BUSY', `model "${entry.record.name}" is not complete yet`);
  await describeFileInManifest(entry.imagePath, model.manifest, entry.manifestPath);
  const done = await library.markComplete(entry.record.id);
  await rm(join(entry.dir, PRESENT_FILE), { force: true });
  log.info({ id: entry.record.id, name: entry.record.name }, 'lazily provisioned model complete');
  return done;
}

async function describeFileInManifest(imagePath: string, manifest: Manifest, manifestPath: string): Promise<void> {
  const st = await stat(imagePath);
  await new Manifest({ ...manifest.json, image: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } }, manifest.allDigests).save(manifestPath);
}

async function ensureSpace(dir: string, bytes: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  const fs = await statfs(dir);
  const free = fs.bavail * fs.bsize;
  if (free < bytes + SPACE_RESERVE) {
    throw new SnapbackError('NO_SPACE', `not enough free space for the model in ${dir}: it needs ${bytes + SPACE_RESERVE} bytes, ${free} are free`, { needed: bytes + SPACE_RESERVE, free });
  }
}

export interface UrlImportOptions {
  url: string;
  name: string;
  /** Register at once and fetch regions as they are read (needs a manifest and Range support). */
  lazy?: boolean;
  /** A CA (PEM file) to trust besides the system's. */
  caFile?: string | null;
  /** Background rate in bytes per second; null for unlimited. */
  rateLimit?: number | null;
  onProgress?: (bytesDone: number, bytesTotal: number | null) => void;
  /** Aborts the import. What arrived stays for a later resume only when `keepOnAbort()` says so (a daemon stopping). */
  signal?: AbortSignal;
  keepOnAbort?: () => boolean;
  tuning?: RemoteModelTuning;
  /** The network's retries for the manifest and whole downloads (default: unbounded, 0.5 s doubling to 30 s). */
  retry?: Omit<RetryPolicy, 'signal'>;
  /** What a first look found (lookUpUrlImage): the image's size and manifest, not fetched again. */
  known?: RemoteImage | null;
  /**
   * Lazy: called with the model's id just before it becomes visible in the library (complete:
   * false), so that the caller can make requests about it wait until it follows the download.
   */
  onLazyVisible?: (id: string) => void;
}

/** The result: the model, and for a lazy one its RemoteModel (open, download started) for the caller to serve and watch. */
export interface UrlImportResult {
  model: StoredModel;
  remote: RemoteModel | null;
}

/** Imports the image at an http(s) URL into the library (see the top of this file). */
export async function importFromUrl(library: ModelLibrary, o: UrlImportOptions): Promise<UrlImportResult> {
  const url = parseModelUrl(o.url);
  const name = checkName(o.name);
  await library.checkNameFree(name);
  const source = new HttpRangeSource(url, o.caFile ? { caFile: o.caFile } : {});
  const retry: RetryPolicy = { ...(o.retry ?? { attempts: Infinity, baseMs: 500, maxMs: 30_000 }), ...(o.signal ? { signal: o.signal } : {}) };
  const downloads = join(library.dir, DOWNLOADS_DIR);
  const info: DownloadInfo = { url: url.href, caFile: o.caFile ?? null, rateLimit: o.rateLimit ?? null, name };
  try {
    await mkdir(downloads, { recursive: true });
    const remote = o.known ?? (await fetchManifest(source, downloads, retry));
    const { manifest } = remote;
    if (o.lazy) {
      if (!manifest) throw new SnapbackError('BAD_ARGUMENT', `${url.href} has no manifest beside it (${url.pathname.split('/').pop()}.manifest.json), so it cannot be provisioned lazily: its regions could not be verified as they arrive; import it without --lazy (it is then downloaded whole and hashed)`);
      if (!remote.info.rangeSupported) throw new SnapbackError('BAD_ARGUMENT', `${url.href}: the server does not support Range requests, so the model cannot be provisioned lazily; import it without --lazy (it is then downloaded whole)`);
      await ensureSpace(library.dir, manifest.size);
      o.onLazyVisible?.(manifest.id);
      const entry = await library.createIncomplete(manifest, { name, source: { kind: 'url', url: url.href } });
      try {
        await writeDownloadInfo(entry.dir, info);
        const model = await openRemote(entry.imagePath, join(entry.dir, PRESENT_FILE), manifest, url.href, info, o.tuning ?? {});
        return { model: entry, remote: model };
      } catch (err) {
        await library.remove(entry.record.id, { force: true }).catch(() => undefined);
        throw err;
      }
    }
    if (manifest && remote.info.rangeSupported) return { model: await downloadRegions(library, manifest, info, o, downloads), remote: null };
    return { model: await downloadWhole(library, source, manifest, info, o, retry, downloads), remote: null };
  } catch (err) {
    // a failed import leaves no trace: the downloads directory goes too when nothing else is in it
    await rmdir(downloads).catch(() => undefined);
    throw err;
  } finally {
    source.close();
  }
}

/** The image's size and Range support, and the manifest beside it (fetched through a file in `downloads`). */
async function fetchManifest(source: HttpRangeSource, downloads: string, retry: RetryPolicy): Promise<RemoteImage> {
  const manifestTmp = join(downloads, `manifest-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}.json`);
  try {
    return await fetchRemoteImage(source, manifestTmp, retry);
  } finally {
    await rm(manifestTmp, { force: true });
  }
}

/** How long a first look at a URL waits for the server before leaving it to the import's job. */
const LOOK_TIMEOUT_MS = 10_000;

/**
 * A first look at a URL before its import starts: the image's size and the manifest beside it,
 * whose id says at once whether the library holds the image already (no byte of it copied).
 * One attempt: null when the server does not answer now or refuses (the import's job then
 * tries again with its retries, and reports what is wrong).
 */
export async function lookUpUrlImage(library: ModelLibrary, url: string, caFile: string | null): Promise<RemoteImage | null> {
  let source: HttpRangeSource;
  try {
    source = new HttpRangeSource(parseModelUrl(url), { idleTimeoutMs: LOOK_TIMEOUT_MS, ...(caFile ? { caFile } : {}) });
  } catch {
    return null; // a bad URL or CA file: the import says so
  }
  const downloads = join(library.dir, DOWNLOADS_DIR);
  const signal = AbortSignal.timeout(LOOK_TIMEOUT_MS);
  try {
    await mkdir(downloads, { recursive: true });
    return await fetchManifest(source, downloads, { attempts: 1, baseMs: 0, maxMs: 0, signal });
  } catch (err) {
    log.debug({ url, err: (err as Error).message }, 'no first look at the URL: the import finds out');
    await rmdir(downloads).catch(() => undefined);
    return null;
  } finally {
    source.close();
  }
}

/** Resumes the downloads a stopped daemon left in models/.downloads (each as `start` gets it). */
export async function pendingDownloads(library: ModelLibrary): Promise<Array<{ dir: string; info: DownloadInfo }>> {
  const root = join(library.dir, DOWNLOADS_DIR);
  let names: string[];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const out: Array<{ dir: string; info: DownloadInfo }> = [];
  for (const n of names) {
    const dir = join(root, n);
    const info = await readDownloadInfo(dir).catch(() => null);
    if (info) out.push({ dir, info });
    else if (!n.startsWith('manifest-')) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return out;
}

/** Removes a partial download unless it is to be resumed (a daemon stopping). */
async function dropUnlessKept(dir: string, o: UrlImportOptions, err: unknown): Promise<void> {
  if (o.signal?.aborted && o.keepOnAbort?.()) {
    log.info({ dir }, 'download interrupted by the daemon stopping: it resumes at the next start');
    return;
  }
  log.warn({ dir, err: (err as Error).message }, 'URL import failed: removing what arrived');
  await rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

async function downloadRegions(library: ModelLibrary, manifest: Manifest, info: DownloadInfo, o: UrlImportOptions, downloads: string): Promise<StoredModel> {
  const dir = join(downloads, manifest.id);
  const existing = await library.find(manifest.id);
  if (existing) throw new SnapbackError('ALREADY_EXISTS', `this image is already in the library as "${existing.record.name}" (id ${manifest.id.slice(0, 12)}…)`, { id: manifest.id, name: existing.record.name });
  await mkdir(dir, { recursive: true });
  let model: RemoteModel | null = null;
  try {
    await ensureSpace(dir, manifest.size);
    await writeDownloadInfo(dir, info);
    model = await openRemote(join(dir, 'image'), join(dir, PRESENT_FILE), manifest, info.url, info, o.tuning ?? {});
    const m = model;
    const report = () => o.onProgress?.(m.progress().bytesDone, manifest.size);
    const timer = setInterval(report, 250);
    timer.unref();
    try {
      report();
      model.startDownload();
      await Promise.race([
        model.whenComplete(),
        new Promise<never>((_, reject) => {
          if (o.signal?.aborted) reject(o.signal.reason);
          o.signal?.addEventListener('abort', () => reject(new SnapbackError('CLOSED', `the import of ${info.url} was cancelled`)), { once: true });
          m.once('stopped', (err: Error) => reject(err));
        }),
      ]);
      report();
    } finally {
      clearInterval(timer);
      await model.close();
    }
    await describeFileInManifest(join(dir, 'image'), manifest, manifestPathFor(join(dir, 'image')));
    const staging = await library.stage(info.name);
    try {
      await rename(join(dir, 'image'), staging.imagePath);
      const stored = await staging.commit(manifest, { source: { kind: 'url', url: info.url } });
      await rm(dir, { recursive: true, force: true });
      return stored;
    } catch (err) {
      await staging.abort();
      throw err;
    }
  } catch (err) {
    await model?.close().catch(() => undefined);
    await dropUnlessKept(dir, o, err);
    throw err instanceof SnapbackError ? err : fromSystemError(err, `importing ${info.url}`);
  }
}

async function downloadWhole(library: ModelLibrary, source: HttpRangeSource, manifest: Manifest | null, info: DownloadInfo, o: UrlImportOptions, retry: RetryPolicy, downloads: string): Promise<StoredModel> {
  const dir = join(downloads, createHash('sha256').update(info.url).digest('hex').slice(0, 32));
  await mkdir(dir, { recursive: true });
  const image = join(dir, 'image');
  try {
    await writeDownloadInfo(dir, info);
    const size = (await source.probe(o.signal)).size;
    if (manifest && manifest.size !== size) throw new SnapbackError('MANIFEST_INVALID', `the manifest beside ${info.url} is for ${manifest.size} bytes but the image has ${size}`, { expected: manifest.size, actual: size });
    const arrived = await stat(image).then((st) => st.size, () => 0);
    await ensureSpace(dir, Math.max(0, size - arrived));
    await source.downloadTo(image, { ...retry, onRetry: (err, attempt, delay) => log.warn({ url: info.url, attempt, delay, err: err.message }, 'download interrupted; retrying') }, (done, total) => o.onProgress?.(done, total));
    // hashed where it lies (into a manifest, or checked against the server's), then moved into the library: never copied
    const made = await createManifest(image, {
      regionSize: manifest?.regionSize ?? DEFAULT_MANIFEST_REGION_SIZE,
      hash: manifest?.hash ?? DEFAULT_MANIFEST_HASH,
      name: info.name,
      ...(o.tuning?.hashPool ? { hashPool: o.tuning.hashPool } : {}),
    });
    if (manifest) assertSameDigests(manifest, made.allDigests, info.url);
    if (o.signal?.aborted) throw new SnapbackError('CLOSED', `the import of ${info.url} was cancelled`);
    const staging = await library.stage(info.name);
    let stored: StoredModel;
    try {
      await rename(image, staging.imagePath);
      stored = await staging.commit(manifest ?? made, { source: { kind: 'url', url: info.url }, hashedHere: !manifest });
    } catch (err) {
      await staging.abort();
      throw err;
    }
    await rm(dir, { recursive: true, force: true });
    return stored;
  } catch (err) {
    await dropUnlessKept(dir, o, err);
    if (err instanceof RemoteError || err instanceof SnapbackError) throw err;
    throw fromSystemError(err, `importing ${info.url}`);
  }
}

/**
 * One bit per region of `regionSize` bytes, set where the manifest says the model is all
 * zeroes: its regions hash like zeroes. Nothing is read or fetched.
 */
export function zeroRegionsOfManifest(manifest: Manifest, regionSize: number): Uint8Array {
  const mrs = manifest.regionSize;
  const count = Math.ceil(manifest.size / regionSize);
  const zeros = new Uint8Array(Math.ceil(count / 8));
  const fullZero = digestOf(manifest.hash, Buffer.alloc(mrs));
  const lastLen = manifest.size - (manifest.regionCount - 1) * mrs;
  const lastZero = lastLen === mrs ? fullZero : digestOf(manifest.hash, Buffer.alloc(lastLen));
  const isZero = (m: number) => manifest.digest(m).equals(m === manifest.regionCount - 1 ? lastZero : fullZero);
  for (let r = 0; r < count; r++) {
    const a = r * regionSize;
    const b = Math.min(manifest.size, a + regionSize);
    let zero = true;
    for (let m = Math.floor(a / mrs); m <= Math.floor((b - 1) / mrs) && zero; m++) zero = isZero(m);
    if (zero) zeros[r >> 3]! |= 1 << (r & 7);
  }
  return zeros;
}
