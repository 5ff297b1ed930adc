/**
 * When the host going off ends its session. The power LED dark for hostOffAfterMs ends it
 * (reason 'host-power-off') if so configured; a short press of the reset button asks for the
 * end "as soon as the host is off": at once when it is off or its power LED is not wired,
 * otherwise armed for its next power-off (reason 'button'). A restore-now sequence ends the
 * session itself, so the LED does not end it a second time meanwhile.
 */
import { childLogger } from '../logger.js';
const log = childLogger('gpio');
export class SessionEndPolicy {
    deps;
    armedEnd = null;
    constructor(deps) {
        this.deps = deps;
    }
    get armed() {
        return this.armedEnd;
    }
    /** The short press: end the session once the host is off. */
    endWhenHostOff(actor) {
        const sense = this.deps.sense();
        if (!sense || sense.state === 'off') {
            this.deps.audit({
                actor,
                action: 'gpio.session.end',
                details: { why: sense ? 'the host is off' : 'no power LED wired: ending at once' },
            });
            this.end('button', `${actor}: short press`);
            return;
        }
        if (this.armedEnd)
            return;
        this.armedEnd = { by: actor, since: new Date().toISOString() };
        this.deps.audit({ actor, action: 'gpio.session.end-armed', details: { hostPower: sense.state } });
        log.info({ actor }, 'session end armed for the next host power-off');
        this.deps.onChange();
    }
    /** Clears the armed end (any session end satisfies it). */
    disarm() {
        if (!this.armedEnd)
            return;
        this.armedEnd = null;
        this.deps.onChange();
    }
    /** The host has been off for hostOffAfterMs (HostPowerSense.onHostOff). */
    onHostOff(sinceStart) {
        if (this.deps.sequenceOwnsSessionEnd())
            return;
        const armed = this.armedEnd;
        if (armed) {
            this.armedEnd = null;
            this.deps.audit({ actor: 'power-led', action: 'gpio.session.end', details: { why: 'armed end: host off', armedBy: armed.by } });
            this.end('button', `armed by ${armed.by}; the host powered off`);
            return;
        }
        // Dark since the daemon started: the daemon's start already began a fresh session.
        if (sinceStart || !this.deps.endSessionOnPowerOff)
            return;
        this.deps.audit({ actor: 'power-led', action: 'gpio.session.end', details: { why: 'host powered off' } });
        this.end('host-power-off', 'the host power LED went dark');
    }
    end(reason, note) {
        this.deps.ender.end(reason, note).catch(() => {
            // recorded by the ender (status, log)
        });
    }
}
//# sourceMappingURL=session-end-policy.js.map