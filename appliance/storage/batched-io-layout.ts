/**
 * The shared-memory layout between BatchedIo (batched-io.ts) and its worker thread
 * (batched-io-worker.ts): a control array of 32-bit integers, then one entry per slot.
 */

/** Indices in the control array. */
export const CTL = {
  /** Sequence number after the last request the main thread submitted (the worker waits on it). */
  SUBMITTED: 0,
  /** Sequence number after the last request the worker finished (the main thread waits on it). */
  COMPLETED: 1,
  /** 1 while the worker sleeps (the main thread wakes it only then). */
  SLEEPING: 2,
  /** Set to 1 to make the worker exit once the ring is empty. */
  STOP: 3,
} as const;

/** Where the entries start in the control array, and how many integers each has: op, fd, length, result. */
export const ENTRY = 8;
export const ENTRY_INTS = 4;

export const OP_READ = 0;
export const OP_WRITE = 1;

/** What the worker receives as workerData. */
export interface BatchedIoShared {
  control: SharedArrayBuffer;
  /** The file position of each slot's request (float64: positions beyond 2^31). */
  positions: SharedArrayBuffer;
  /** slots × slotBytes of request data. */
  data: SharedArrayBuffer;
  slots: number;
  slotBytes: number;
}
