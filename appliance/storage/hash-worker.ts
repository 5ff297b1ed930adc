/**
 * A hash worker thread of the HashPool: digests the regions of the bytes it is sent (a view of
 * shared memory, or a transferred copy) and answers with the digests, so hashing never runs on
 * the event loop that serves the host.
 */
import { parentPort } from 'node:worker_threads';
import { DIGEST_LENGTHS, digestRegionsInto, isHashName } from './hash-functions.js';

export interface HashRequest {
  id: number;
  hash: string;
  regionSize: number;
  /** The bytes: a range of shared memory, or a buffer transferred to this thread. */
  data: { sab: SharedArrayBuffer; offset: number; length: number } | { ab: ArrayBuffer };
}

export type HashResponse = { ready: true } | { id: number; digests: ArrayBuffer } | { id: number; error: string };

const port = parentPort;
if (port) {
  port.on('message', (req: HashRequest) => {
    try {
      if (!isHashName(req.hash)) throw new Error(`unknown hash ${req.hash}`);
      const d = req.data;
      const bytes = 'sab' in d ? new Uint8Array(d.sab, d.offset, d.length) : new Uint8Array(d.ab);
      const count = Math.ceil(bytes.length / req.regionSize);
      const out = new ArrayBuffer(count * DIGEST_LENGTHS[req.hash]);
      digestRegionsInto(req.hash, bytes, req.regionSize, new Uint8Array(out));
      const res: HashResponse = { id: req.id, digests: out };
      port.postMessage(res, [out]);
    } catch (err) {
      const res: HashResponse = { id: req.id, error: (err as Error).message };
      port.postMessage(res);
    }
  });
  const ready: HashResponse = { ready: true };
  port.postMessage(ready);
}
