import { DebouncedInput } from './debounced-input.js';
/** Transitions within BLINK_WINDOW_MS that make the LED count as blinking. */
export const BLINK_TRANSITIONS = 6;
export const BLINK_WINDOW_MS = 10_000;
export class HostPowerSense {
    clock;
    options;
    handlers;
    input;
    current = 'unknown';
    seenOn = false;
    offTimer = null;
    darkSinceAt = null;
    recent = [];
    blinkingNow = false;
    steadyTimer = null;
    waiters = new Set();
    constructor(backend, clock, options, handlers) {
        this.clock = clock;
        this.options = options;
        this.handlers = handlers;
        this.input = new DebouncedInput(backend, clock, { pin: options.pin, activeLow: options.activeLow, debounceMs: options.debounceMs }, (lit) => this.onLed(lit));
    }
    start() {
        if (this.input.started)
            return;
        this.input.start();
        this.seenOn = false;
        if (this.input.active) {
            this.seenOn = true;
            this.setState('on');
        }
        else {
            this.goDark();
        }
    }
    stop() {
        if (!this.input.started)
            return;
        this.input.stop();
        this.clearTimers();
        this.current = 'unknown';
        this.darkSinceAt = null;
        this.blinkingNow = false;
        this.recent = [];
        for (const w of this.waiters)
            w.resolve(false);
        this.waiters.clear();
    }
    get state() {
        return this.current;
    }
    get blinking() {
        return this.blinkingNow;
    }
    /** Clock time at which the LED went dark (null while lit or unknown). */
    get darkSince() {
        return this.darkSinceAt;
    }
    get lit() {
        return this.input.active;
    }
    rawLevel() {
        return this.input.rawLevel();
    }
    /**
     * Resolves true once the host is on (LED lit) or off (dark for hostOffAfterMs), false after
     * `timeoutMs` or when the sense stops or `signal` aborts.
     */
    waitFor(want, timeoutMs, signal) {
        if (this.current === want)
            return Promise.resolve(true);
        if (this.current === 'unknown' || signal?.aborted)
            return Promise.resolve(false);
        return new Promise((resolve) => {
            const finish = (reached) => {
                this.clock.clearTimeout(timer);
                signal?.removeEventListener('abort', onAbort);
                this.waiters.delete(waiter);
                resolve(reached);
            };
            const waiter = { want, resolve: finish };
            const onAbort = () => finish(false);
            const timer = this.clock.setTimeout(() => finish(false), timeoutMs);
            signal?.addEventListener('abort', onAbort, { once: true });
            this.waiters.add(waiter);
        });
    }
    onLed(lit) {
        this.noteTransition();
        if (lit) {
            this.seenOn = true;
            if (this.offTimer)
                this.clock.clearTimeout(this.offTimer);
            this.offTimer = null;
            this.darkSinceAt = null;
            if (!this.blinkingNow)
                this.handlers.record('power LED on');
            this.setState('on');
        }
        else {
            if (!this.blinkingNow)
                this.handlers.record('power LED dark');
            this.goDark();
        }
    }
    goDark() {
        this.darkSinceAt = this.clock.now();
        this.setState('dark');
        if (this.offTimer)
            this.clock.clearTimeout(this.offTimer);
        this.offTimer = this.clock.setTimeout(() => {
            this.offTimer = null;
            const sinceStart = !this.seenOn;
            this.endBlinking(null);
            if (!sinceStart)
                this.handlers.record(`host off: power LED dark for ${this.options.hostOffAfterMs} ms`);
            this.setState('off');
            this.handlers.onHostOff(sinceStart);
        }, this.options.hostOffAfterMs);
    }
    /** Counts a transition; enters "blinking" when they come fast, leaves it once steady. */
    noteTransition() {
        const now = this.clock.now();
        this.recent = this.recent.filter((t) => now - t < BLINK_WINDOW_MS);
        this.recent.push(now);
        if (!this.blinkingNow && this.recent.length >= BLINK_TRANSITIONS) {
            this.blinkingNow = true;
            this.handlers.record('power LED blinking (host asleep?): transitions not recorded until it is steady');
            this.handlers.onChange();
        }
        if (this.blinkingNow) {
            if (this.steadyTimer)
                this.clock.clearTimeout(this.steadyTimer);
            this.steadyTimer = this.clock.setTimeout(() => {
                this.steadyTimer = null;
                this.endBlinking(this.input.active ? 'power LED steady on' : 'power LED steady dark');
            }, BLINK_WINDOW_MS);
        }
    }
    endBlinking(record) {
        if (this.steadyTimer)
            this.clock.clearTimeout(this.steadyTimer);
        this.steadyTimer = null;
        if (!this.blinkingNow)
            return;
        this.blinkingNow = false;
        this.recent = [];
        if (record)
            this.handlers.record(record);
        this.handlers.onChange();
    }
    setState(state) {
        const changed = state !== this.current;
        this.current = state;
        for (const w of [...this.waiters])
            if (w.want === state)
                w.resolve(true);
        if (changed)
            this.handlers.onChange();
    }
    clearTimers() {
        if (this.offTimer)
            this.clock.clearTimeout(this.offTimer);
        if (this.steadyTimer)
            this.clock.clearTimeout(this.steadyTimer);
        this.offTimer = null;
        this.steadyTimer = null;
    }
}
//# sourceMappingURL=host-power-sense.js.map