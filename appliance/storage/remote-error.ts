/**
 * A failed request to the remote system a model comes from (http-range-source.ts); `retryable`
 * when trying again may succeed (the network gone, a reset, a 5xx), not when the server refuses
 * or answers wrongly.
 */
import { SnapbackError } from '../errors.js';

export class RemoteError extends SnapbackError {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status: number | null = null,
    options?: { cause?: unknown },
    details?: Record<string, unknown>,
  ) {
    super('REMOTE_ERROR', message, { retryable, status, ...details }, options);
  }
}
