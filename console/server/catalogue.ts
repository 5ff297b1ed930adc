/**
 * The console's model catalogue: images uploaded to DATA/models/ID/image, each with its manifest
 * beside it (image.manifest.json, the appliance's IMAGE.manifest.json naming rule), served over
 * HTTP with Range at /models/ID/image so that appliances provision lazily through their URL
 * import. ID is the manifest's id (a hash of the image's content).
 *
 * An upload is streamed to a temporary file (never held in memory), flushed, hashed region by
 * region into its manifest, then moved into place; on any failure nothing is left behind.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CatalogueModel } from '../../appliance/api/console.js';
import { SnapbackError, fromSystemError } from '../../appliance/errors.js';
import { childLogger } from '../../appliance/logger.js';
import { createManifest, manifestPathFor } from '../../appliance/storage/manifest.js';
import type { CatalogueRow, ConsoleStore } from './console-store.js';

const log = childLogger('catalogue');
export const IMAGE_FILE = 'image';

export class Catalogue {
  readonly dir: string;
  private readonly store: ConsoleStore;
  private readonly publicUrl: () => string;

  /** `publicUrl`: the console's base URL as appliances reach it (ends with '/'). */
  constructor(dataDir: string, store: ConsoleStore, publicUrl: () => string) {
    this.dir = join(dataDir, 'models');
    this.store = store;
    this.publicUrl = publicUrl;
  }

  /** Where appliances fetch a model's image (its manifest: this + ".manifest.json"). */
  urlOf(id: string): string {
    return new URL(`models/${id}/${IMAGE_FILE}`, this.publicUrl()).toString();
  }

  imagePath(id: string): string {
    return join(this.dir, id, IMAGE_FILE);
  }

  manifestPath(id: string): string {
    return manifestPathFor(this.imagePath(id));
  }

  list(): CatalogueModel[] {
    return this.store.listModels().map((m) => this.record(m));
  }

  find(idOrName: string): CatalogueModel | null {
    const m = this.store.findModel(idOrName);
    return m ? this.record(m) : null;
  }

  /** Receives an image from `body` (a request stream) and adds it to the catalogue as `name`. */
  async upload(name: string, body: Readable): Promise<CatalogueModel> {
    if (this.store.findModel(name)) throw new SnapbackError('BUSY', `the catalogue has a model named "${name}" already; remove it or choose another name`);
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.upload-${randomBytes(6).toString('hex')}`);
    try {
      try {
        await pipeline(body, createWriteStream(tmp, { flags: 'wx', mode: 0o644, flush: true }));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE' || (err as NodeJS.ErrnoException).code === 'ECONNRESET') {
          throw new SnapbackError('BAD_ARGUMENT', 'the upload was interrupted before the whole image arrived', undefined, { cause: err });
        }
        throw fromSystemError(err, 'cannot store the uploaded image');
      }
      const manifest = await createManifest(tmp, { name });
      if (manifest.json.size === 0) throw new SnapbackError('BAD_ARGUMENT', 'the uploaded image is empty');
      const id = manifest.json.id;
      const existing = this.store.findModel(id);
      if (existing) throw new SnapbackError('BUSY', `this image is in the catalogue already, as "${existing.name}"`);
      const dir = join(this.dir, id);
      await rm(dir, { recursive: true, force: true }); // a leftover of an earlier failed upload
      await mkdir(dir);
      await rename(tmp, this.imagePath(id));
      await manifest.save(this.manifestPath(id));
      const row: CatalogueRow = { id, name, size: manifest.json.size, regionSize: manifest.json.regionSize, hash: manifest.json.hash, createdAt: new Date().toISOString() };
      try {
        this.store.addModel(row);
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw new SnapbackError('BUSY', `the catalogue has a model named "${name}" already`, undefined, { cause: err });
      }
      log.info({ id, name, size: row.size }, 'model added to the catalogue');
      return this.record(row);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Removes a model and its files. */
  async remove(id: string): Promise<void> {
    this.store.removeModel(id);
    await rm(join(this.dir, id), { recursive: true, force: true });
  }

  private record(m: CatalogueRow): CatalogueModel {
    return { id: m.id, name: m.name, size: m.size, regionSize: m.regionSize, hash: m.hash, createdAt: m.createdAt, url: this.urlOf(m.id) };
  }
}
