/**
 * A non-queueing mutex: one holder at a time, and whoever finds it held is told so at once
 * (an operator pressing "power off" during a running restore gets "busy", not a queued
 * surprise minutes later).
 */
import { SnapbackError } from '../errors.js';
export class Mutex {
    current = null;
    get holder() {
        return this.current;
    }
    /** Takes the lock or throws BUSY; returns the release function (safe to call twice). */
    acquire(owner, what, now) {
        if (this.current) {
            throw new SnapbackError('BUSY', `busy: ${this.current.what} (by ${this.current.owner}) is running`, {
                running: this.current.what,
                by: this.current.owner,
            });
        }
        const mine = { owner, what, since: now };
        this.current = mine;
        return () => {
            if (this.current === mine)
                this.current = null;
        };
    }
}
//# sourceMappingURL=mutex.js.map