/**
 * The GPIO side's one way to end the host session: a request made while another is in flight
 * joins it (a button press and the power LED agreeing must not end two sessions), and the
 * component can show "restoring" on the LED while it runs.
 */
import { childLogger } from '../logger.js';
const log = childLogger('gpio');
export class SessionEnder {
    service;
    onChange;
    inFlight = null;
    failure = null;
    constructor(service, onChange) {
        this.service = service;
        this.onChange = onChange;
    }
    get ending() {
        return this.inFlight !== null;
    }
    /** The last failed end, until an end succeeds. */
    get error() {
        return this.failure;
    }
    end(reason, note) {
        if (this.inFlight)
            return this.inFlight;
        log.info({ reason, note }, 'ending the host session');
        const run = this.service.endSession(reason, note).then((record) => {
            this.inFlight = null;
            this.failure = null;
            this.onChange();
            return record;
        }, (err) => {
            this.inFlight = null;
            const message = err instanceof Error ? err.message : String(err);
            this.failure = { message: `ending the session failed: ${message}`, at: new Date().toISOString() };
            log.error({ err, reason }, 'ending the host session failed');
            this.onChange();
            throw err;
        });
        this.inFlight = run;
        this.onChange();
        return run;
    }
}
//# sourceMappingURL=session-ender.js.map