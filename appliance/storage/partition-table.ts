/**
 * Reads a disk's partition table from a BlockDevice: MBR (primary, extended and logical
 * partitions) and GPT (protective MBR, header and entry array, both CRC32-checked, the backup
 * used when the primary is damaged). What the host's OS would see, as byte ranges, so that
 * persistent areas and partition models can name a partition by its number.
 */
import { crc32 } from 'node:zlib';
import type { BlockDevice } from './block-device.js';
import type { Partition, PartitionTable } from '../api/partitions.js';
import { SnapbackError } from '../errors.js';

/** A table that is there but cannot be used: a bad checksum, entries outside the disk, a loop. */
export class PartitionTableError extends SnapbackError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('PARTITION_TABLE_CORRUPT', message, details);
    this.name = 'PartitionTableError';
  }
}

const GPT_SIGNATURE = 'EFI PART';
const MBR_PROTECTIVE = 0xee;
const MBR_EXTENDED = new Set([0x05, 0x0f, 0x85]);
/** A GPT's entry array is at most this large (the spec's minimum is 16 KiB; tools use that). */
const MAX_GPT_ENTRY_BYTES = 4 << 20;
/** More logical partitions than this in one extended partition is a loop or garbage. */
const MAX_LOGICAL = 256;

const MBR_TYPE_NAMES: Record<number, string> = {
  0x01: 'FAT12',
  0x04: 'FAT16 <32M',
  0x05: 'Extended',
  0x06: 'FAT16',
  0x07: 'NTFS/exFAT',
  0x0b: 'FAT32',
  0x0c: 'FAT32 (LBA)',
  0x0e: 'FAT16 (LBA)',
  0x0f: 'Extended (LBA)',
  0x11: 'Hidden FAT12',
  0x14: 'Hidden FAT16 <32M',
  0x16: 'Hidden FAT16',
  0x17: 'Hidden NTFS/exFAT',
  0x1b: 'Hidden FAT32',
  0x1c: 'Hidden FAT32 (LBA)',
  0x1e: 'Hidden FAT16 (LBA)',
  0x27: 'Windows recovery',
  0x82: 'Linux swap',
  0x83: 'Linux',
  0x85: 'Linux extended',
  0x8e: 'Linux LVM',
  0xa5: 'FreeBSD',
  0xa6: 'OpenBSD',
  0xa8: 'Apple UFS',
  0xaf: 'Apple HFS/HFS+',
  0xee: 'GPT protective',
  0xef: 'EFI system',
  0xfd: 'Linux RAID',
};

const GPT_TYPE_NAMES: Record<string, string> = {
  'C12A7328-F81F-11D2-BA4B-00A0C93EC93B': 'EFI system',
  '21686148-6449-6E6F-744E-656564454649': 'BIOS boot',
  '0FC63DAF-8483-4772-8E79-3D69D8477DE4': 'Linux filesystem',
  '4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709': 'Linux root (x86-64)',
  'B921B045-1DF0-41C3-AF44-4C6F280D3FAE': 'Linux root (ARM-64)',
  '44479540-F297-41B2-9AF7-D131D5F0458A': 'Linux root (x86)',
  '933AC7E1-2EB4-4F13-B844-0E14E2AEF915': 'Linux home',
  '3B8F8425-20E0-4F3B-907F-1A25A76F98E8': 'Linux server data',
  'BC13C2FF-59E6-4262-A352-B275FD6F7172': 'Linux extended boot',
  '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F': 'Linux swap',
  'E6D6D379-F507-44C2-A23C-238F2A3DF928': 'Linux LVM',
  'A19D880F-05FC-4D3B-A006-743F0F84911E': 'Linux RAID',
  'EBD0A0A2-B9E5-4433-87C0-68B6B72699C7': 'Microsoft basic data',
  'E3C9E316-0B5C-4DB8-817D-F92DF00215AE': 'Microsoft reserved',
  'DE94BBA4-06D1-4D40-A16A-BFD50179D6AC': 'Windows recovery',
  '5808C8AA-7E8F-42E0-85D2-E1E90434CFB3': 'Microsoft LDM metadata',
  'AF9B60A0-1431-4F62-BC68-3311714A69AD': 'Microsoft LDM data',
  '48465300-0000-11AA-AA11-00306543ECAC': 'Apple HFS/HFS+',
  '7C3457EF-0000-11AA-AA11-00306543ECAC': 'Apple APFS',
  '516E7CB4-6ECF-11D6-8FF8-00022D09712B': 'FreeBSD data',
  '83BD6B9D-7F41-11DC-BE0B-001560B84F0F': 'FreeBSD boot',
};

