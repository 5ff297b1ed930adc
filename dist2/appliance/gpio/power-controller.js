/**
 * Host power control through the ATX front-panel header, as PiKVM's ATX board does it: two
 * outputs "press" the host's power and reset buttons through optocouplers or relays, and the
 * host's power LED is read back (HostPowerSense). Every action goes through this one class,
 * under one mutex (two sequences never overlap: a second request gets BUSY), and every action
 * is written to the audit log with who asked and how it ended.
 *
 * Outputs are released (driven inactive) in a `finally`, so an aborted or failing sequence
 * never leaves a button held.
 */
import { SnapbackError } from '../errors.js';
import { childLogger } from '../logger.js';
import { sleep } from './clock.js';
import { Mutex } from './mutex.js';
const log = childLogger('gpio');
export const POWER_ACTIONS = ['on', 'off', 'force-off', 'reset', 'restore-now'];
/** Ends a sequence early with a result other than 'ok'. */
class Outcome extends Error {
    result;
    constructor(result, message) {
        super(message);
        this.result = result;
    }
}
export class PowerController {
    deps;
    mutex = new Mutex();
    running = null;
    failure = null;
    last = null;
    abort = new AbortController();
    started = false;
    exported = [];
    constructor(deps) {
        this.deps = deps;
    }
    get s() {
        return this.deps.settings;
    }
    /** Claims the output lines, driven inactive from the first instant. */
    start() {
        if (this.started)
            return;
        this.abort = new AbortController();
        try {
            for (const pin of [this.s.switchPin, this.s.resetPin]) {
                if (pin === null)
                    continue;
                this.deps.backend.export(pin, { direction: 'out', initial: this.level(false) });
                this.exported.push(pin);
            }
        }
        catch (err) {
            for (const pin of this.exported.splice(0))
                this.releaseLine(pin);
            throw err;
        }
        this.started = true;
    }
    /** Aborts a running sequence (its outputs are released) and frees the lines. */
    stop() {
        if (!this.started)
            return;
        this.started = false;
        this.abort.abort(new SnapbackError('CLOSED', 'GPIO stopped'));
        for (const pin of this.exported.splice(0))
            this.releaseLine(pin);
    }
    releaseLine(pin) {
        try {
            this.deps.backend.write(pin, this.level(false));
        }
        catch (err) {
            log.warn({ err, pin }, 'could not release a host button output');
        }
        this.deps.backend.unexport(pin);
    }
    get wired() {
        return { power: this.s.switchPin !== null, reset: this.s.resetPin !== null, led: this.deps.sense !== null };
    }
    /** Why `action` cannot run with this wiring, or null if it can. */
    unavailableReason(action) {
        if (!this.started)
            return 'GPIO is not running';
        if (action === 'reset')
            return this.s.resetPin === null ? 'the host reset output is not wired' : null;
        if (this.s.switchPin === null)
            return 'the host power output is not wired';
        if (action === 'restore-now' && !this.deps.sense)
            return 'restore now needs the host power LED input wired';
        return null;
    }
    get busy() {
        return this.running !== null;
    }
    get runningAction() {
        return this.running?.action ?? null;
    }
    status() {
        return {
            wired: this.wired,
            state: this.running ? 'busy' : this.failure ? 'error' : 'idle',
            running: this.running ? { ...this.running } : null,
            error: this.failure,
            last: this.last,
        };
    }
    /** The host was seen coming on again: an outstanding failure no longer stands. */
    noteHostOn() {
        if (!this.failure || this.running)
            return;
        this.failure = null;
        this.deps.onChange();
    }
    /**
     * Starts `action`. Throws at once (NOT_SUPPORTED if not wired, BUSY if another action runs);
     * otherwise returns the promise of the whole sequence, which never rejects: its outcome goes
     * to the status and the audit log. `reason`: why restore-now ends the session.
     */
    begin(action, actor, reason = 'host-power-off') {
        const unavailable = this.unavailableReason(action);
        if (unavailable)
            throw new SnapbackError('NOT_SUPPORTED', unavailable, { action });
        const release = this.mutex.acquire(actor, action, this.deps.clock.now());
        this.running = { action, actor, phase: null };
        const startedAt = this.deps.clock.now();
        this.deps.audit({ actor, action: `gpio.power.${action}`, details: { result: 'started' } });
        this.deps.onChange();
        const signal = this.abort.signal;
        return this.sequence(action, actor, reason, signal).then(() => this.finish(action, actor, 'ok', startedAt, release), (err) => {
            if (err instanceof Outcome)
                return this.finish(action, actor, err.result, startedAt, release, err.message);
            if (signal.aborted)
                return this.finish(action, actor, 'aborted', startedAt, release, 'GPIO stopped');
            const message = err instanceof Error ? err.message : String(err);
            return this.finish(action, actor, 'failed', startedAt, release, message);
        });
    }
    finish(action, actor, result, startedAt, release, message) {
        this.running = null;
        release();
        const at = new Date().toISOString();
        this.last = { action, actor, result, at };
        if (result === 'failed')
            this.failure = { action, message: message ?? 'failed', at };
        else if (result === 'ok')
            this.failure = null;
        const durationMs = Math.round(this.deps.clock.now() - startedAt);
        this.deps.audit({
            actor,
            action: `gpio.power.${action}`,
            details: { result, durationMs, ...(message ? { message } : {}) },
        });
        if (result === 'failed')
            log.error({ action, actor, message }, 'host power action failed');
        else
            log.info({ action, actor, result, message }, 'host power action finished');
        this.deps.onChange();
        return result;
    }
    sequence(action, actor, reason, signal) {
        switch (action) {
            case 'on':
                return this.powerOn(signal);
            case 'off':
                return this.gracefulOff(signal);
            case 'force-off':
                return this.forcedOff(signal);
            case 'reset':
                return this.reset(signal);
            case 'restore-now':
                return this.restoreNow(actor, reason, signal);
        }
    }
    // ---- single actions ----
    async powerOn(signal) {
        if (this.deps.sense?.state === 'on')
            throw new Outcome('skipped', 'the host is already on');
        await this.press(this.s.switchPin, this.s.pressMs, 'pressing-power', signal);
    }
    async gracefulOff(signal) {
        if (this.deps.sense?.state === 'off')
            throw new Outcome('skipped', 'the host is already off');
        await this.press(this.s.switchPin, this.s.pressMs, 'pressing-power', signal);
    }
    async forcedOff(signal) {
        if (this.deps.sense?.state === 'off')
            throw new Outcome('skipped', 'the host is already off');
        await this.press(this.s.switchPin, this.s.forceOffMs, 'holding-power', signal);
    }
    async reset(signal) {
        await this.press(this.s.resetPin, this.s.resetPressMs, 'pressing-reset', signal);
    }
    // ---- restore now ----
    /**
     * Graceful off → LED dark (timeout: forced off) → end the session (in eager mode the service
     * restores before this resolves) → power on → LED lit. A host that cannot be powered off
     * keeps its session (never restore under a live host); one that does not come back is
     * reported, not retried.
     */
    async restoreNow(actor, reason, signal) {
        const sense = this.deps.sense;
        if (!sense)
            throw new Outcome('failed', 'restore now needs the host power LED input wired');
        if (sense.state === 'dark') {
            // Going off, off for less than hostOffAfterMs, or asleep: let the LED tell.
            this.phase('waiting-for-off');
            await sense.waitFor('off', this.s.hostOffAfterMs + this.s.ledDebounceMs * 2, signal);
        }
        if (sense.state !== 'off') {
            await this.press(this.s.switchPin, this.s.pressMs, 'pressing-power', signal);
            this.phase('waiting-for-off');
            const off = await sense.waitFor('off', this.s.gracefulOffTimeoutMs, signal);
            this.throwIfAborted(signal);
            if (!off) {
                this.deps.audit({
                    actor,
                    action: 'gpio.power.forced-off',
                    details: { why: `graceful off did not finish within ${this.s.gracefulOffTimeoutMs} ms` },
                });
                log.warn('graceful off timed out: forcing the host off');
                await this.press(this.s.switchPin, this.s.forceOffMs, 'forcing-off', signal);
                this.phase('waiting-for-forced-off');
                const forced = await sense.waitFor('off', this.s.forcedOffTimeoutMs + this.s.hostOffAfterMs, signal);
                this.throwIfAborted(signal);
                if (!forced) {
                    throw new Outcome('failed', 'the host did not power off, even when forced; its session was not ended');
                }
            }
        }
        this.phase('ending-session');
        await this.deps.endSession(reason, `restore now by ${actor}`);
        this.throwIfAborted(signal);
        await this.press(this.s.switchPin, this.s.pressMs, 'powering-on', signal);
        this.phase('waiting-for-on');
        const on = await sense.waitFor('on', this.s.powerOnTimeoutMs, signal);
        this.throwIfAborted(signal);
        if (!on) {
            throw new Outcome('failed', `the host did not come back on within ${this.s.powerOnTimeoutMs} ms after the restore (not retried)`);
        }
    }
    // ---- primitives ----
    /** Holds a button output active for `ms`, releasing it whatever happens. */
    async press(pin, ms, phase, signal) {
        if (pin === null)
            throw new Outcome('failed', 'output not wired');
        this.throwIfAborted(signal);
        this.phase(phase);
        this.deps.backend.write(pin, this.level(true));
        try {
            await sleep(this.deps.clock, ms, signal);
        }
        finally {
            // After stop() the line is already released (and maybe unexported).
            if (this.exported.includes(pin))
                this.deps.backend.write(pin, this.level(false));
        }
    }
    phase(phase) {
        if (!this.running)
            return;
        this.running.phase = phase;
        this.deps.onChange();
    }
    throwIfAborted(signal) {
        if (signal.aborted)
            throw signal.reason instanceof Error ? signal.reason : new Error('aborted');
    }
    level(active) {
        return active !== this.s.outputsActiveLow ? 1 : 0;
    }
}
export function isPowerAction(value) {
    return typeof value === 'string' && POWER_ACTIONS.includes(value);
}
//# sourceMappingURL=power-controller.js.map