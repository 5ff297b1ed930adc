/**
 * A state directory for a very large, all-zero (sparse) model, built without reading the model:
 * the manifest's digests are the digest of an all-zero region, which is exactly what hashing
 * the image would produce, and the write log is made by the region log itself. Lets tests and
 * the memory benchmark run the real daemon on a 64 GiB–1 TiB disk in seconds.
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, mkdirSync, openSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FileDevice } from '../../appliance/storage/file-device.js';
import { Manifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import { RegionLog, logFileSize } from '../../appliance/storage/region-log.js';
import { StateDir } from '../../appliance/storage/state-dir.js';
import { StateStore } from '../../appliance/state/state-store.js';

export interface SparseStateOptions {
  /** Directory to create the model, working disk and state directory in. */
  dir: string;
  diskBytes: number;
  regionSize?: number;
  manifestRegionSize?: number;
  /** Regions pending restore when the daemon first starts (default: none). */
  pending?: (region: number) => boolean;
  /** Hydration rate saved in the settings (bytes per second; e.g. 1 keeps pending regions pending). */
  hydrationRateBytesPerSecond?: number;
}

export interface SparseState {
  stateDir: string;
  modelPath: string;
  diskPath: string;
  regionCount: number;
}

function sparseFile(path: string, size: number): void {
  const fd = openSync(path, 'w', 0o600);
  ftruncateSync(fd, size);
  closeSync(fd);
}

/** Writes the manifest of an all-zero image of `size` bytes, as `snapback model manifest` would; returns its id. */
export async function writeZeroManifest(modelPath: string, size: number, regionSize: number): Promise<string> {
  const count = Math.ceil(size / regionSize);
  const full = createHash('sha256').update(Buffer.alloc(regionSize)).digest();
  const digests = Buffer.alloc(count * full.length);
  for (let r = 0; r < count; r++) full.copy(digests, r * full.length);
  const tail = size - (count - 1) * regionSize;
  if (tail !== regionSize) createHash('sha256').update(Buffer.alloc(tail)).digest().copy(digests, (count - 1) * full.length);
  const st = statSync(modelPath);
  const manifest = Manifest.fromDigests(
    { name: 'sparse-zero-model', size, regionSize, hash: 'sha256', createdAt: new Date().toISOString(), image: { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } },
    digests,
  );
  await manifest.save(manifestPathFor(modelPath));
  return manifest.id;
}

export async function makeSparseState(o: SparseStateOptions): Promise<SparseState> {
  const regionSize = o.regionSize ?? 64 * 1024;
  mkdirSync(o.dir, { recursive: true });
  const modelPath = join(o.dir, 'model.img');
  const diskPath = join(o.dir, 'disk.img');
  const stateDir = join(o.dir, 'state');
  sparseFile(modelPath, o.diskBytes);
  const modelId = await writeZeroManifest(modelPath, o.diskBytes, o.manifestRegionSize ?? 1 << 20);
  sparseFile(diskPath, o.diskBytes);
  const state = new StateDir(stateDir);
  mkdirSync(stateDir, { recursive: true });
  const regionCount = Math.ceil(o.diskBytes / regionSize);
  sparseFile(state.logPath, logFileSize(regionCount));
  const log = await RegionLog.create(
    new FileDevice(state.logPath, { size: logFileSize(regionCount) }),
    { modelId, regionSize, diskSize: o.diskBytes, sessionNumber: 1, sessionStartedAt: Date.now(), mode: 'frozen', restoreMode: 'instant' },
    o.pending ?? false,
  );
  await log.close();
  state.writeConfig({ version: 1, modelImage: modelPath, modelManifest: manifestPathFor(modelPath), disk: diskPath, regionSize, createdAt: new Date().toISOString() });
  if (o.hydrationRateBytesPerSecond !== undefined) {
    const store = await StateStore.open(stateDir);
    await store.updateSettings({ hydrationRateBytesPerSecond: o.hydrationRateBytesPerSecond });
    await store.close();
  }
  return { stateDir, modelPath, diskPath, regionCount };
}
