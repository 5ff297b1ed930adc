/**
 * A model's record in the library (STATE/models/ID/record.json): what the model is (its
 * manifest's id, size, region size and hash), its name, where it came from, the model it was
 * captured from, and whether every region is local and verified. The image is
 * STATE/models/ID/image unless `image` names a file elsewhere: a model registered in place
 * (the model of a state directory made before the library, or `snapback init --model`), whose
 * file the library never copies, moves or deletes.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { modelPartitionSchema, modelSourceSchema } from '../api/models.js';
import { SnapbackError } from '../errors.js';
import { formatZodIssues } from '../zod-issues.js';
import { writeFileDurably } from './durable-write.js';

export const MODEL_RECORD_FORMAT = 'snapback-model/1';

export const libraryRecordSchema = z.object({
  format: z.literal(MODEL_RECORD_FORMAT),
  id: z.string().regex(/^[0-9a-f]{64}$/),
  name: z.string().min(1),
  size: z.number().int().nonnegative(),
  regionSize: z.number().int().positive(),
  hash: z.string(),
  createdAt: z.string(),
  source: modelSourceSchema,
  parent: z.string().nullable(),
  complete: z.boolean(),
  /** An image file outside the library (registered in place); null: the model's directory holds it. */
  image: z.string().nullable(),
  /** A partition model: which partition of the disk it protects (partition-model.ts); absent for a whole-disk model. */
  partition: modelPartitionSchema.optional(),
});
export type LibraryRecord = z.infer<typeof libraryRecordSchema>;

export async function readRecord(path: string): Promise<LibraryRecord> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new SnapbackError('STATE_CORRUPT', `cannot read the model record ${path}: ${(err as Error).message}`);
  }
  try {
    return libraryRecordSchema.parse(JSON.parse(text));
  } catch (err) {
    const why = err instanceof z.ZodError ? formatZodIssues(err) : (err as Error).message;
    throw new SnapbackError('STATE_CORRUPT', `the model record ${path} is not valid: ${why}`);
  }
}

export async function writeRecord(path: string, record: LibraryRecord): Promise<void> {
  await writeFileDurably(path, JSON.stringify(record, null, 2) + '\n');
}
