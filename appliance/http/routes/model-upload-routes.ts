/**
 * Uploading a model image through the API (the web UI's drag and drop, or `curl -T`):
 *   PUT /api/models/upload?name=NAME[&fileName=F]   body: the image, application/octet-stream
 * The body is streamed into the model library and hashed on the way (never held in memory);
 * while it arrives it is listed as an import job (GET /api/models) with its progress. The reply
 * comes when the model is in the library: 201 with its record. Content-Length is required (the
 * free space is checked before a byte is written, and a short body is told from a whole one).
 * A body cut off (the connection lost), shorter or longer than announced, a name in use, an
 * image already in the library or a full disk: a clear error, the job failed, nothing kept.
 * Both outcomes are audited (model.upload, model.upload-failed).
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { Request } from 'express';
import { modelRecordSchema, modelUploadQuerySchema, type ModelRecord, type ModelUploadQuery } from '../../api/models.js';
import { SnapbackError } from '../../errors.js';
import type { ModelService } from '../../session/model-service.js';
import { uploadModel } from '../../session/model-upload.js';
import { isHashName, type HashName } from '../../storage/hash-functions.js';
import { DEFAULT_MANIFEST_HASH, DEFAULT_MANIFEST_REGION_SIZE } from '../../storage/manifest.js';
import { isValidRegionSize } from '../../storage/sizes.js';
import type { StateStore } from '../../state/state-store.js';
import type { ApiRouter } from '../api-router.js';
import { HttpError } from '../http-util.js';
import { audit, needPrincipal } from '../route-context.js';

/** An upload that sends nothing for this long is given up (the client is gone or stuck). */
const UPLOAD_IDLE_MS = 120_000;
/** A refused upload's rest, up to this much, is read before the answer goes out (see receive()). */
const DRAIN_BYTES = 256 * 1024 * 1024;
const DRAIN_WAIT_MS = 30_000;

/** Counts the bytes that pass (to say how far a cut-off upload got). */
class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    done(null, chunk);
  }
}

function contentLength(req: Request): number {
  const raw = req.headers['content-length'];
  if (raw === undefined) throw new HttpError(411, 'LENGTH_REQUIRED', 'send the image with a Content-Length header (its size in bytes)');
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new HttpError(400, 'BAD_ARGUMENT', `Content-Length ${raw} is not a size`);
  if (n === 0) throw new HttpError(400, 'BAD_ARGUMENT', 'the upload is empty');
  return n;
}

export function modelUploadRoutes(api: ApiRouter, { models, store }: { models: ModelService; store: StateStore }): void {
  api.add({
    method: 'put',
    path: '/api/models/upload',
    tag: 'models',
    summary: 'Upload a model image as the request body: streamed into the library and hashed on the way, listed as an import job while it arrives',
    audit: 'handler',
    rawBody: { contentType: 'application/octet-stream', description: 'The image, byte for byte; Content-Length is required' },
    query: modelUploadQuerySchema,
    replies: { 201: { description: 'The model, in the library', schema: modelRecordSchema } },
    handler: async ({ req, res, query }): Promise<ModelRecord> => {
      const p = needPrincipal(res);
      const fileName = query.fileName ?? null;
      try {
        const model = await receive(req, models, query);
        await audit(store, res, p.actor, 'model.upload', { model: model.id, name: model.name, size: model.size, fileName });
        return model;
      } catch (err) {
        // (on a full disk the audit entry may not be written either: the upload's error is what the client must get)
        await audit(store, res, p.actor, 'model.upload-failed', { name: query.name, fileName, error: err instanceof Error ? err.message : String(err) }).catch(() => undefined);
        throw err;
      }
    },
  });
}

/** Streams the request body into the library (an import job while it arrives); the new model. */
async function receive(req: Request, models: ModelService, q: ModelUploadQuery): Promise<ModelRecord> {
  const size = contentLength(req);
  let expect: { id: string; regionSize: number; hash: HashName } | undefined;
  if (q.manifestId !== undefined) {
    const regionSize = q.regionSize ?? DEFAULT_MANIFEST_REGION_SIZE;
    const hash = q.hash ?? DEFAULT_MANIFEST_HASH;
    if (!isValidRegionSize(regionSize)) throw new HttpError(400, 'BAD_ARGUMENT', `query: regionSize ${regionSize} is not a power of two from 4 KiB to 16 MiB`);
    if (!isHashName(hash)) throw new HttpError(400, 'BAD_ARGUMENT', `query: hash ${hash} is not one this appliance knows`);
    expect = { id: q.manifestId, regionSize, hash };
  }
  // The body flows through a counter into the library. A connection lost mid-way ends the
  // counter with an error (pipe() does not pass errors on), which ends the import.
  const counter = new ByteCounter();
  let lost = false;
  const onLost = (): void => {
    if (req.complete) return;
    lost = true;
    counter.destroy(new Error('the connection was lost'));
  };
  req.once('aborted', onLost);
  req.once('error', onLost);
  req.once('close', onLost);
  req.setTimeout(UPLOAD_IDLE_MS, () => req.destroy(new Error(`nothing arrived for ${UPLOAD_IDLE_MS / 1000} s`)));
  req.pipe(counter);
  try {
    return await uploadModel(models, counter, {
      name: q.name,
      size,
      fileName: q.fileName ?? null,
      ...(expect ? { expect } : {}),
      streamFailure: () =>
        lost || (!req.complete && req.destroyed)
          ? new SnapbackError('BAD_ARGUMENT', `the upload was cut off after ${counter.bytes} of ${size} bytes; nothing was imported`, { received: counter.bytes, size })
          : null,
    });
  } catch (err) {
    // Refused before the end of the body (a name taken, a full disk): the rest is read and
    // dropped, so that the client, still sending, gets the answer rather than a reset connection.
    // Up to DRAIN_BYTES the answer waits until the body is in: an answer sent while the client
    // still writes races the connection's close, and the client may see only "EPIPE".
    if (!req.complete && !req.destroyed) {
      req.unpipe(counter);
      const drained = new Promise<void>((resolve) => {
        req.once('end', resolve);
        req.once('close', resolve);
      });
      req.resume();
      if (size - counter.bytes <= DRAIN_BYTES) await Promise.race([drained, new Promise((r) => setTimeout(r, DRAIN_WAIT_MS).unref())]);
    }
    throw err;
  } finally {
    req.off('aborted', onLost);
    req.off('error', onLost);
    req.off('close', onLost);
    req.setTimeout(0);
  }
}
