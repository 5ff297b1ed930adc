/**
 * What makes a model (a local image or one arriving from a URL) read-only as a BlockDevice: it
 * is only ever read through the storage layers; restores and captures replace it whole.
 */
import type { DeviceCapabilities } from './block-device.js';
import { SnapbackError } from '../errors.js';

export const MODEL_CAPABILITIES: DeviceCapabilities = Object.freeze({
  canWrite: false,
  canFlush: false,
  canFua: false,
  canTrim: false,
  canZero: false,
  preferredBlockSize: 4096,
});

/** The answer to a model's mutating calls (write, trim, write-zeroes). */
export function refuseModelWrite(imagePath: string): Promise<never> {
  return Promise.reject(new SnapbackError('READ_ONLY', `the model ${imagePath} is never written through the storage layers`));
}