/** The known name of an MBR type id, "" when unknown. */
function mbrTypeName(id: number): string {
  return MBR_TYPE_NAMES[id] ?? '';
}

function hexId(id: number): string {
  return `0x${id.toString(16).padStart(2, '0')}`;
}

/** A GUID as written on disk (first three fields little-endian) in its usual upper-case text form. */
function guidText(b: Buffer): string {
  const hex = (buf: Buffer): string => buf.toString('hex');
  const le = (from: number, len: number): string => hex(Buffer.from(b.subarray(from, from + len)).reverse());
  return `${le(0, 4)}-${le(4, 2)}-${le(6, 2)}-${hex(b.subarray(8, 10))}-${hex(b.subarray(10, 16))}`.toUpperCase();
}

interface MbrEntry {
  status: number;
  type: number;
  lba: number;
  sectors: number;
}

function mbrEntries(sector: Buffer): MbrEntry[] {
  const out: MbrEntry[] = [];
  for (let i = 0; i < 4; i++) {
    const o = 446 + i * 16;
    out.push({ status: sector.readUInt8(o), type: sector.readUInt8(o + 4), lba: sector.readUInt32LE(o + 8), sectors: sector.readUInt32LE(o + 12) });
  }
  return out;
}

function hasBootSignature(sector: Buffer): boolean {
  return sector.length >= 512 && sector.readUInt8(510) === 0x55 && sector.readUInt8(511) === 0xaa;
}

/**
 * Reads the partition table of `device`. A disk without one (blank, or a filesystem written
 * straight onto it) is `scheme: "none"`; a table that is present but damaged throws
 * PartitionTableError (code PARTITION_TABLE_CORRUPT).
 */
export async function readPartitionTable(device: BlockDevice): Promise<PartitionTable> {
  const diskSize = device.size;
  const none: PartitionTable = { scheme: 'none', sectorSize: 512, diskId: '', diskSize, partitions: [], warnings: [] };
  if (diskSize < 512) return none;
  const mbr = await device.read(0, 512);
  if (!hasBootSignature(mbr)) return none;
  const entries = mbrEntries(mbr);
  // A boot sector of a filesystem without a table also ends in 55 AA; an MBR's status bytes
  // are 0x00 or 0x80.
  if (entries.some((e) => e.status !== 0 && e.status !== 0x80)) return none;
  if (entries.some((e) => e.type === MBR_PROTECTIVE)) return readGpt(device);
  if (entries.every((e) => e.type === 0)) return none;
  return readMbr(device, entries, mbr.readUInt32LE(440));
}

async function readMbr(device: BlockDevice, entries: MbrEntry[], signature: number): Promise<PartitionTable> {
  const sectorSize = 512;
  const diskSize = device.size;
  const partitions: Partition[] = [];
  const inDisk = (number: number, startLba: number, sectors: number): Partition['start'] => {
    const start = startLba * sectorSize;
    const end = start + sectors * sectorSize;
    if (startLba === 0 || end > diskSize) {
      throw new PartitionTableError(`MBR partition ${number} (sectors ${startLba}+${sectors}) lies outside the disk (${diskSize / sectorSize} sectors)`, { number, startLba, sectors, diskSize });
    }
    return start;
  };
  let extended: { lba: number; sectors: number } | null = null;
  entries.forEach((e, i) => {
    if (e.type === 0 || e.sectors === 0) return;
    const number = i + 1;
    partitions.push({ number, type: hexId(e.type), typeName: mbrTypeName(e.type), start: inDisk(number, e.lba, e.sectors), size: e.sectors * sectorSize, label: '' });
    if (MBR_EXTENDED.has(e.type)) {
      if (extended) throw new PartitionTableError('the MBR has more than one extended partition');
      extended = { lba: e.lba, sectors: e.sectors };
    }
  });
  if (extended) partitions.push(...(await readLogical(device, extended, inDisk)));
  return { scheme: 'mbr', sectorSize, diskId: signature ? `0x${signature.toString(16).padStart(8, '0')}` : '', diskSize, partitions, warnings: [] };
}

