/**
 * The partition table of the active model (what the host sees when frozen): GET /api/partitions.
 * A table the model holds but that is damaged answers 422 PARTITION_TABLE_CORRUPT.
 */
import { partitionTableSchema, type PartitionTable } from '../../api/partitions.js';
import type { ApiRouter } from '../api-router.js';

export interface PartitionRouteDeps {
  /** Reads the active model's partition table. */
  partitions: () => Promise<PartitionTable>;
}

export function partitionRoutes(api: ApiRouter, { partitions }: PartitionRouteDeps): void {
  api.add({
    method: 'get',
    path: '/api/partitions',
    tag: 'partitions',
    summary: "The active model's partitions (MBR or GPT): number, type, start and size in bytes, label",
    replies: { 200: { description: 'The partition table', schema: partitionTableSchema } },
    handler: (): Promise<PartitionTable> => partitions(),
  });
}
