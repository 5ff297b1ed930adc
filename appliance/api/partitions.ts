/**
 * The partition table of the disk the host sees (the active model's, when frozen): GET
 * /api/partitions and `snapback partitions --json`. Byte offsets and sizes, never sectors.
 */
import { z } from 'zod';

export const partitionSchema = z.object({
  /** As the host's OS numbers it: GPT entry index + 1; MBR 1–4 primary, 5 and up logical. */
  number: z.number().int().positive(),
  /** The type: an MBR id in hex ("0x83") or a GPT type GUID (upper case). */
  type: z.string(),
  /** A short name for the type ("Linux filesystem", "EFI system", "FAT16"); "" when unknown. */
  typeName: z.string(),
  /** First byte on the disk. */
  start: z.number().int().nonnegative(),
  /** Length in bytes. */
  size: z.number().int().nonnegative(),
  /** The GPT partition name; "" for MBR, which has none. */
  label: z.string(),
});
export type Partition = z.infer<typeof partitionSchema>;

export const partitionTableSchema = z.object({
  /** "none": no MBR or GPT found (a blank disk, or a filesystem without a table). */
  scheme: z.enum(['mbr', 'gpt', 'none']),
  /** The logical sector size the table was found with (512 or 4096). */
  sectorSize: z.number().int(),
  /** GPT disk GUID, or the MBR disk signature in hex; "" when there is none. */
  diskId: z.string(),
  diskSize: z.number().int(),
  partitions: z.array(partitionSchema),
  /** Things read but not right, e.g. a damaged primary GPT read from its backup. */
  warnings: z.array(z.string()),
});
export type PartitionTable = z.infer<typeof partitionTableSchema>;