/**
 * The logical partitions of an extended partition: a chain of extended boot records, each
 * holding one logical partition (relative to itself) and a link to the next EBR (relative to
 * the extended partition's start).
 */
async function readLogical(device: BlockDevice, ext: { lba: number; sectors: number }, inDisk: (number: number, lba: number, sectors: number) => number): Promise<Partition[]> {
  const out: Partition[] = [];
  const seen = new Set<number>();
  let ebrLba = ext.lba;
  for (let number = 5; ; number++) {
    if (seen.has(ebrLba) || out.length >= MAX_LOGICAL) throw new PartitionTableError(`the chain of logical partitions loops back on itself at sector ${ebrLba}`, { sector: ebrLba });
    seen.add(ebrLba);
    if (ebrLba < ext.lba || ebrLba >= ext.lba + ext.sectors) throw new PartitionTableError(`a link to logical partition ${number} (sector ${ebrLba}) points outside the extended partition`, { sector: ebrLba });
    const ebr = await device.read(ebrLba * 512, 512);
    if (!hasBootSignature(ebr)) throw new PartitionTableError(`the extended boot record at sector ${ebrLba} has no 55 AA signature`, { sector: ebrLba });
    const [here, next] = mbrEntries(ebr);
    if (here && here.type !== 0 && here.sectors !== 0) {
      const lba = ebrLba + here.lba;
      if (lba + here.sectors > ext.lba + ext.sectors) throw new PartitionTableError(`logical partition ${number} ends beyond its extended partition`, { number });
      out.push({ number, type: hexId(here.type), typeName: mbrTypeName(here.type), start: inDisk(number, lba, here.sectors), size: here.sectors * 512, label: '' });
    } else number--;
    if (!next || next.type === 0 || next.sectors === 0) return out;
    ebrLba = ext.lba + next.lba;
  }
}

interface GptHeader {
  currentLba: number;
  backupLba: number;
  entriesLba: number;
  entryCount: number;
  entrySize: number;
  entriesCrc: number;
  firstUsable: number;
  lastUsable: number;
  diskGuid: string;
}

/** Parses and checks the GPT header at `lba`; a string says what is wrong with it. */
async function gptHeaderAt(device: BlockDevice, sectorSize: number, lba: number): Promise<GptHeader | string> {
  if ((lba + 1) * sectorSize > device.size) return `sector ${lba} is beyond the disk`;
  const s = await device.read(lba * sectorSize, sectorSize);
  if (s.toString('latin1', 0, 8) !== GPT_SIGNATURE) return 'no "EFI PART" signature';
  const headerSize = s.readUInt32LE(12);
  if (headerSize < 92 || headerSize > sectorSize) return `header size ${headerSize} is impossible`;
  const h = Buffer.from(s.subarray(0, headerSize));
  const stored = h.readUInt32LE(16);
  h.writeUInt32LE(0, 16);
  if (crc32(h) !== stored) return 'header CRC32 mismatch';
  const num = (o: number): number => Number(s.readBigUInt64LE(o));
  const header: GptHeader = {
    currentLba: num(24),
    backupLba: num(32),
    firstUsable: num(40),
    lastUsable: num(48),
    diskGuid: guidText(s.subarray(56, 72)),
    entriesLba: num(72),
    entryCount: s.readUInt32LE(80),
    entrySize: s.readUInt32LE(84),
    entriesCrc: s.readUInt32LE(88),
  };
  if (header.currentLba !== lba) return `header says it is at sector ${header.currentLba}`;
  if (header.entrySize < 128 || header.entrySize % 8 !== 0 || header.entryCount * header.entrySize > MAX_GPT_ENTRY_BYTES) {
    return `entry array of ${header.entryCount} × ${header.entrySize} bytes is impossible`;
  }
  return header;
}

