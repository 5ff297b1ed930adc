/**
 * Brings a state directory made by a release before the model library up to date, in place:
 * its one model (snapback.json version 1 named the image and manifest files) is registered in
 * the library where it lies, without copying the image, and snapback.json is rewritten as
 * version 2. The write log is not touched: it names that model already, which makes it the
 * active one. Each step is durable and the last one (snapback.json replaced by a rename) is the
 * switch, so a power cut at any point leaves a directory that migrates again at the next start.
 */
import { basename } from 'node:path';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import { Manifest } from './manifest.js';
import { ModelLibrary } from './model-library.js';
import type { StateConfig, StateDir } from './state-dir.js';

const log = childLogger('migration');

/** Migrates `state` if it is of the older layout; its config either way. */
export async function migrateStateDir(state: StateDir): Promise<StateConfig> {
  const config = state.readConfig();
  if (config.version === 2) return config;
  let manifest: Manifest;
  try {
    // the digests are copied from the file into the library's manifest, never held (32 MB at 1 TiB)
    manifest = await Manifest.load(config.modelManifest, { digests: 'file' });
  } catch (err) {
    throw new SnapbackError('MANIFEST_INVALID', `cannot bring ${state.path} up to date: its model's manifest cannot be read (${(err as Error).message})`, undefined, { cause: err });
  }
  const library = new ModelLibrary(state);
  const name = manifest.json.name || basename(config.modelImage);
  const m = await library.registerInPlace(config.modelImage, manifest, { name, source: { kind: 'file', path: config.modelImage } }).finally(() => manifest.close());
  const next: StateConfig = { version: 2, disk: config.disk, regionSize: config.regionSize, createdAt: config.createdAt };
  state.writeConfig(next);
  log.info({ stateDir: state.path, model: m.record.id, name: m.record.name, image: config.modelImage }, 'state directory brought up to date: its model is now in the model library (registered in place, not copied)');
  return next;
}
