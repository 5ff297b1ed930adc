/**
 * A model image arriving as a stream of known length (an upload through the API): run as an
 * import job of the model service (listed with its progress while it arrives), written into a
 * staging directory of the library and hashed on the way, never held in memory, and made a
 * model only when every byte is there and, when the uploader named the manifest it expects
 * (its id, region size and hash), the image hashes to exactly that manifest. Anything else (the
 * stream cut off, a mismatch, a full disk, a name taken) fails the job with a clear error and
 * leaves nothing behind.
 */
import type { Readable } from 'node:stream';
import type { ModelRecord, ModelSource } from '../api/models.js';
import { SnapbackError } from '../errors.js';
import type { HashName } from '../storage/hash-functions.js';
import { DEFAULT_MANIFEST_HASH, DEFAULT_MANIFEST_REGION_SIZE, Manifest } from '../storage/manifest.js';
import { checkName } from '../storage/model-library.js';
import { writeAndHash } from '../storage/model-ingest.js';
import type { ModelService } from './model-service.js';

export interface UploadOptions {
  name: string;
  /** The stream's length in bytes (Content-Length). */
  size: number;
  /** The file's name on the uploader's side (kept as the model's source). */
  fileName: string | null;
  /** The manifest the image must hash to (with its region size and hash); none: a new one is made. */
  expect?: { id: string; regionSize: number; hash: HashName };
  /** Why the stream failed, when it did (a cut-off upload says how far it got). */
  streamFailure?: () => Error | null;
}

/** Checks what can be refused before a byte is read: the name (valid, not taken). */
export async function checkUpload(models: ModelService, name: string): Promise<string> {
  const n = checkName(name);
  await models.library.checkNameFree(n);
  return n;
}

/** Receives the stream as an import job; resolves with the new model once it is in the library. */
export async function uploadModel(models: ModelService, stream: Readable, o: UploadOptions): Promise<ModelRecord> {
  const name = await checkUpload(models, o.name);
  const source: ModelSource = { kind: 'upload', fileName: o.fileName };
  const regionSize = o.expect?.regionSize ?? DEFAULT_MANIFEST_REGION_SIZE;
  const hash = o.expect?.hash ?? DEFAULT_MANIFEST_HASH;
  let failure: unknown = null;
  const job = models.runJob({ name, source, bytesTotal: o.size }, async (ctx) => {
    try {
      const staging = await models.library.stage(name);
      try {
        await staging.ensureSpace(o.size);
        const digests = await writeAndHash(stream, { dest: staging.imagePath, size: o.size, regionSize, hash, onProgress: (d, t) => ctx.progress(d, t), signal: ctx.signal });
        const manifest = Manifest.fromDigests({ name, size: o.size, regionSize, hash, createdAt: new Date().toISOString(), image: { size: o.size, mtimeMs: 0, ino: 0 } }, digests);
        if (o.expect && manifest.id !== o.expect.id) {
          throw new SnapbackError('MANIFEST_INVALID', `the upload does not match its manifest: it hashes to ${manifest.id.slice(0, 12)}…, the manifest is ${o.expect.id.slice(0, 12)}…; nothing was imported`, {
            expected: o.expect.id,
            actual: manifest.id,
          });
        }
        return await staging.commit(manifest, { source });
      } catch (err) {
        await staging.abort();
        throw err;
      }
    } catch (err) {
      stream.destroy();
      failure = o.streamFailure?.() ?? err;
      throw failure;
    }
  });
  const ended = await models.waitForJob(job.id);
  if (ended.state !== 'done' || ended.modelId === null) {
    throw failure instanceof Error ? failure : new SnapbackError('IO_ERROR', ended.error ?? 'the upload failed');
  }
  return models.get(ended.modelId);
}
