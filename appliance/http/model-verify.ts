/**
 * "Verify now" for the active model (the web UI's Model page). This is an optional extension of
 * ApplianceService: a service that implements these two methods and emits 'model-verify' gets
 * the button; one that does not answers 501 NOT_SUPPORTED.
 *
 * Proposed for appliance/session/appliance-service.ts:
 *   startModelVerify(): ModelVerifyStatus   // starts hashing every region of the model against
 *                                           // its manifest in the background; BUSY if running
 *   modelVerifyStatus(): ModelVerifyStatus  // the running or the last verification
 *   event 'model-verify' (status: ModelVerifyStatus) — progress (throttled) and the result
 */
import type { ApplianceService } from '../session/appliance-service.js';

export interface ModelVerifyStatus {
  state: 'idle' | 'running' | 'passed' | 'failed';
  startedAt: string | null;
  finishedAt: string | null;
  regionsTotal: number;
  regionsDone: number;
  bytesPerSecond: number;
  /** Regions whose hash did not match the manifest (the first ones found). */
  badRegions: number[];
  /** Why a verification failed other than a mismatch (I/O error, …). */
  error: string | null;
}

export interface ModelVerifyCapable {
  startModelVerify(): ModelVerifyStatus;
  modelVerifyStatus(): ModelVerifyStatus;
}

export function canVerifyModel(s: ApplianceService): s is ApplianceService & ModelVerifyCapable {
  const x = s as unknown as Partial<ModelVerifyCapable>;
  return typeof x.startModelVerify === 'function' && typeof x.modelVerifyStatus === 'function';
}
