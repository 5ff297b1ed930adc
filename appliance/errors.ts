/**
 * Every error Snapback raises on purpose is a SnapbackError with a machine-readable `code`.
 * Callers (CLI, API, NBD server) map codes to exit statuses, HTTP statuses and NBD errnos
 * without parsing messages.
 */
export type ErrorCode =
  | 'BAD_ARGUMENT' // a user gave a bad flag, value or request
  | 'OUT_OF_RANGE' // an offset/length outside the device
  | 'READ_ONLY' // a write to something that cannot be written
  | 'NOT_SUPPORTED' // the device cannot do that operation
  | 'CLOSED' // the device or component is closed
  | 'IO_ERROR' // the underlying storage failed (EIO and friends)
  | 'NO_SPACE' // the underlying storage is full (ENOSPC)
  | 'SIZE_MISMATCH' // model, disk and log disagree on sizes
  | 'LOG_CORRUPT' // no valid write-log header
  | 'LOG_FOREIGN' // the write log was made for another model
  | 'MODEL_CORRUPT' // model bytes do not match the manifest
  | 'MANIFEST_INVALID' // a manifest file that cannot be used
  | 'PARTITION_TABLE_CORRUPT' // a disk's MBR or GPT that cannot be read (bad checksum, entries beyond the disk)
  | 'STATE_EXISTS' // init into a state directory that is already initialised
  | 'STATE_MISSING' // a state directory that was never initialised
  | 'STATE_LOCKED' // the state directory is in use by a running daemon
  | 'STATE_CORRUPT' // the state file (settings, users, history) cannot be read or is from a newer version
  | 'VERIFY_FAILED' // a verification found a difference it should not have
  | 'DAEMON_UNREACHABLE' // the CLI cannot reach the daemon
  | 'BUSY' // an operation that conflicts with one in progress
  | 'NOT_FOUND' // a named thing (a model, a file) that does not exist
  | 'ALREADY_EXISTS' // a name or a model that is taken already
  | 'IN_USE' // a model (or other thing) that cannot be removed while it is used
  | 'REMOTE_ERROR'; // a remote system (a model URL) failed, could not be reached, or sent something unusable

export class SnapbackError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SnapbackError';
    this.code = code;
    this.details = details;
  }
}

/** Turns an fs error (EIO, ENOSPC, …) into a SnapbackError, keeping the original as cause. */
export function fromSystemError(err: unknown, what: string): SnapbackError {
  if (err instanceof SnapbackError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
    return new SnapbackError('NO_SPACE', `${what}: no space left on the device`, { errno: code }, { cause: err });
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new SnapbackError('IO_ERROR', `${what}: ${msg}`, { errno: code }, { cause: err });
}

export function isSnapbackError(err: unknown, code?: ErrorCode): err is SnapbackError {
  return err instanceof SnapbackError && (code === undefined || err.code === code);
}