async function gptEntries(device: BlockDevice, sectorSize: number, h: GptHeader): Promise<Buffer | string> {
  const bytes = h.entryCount * h.entrySize;
  if (h.entriesLba * sectorSize + bytes > device.size) return 'entry array lies beyond the disk';
  const b = await device.read(h.entriesLba * sectorSize, bytes);
  if (crc32(b) !== h.entriesCrc) return 'entry array CRC32 mismatch';
  return b;
}

async function readGpt(device: BlockDevice): Promise<PartitionTable> {
  const diskSize = device.size;
  // The usual sector size is 512; a disk formatted with 4 KiB logical sectors has its header at 4096.
  let sectorSize = 512;
  if (diskSize >= 2 * 4096) {
    const at512 = await device.read(512, 8);
    const at4k = await device.read(4096, 8);
    if (at512.toString('latin1') !== GPT_SIGNATURE && at4k.toString('latin1') === GPT_SIGNATURE) sectorSize = 4096;
  }
  const lastLba = Math.floor(diskSize / sectorSize) - 1;
  const warnings: string[] = [];
  const tryCopy = async (lba: number): Promise<{ header: GptHeader; entries: Buffer } | string> => {
    const header = await gptHeaderAt(device, sectorSize, lba);
    if (typeof header === 'string') return header;
    const entries = await gptEntries(device, sectorSize, header);
    return typeof entries === 'string' ? entries : { header, entries };
  };
  let table = await tryCopy(1);
  if (typeof table === 'string') {
    const primaryProblem = table;
    // The backup copy: its header in the disk's last sector, its entries just before it.
    const backup = await tryCopy(lastLba);
    if (typeof backup === 'string') {
      throw new PartitionTableError(`the GPT is damaged: primary: ${primaryProblem}; backup (sector ${lastLba}): ${backup}`, { primary: primaryProblem, backup });
    }
    warnings.push(`the primary GPT is damaged (${primaryProblem}); read from the backup at the end of the disk`);
    table = backup;
  }
  const { header, entries } = table;
  const partitions: Partition[] = [];
  for (let i = 0; i < header.entryCount; i++) {
    const e = entries.subarray(i * header.entrySize, (i + 1) * header.entrySize);
    if (e.subarray(0, 16).every((x) => x === 0)) continue;
    const number = i + 1;
    const first = Number(e.readBigUInt64LE(32));
    const last = Number(e.readBigUInt64LE(40));
    if (last < first || (last + 1) * sectorSize > diskSize) {
      throw new PartitionTableError(`GPT partition ${number} (sectors ${first}–${last}) lies outside the disk (${lastLba + 1} sectors)`, { number, first, last, diskSize });
    }
    const type = guidText(e.subarray(0, 16));
    const label = e.toString('utf16le', 56, 128).replace(/\0[\s\S]*$/, '');
    partitions.push({ number, type, typeName: GPT_TYPE_NAMES[type] ?? '', start: first * sectorSize, size: (last - first + 1) * sectorSize, label });
  }
  return { scheme: 'gpt', sectorSize, diskId: header.diskGuid, diskSize, partitions, warnings };
}

/** The partition numbered `number`, or a NOT_FOUND error naming the ones there are. */
export function findPartition(table: PartitionTable, number: number): Partition {
  const p = table.partitions.find((x) => x.number === number);
  if (p) return p;
  const have = table.partitions.map((x) => x.number).join(', ');
  throw new SnapbackError('NOT_FOUND', table.scheme === 'none' ? `partition ${number}: the disk has no partition table` : `partition ${number} does not exist (the disk's ${table.scheme.toUpperCase()} has ${have ? `partitions ${have}` : 'no partitions'})`, {
    number,
  });
}
