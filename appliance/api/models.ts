/**
 * The model library: GET /api/models and the actions on it (import, upload, activate, capture,
 * rename, remove). A library holds many models; one is active (the one the host's disk is
 * restored from). A model is listed only once it is complete and verified, except a lazily
 * provisioned one, which is listed (complete: false) from the moment it can serve the host.
 */
import { z } from 'zod';

/** Where a model came from. */
export const modelSourceSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('file'), path: z.string() }),
  z.object({ kind: z.literal('upload'), fileName: z.string().nullable() }),
  z.object({ kind: z.literal('url'), url: z.string() }),
  /** Captured from what the host saw in a session. */
  z.object({ kind: z.literal('capture'), session: z.number() }),
]);
export type ModelSource = z.infer<typeof modelSourceSchema>;

/** A model still arriving from a URL (lazy provisioning or a background import). */
export const modelDownloadSchema = z.object({
  state: z.enum(['running', 'stalled', 'done']),
  regionsTotal: z.number(),
  regionsDone: z.number(),
  bytesDone: z.number(),
  bytesPerSecond: z.number(),
  /** Background download rate limit in bytes per second; null for unlimited. */
  rateLimitBytesPerSecond: z.number().nullable(),
  /** Why the download is stalled (the server's error, a verification failure); null when it is not. */
  lastError: z.string().nullable(),
});
export type ModelDownload = z.infer<typeof modelDownloadSchema>;

/** A partition model: the partition of the disk it protects (the rest of the disk is its parent's). */
export const modelPartitionSchema = z.object({
  number: z.number().int().positive(),
  /** Its first byte on the disk, and its length. */
  offset: z.number().int().nonnegative(),
  size: z.number().int().positive(),
});
export type ModelPartition = z.infer<typeof modelPartitionSchema>;

/** What names a model image wherever it is listed: the appliance's library and the console's catalogue. */
export const modelIdentitySchema = z.object({
  /** The manifest's id: the hash of its content (64 hex digits). */
  id: z.string(),
  name: z.string(),
  size: z.number(),
  regionSize: z.number(),
  /** The manifest's per-region hash (sha256, blake3, …). */
  hash: z.string(),
  createdAt: z.string(),
});

export const modelRecordSchema = modelIdentitySchema.extend({
  source: modelSourceSchema,
  /** The id of the model this one was captured from; null for an import. */
  parent: z.string().nullable(),
  /** Every region is local and verified. */
  complete: z.boolean(),
  active: z.boolean(),
  /** An activation waits to make it the active model at the next session end. */
  pendingActivation: z.boolean(),
  /** Present while a URL model is still arriving. */
  download: modelDownloadSchema.nullable(),
  /** Set for a model made from the image of one partition; absent or null for a whole-disk model. */
  partition: modelPartitionSchema.nullable().optional(),
});
export type ModelRecord = z.infer<typeof modelRecordSchema>;

/** An import that has not finished yet (not a model until it has). */
export const modelImportJobSchema = z.object({
  id: z.string(),
  name: z.string(),
  source: modelSourceSchema,
  state: z.enum(['running', 'failed', 'done']),
  bytesTotal: z.number().nullable(),
  bytesDone: z.number(),
  error: z.string().nullable(),
  /** The failure's machine-readable code (ALREADY_EXISTS, NO_SPACE, MANIFEST_INVALID, …); null unless failed. */
  errorCode: z.string().nullable(),
  /** The model it made, once done. */
  modelId: z.string().nullable(),
});
export type ModelImportJob = z.infer<typeof modelImportJobSchema>;

export const modelListSchema = z.object({
  models: z.array(modelRecordSchema),
  imports: z.array(modelImportJobSchema),
});
export type ModelList = z.infer<typeof modelListSchema>;

/** POST /api/models/import: from a path on the appliance or an http(s) URL. */
export const modelImportRequestSchema = z.object({
  source: z.string().min(1),
  name: z.string().min(1).max(100),
  /** A URL model usable at once, fetched region by region as the host reads (needs a manifest at the URL). */
  lazy: z.boolean().optional(),
  /** For an https URL: a CA certificate (a PEM file on the appliance) to trust besides the system's. */
  ca: z.string().min(1).optional(),
  /** The source is the image of this partition of the active model (a file on the appliance). */
  partition: z.number().int().positive().optional(),
});
export type ModelImportRequest = z.infer<typeof modelImportRequestSchema>;

/** POST /api/models/:ref/activate. */
export const modelActivateRequestSchema = z.object({ now: z.boolean().optional() });
export type ModelActivateRequest = z.infer<typeof modelActivateRequestSchema>;

export const modelActivateReplySchema = z.object({
  model: modelRecordSchema,
  /** 'now': the session was ended and the new model is in force; otherwise at the next session end. */
  takesEffect: z.enum(['now', 'next-session-end']),
  /** Regions that differ between the two models: what will be restored. */
  regionsToRestore: z.number(),
});
export type ModelActivateReply = z.infer<typeof modelActivateReplySchema>;

/** POST /api/models/activation/cancel: the activation waiting for the next session end is withdrawn. */
export const modelActivationCancelReplySchema = z.object({
  /** The model that would have been put in force; null when no activation was pending. */
  cancelled: modelRecordSchema.nullable(),
});
export type ModelActivationCancelReply = z.infer<typeof modelActivationCancelReplySchema>;

/** POST /api/models/capture. */
export const modelCaptureRequestSchema = z.object({
  name: z.string().min(1).max(100),
  activate: z.boolean().optional(),
  /** Also take the host's bytes in persistent areas (default: the parent's bytes stay there). */
  includePersistent: z.boolean().optional(),
});
export type ModelCaptureRequest = z.infer<typeof modelCaptureRequestSchema>;

/** PATCH /api/models/:ref. */
export const modelRenameRequestSchema = z.object({ name: z.string().min(1).max(100) });
export type ModelRenameRequest = z.infer<typeof modelRenameRequestSchema>;

/** PATCH /api/models/:ref/download: the background download rate of a model still arriving. */
export const modelDownloadRateRequestSchema = z.object({
  /** Bytes per second; null for unlimited. */
  rateLimitBytesPerSecond: z.number().int().positive().nullable(),
});

/**
 * PUT /api/models/upload?… with the image as the body (application/octet-stream, Content-Length
 * required). With manifestId (and the manifest's regionSize and hash) the image must hash to
 * that manifest, or nothing is imported.
 */
export const modelUploadQuerySchema = z
  .object({
    name: z.string().min(1).max(100),
    /** The file's name on the uploader's side, kept as the model's source. */
    fileName: z.string().min(1).max(255).optional(),
    manifestId: z.string().regex(/^[0-9a-f]{64}$/, 'a manifest id is 64 hex digits').optional(),
    regionSize: z.coerce.number().int().positive().optional(),
    hash: z.string().min(1).max(32).optional(),
  })
  .strict()
  .refine((q) => q.manifestId !== undefined || (q.regionSize === undefined && q.hash === undefined), 'regionSize and hash go with manifestId');
export type ModelUploadQuery = z.infer<typeof modelUploadQuerySchema>;
