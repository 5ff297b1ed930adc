/**
 * "Verify now" for the active model: hashes every region of the model image against its
 * manifest in the background (on the model's hash workers, several regions at once), and
 * reports progress (throttled) and the result. One run at a time.
 */
import type { ModelVerifyStatus } from '../api/model.js';
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ModelImage } from './model-image.js';

const log = childLogger('model');
const PROGRESS_INTERVAL_MS = 250;
const MAX_BAD_REGIONS_LISTED = 100;

export class ModelVerification {
  private readonly onChange: (status: ModelVerifyStatus) => void;
  private current: ModelVerifyStatus = { state: 'idle', startedAt: null, finishedAt: null, regionsTotal: 0, regionsDone: 0, bytesPerSecond: 0, badRegions: [], error: null };
  private timer: NodeJS.Timeout | null = null;

  /** `onChange` gets the progress (at most every 250 ms) and the result (at once). */
  constructor(onChange: (status: ModelVerifyStatus) => void) {
    this.onChange = onChange;
  }

  /** Starts verifying `model`; BUSY while a verification runs. */
  start(model: Pick<ModelImage, 'manifest' | 'verifyRegions'>): ModelVerifyStatus {
    if (this.current.state === 'running') throw new SnapbackError('BUSY', 'a model verification is already running');
    const total = model.manifest.regionCount;
    const v: ModelVerifyStatus = { state: 'running', startedAt: new Date().toISOString(), finishedAt: null, regionsTotal: total, regionsDone: 0, bytesPerSecond: 0, badRegions: [], error: null };
    this.current = v;
    const t0 = Date.now();
    void (async () => {
      let bad = 0;
      try {
        const res = await model.verifyRegions({
          recheck: true,
          onProgress: (done) => {
            v.regionsDone = done;
            v.bytesPerSecond = Math.round((done * model.manifest.regionSize) / Math.max(0.001, (Date.now() - t0) / 1000));
            this.changed();
          },
          onBad: (region) => {
            if (v.badRegions.length < MAX_BAD_REGIONS_LISTED) v.badRegions.push(region);
          },
        });
        bad = res.bad.length;
        v.badRegions = [...res.bad].sort((a, b) => a - b).slice(0, MAX_BAD_REGIONS_LISTED);
        v.regionsDone = total;
        v.state = bad === 0 ? 'passed' : 'failed';
      } catch (err) {
        v.state = 'failed';
        v.error = (err as Error).message;
      }
      v.finishedAt = new Date().toISOString();
      log.info({ state: v.state, bad, error: v.error }, 'model verification finished');
      this.changed(true);
    })();
    return this.status();
  }

  /** The running or the last verification. */
  status(): ModelVerifyStatus {
    return { ...this.current, badRegions: [...this.current.badRegions] };
  }

  private changed(now = false): void {
    if (now) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      this.onChange(this.status());
      return;
    }
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.onChange(this.status());
    }, PROGRESS_INTERVAL_MS);
    this.timer.unref();
  }
}
