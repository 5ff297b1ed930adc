/**
 * Reading which model the write log belongs to without opening the log: the newer valid header
 * slot's model id. That id is what makes a model the active one (the library lists it so; the
 * engine opens it), so the header write that changes it is what switches models.
 */
import { open } from 'node:fs/promises';
import { decodeHeader, SECTOR, SLOT_SIZE } from './region-log.js';
import { fromSystemError } from '../errors.js';

/** The model id the log at `path` names; null when there is no log (yet) or no valid header. */
export async function readLogModelId(path: string): Promise<string | null> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, `reading the write log ${path}`);
  }
  try {
    const slot = async (at: number) => {
      const b = Buffer.alloc(SECTOR);
      const { bytesRead } = await fh.read(b, 0, SECTOR, at);
      return decodeHeader(b.subarray(0, bytesRead));
    };
    const a = await slot(0);
    const b = await slot(SLOT_SIZE);
    const ha = 'header' in a ? a.header : null;
    const hb = 'header' in b ? b.header : null;
    const h = ha && hb ? (hb.generation > ha.generation ? hb : ha) : (ha ?? hb);
    return h ? h.modelId : null;
  } finally {
    await fh.close();
  }
}
