import { LED_PATTERNS } from './led-patterns.js';
export class StatusLed {
    backend;
    clock;
    options;
    current = LED_PATTERNS.off;
    step = 0;
    timer = null;
    started = false;
    isLit = false;
    constructor(backend, clock, options) {
        this.backend = backend;
        this.clock = clock;
        this.options = options;
    }
    start() {
        if (this.started)
            return;
        this.backend.export(this.options.pin, { direction: 'out', initial: this.level(false) });
        this.started = true;
        this.isLit = false;
        const pattern = this.current;
        this.current = LED_PATTERNS.off;
        this.show(pattern.name);
    }
    /** Turns the LED off and releases the line. */
    stop() {
        if (!this.started)
            return;
        this.clearTimer();
        this.backend.write(this.options.pin, this.level(false));
        this.backend.unexport(this.options.pin);
        this.started = false;
        this.isLit = false;
    }
    get pattern() {
        return this.current.name;
    }
    get lit() {
        return this.isLit;
    }
    show(name) {
        if (name === this.current.name)
            return;
        this.current = LED_PATTERNS[name];
        if (!this.started)
            return;
        this.clearTimer();
        this.step = 0;
        this.playStep();
    }
    playStep() {
        const step = this.current.steps[this.step];
        if (!step)
            return;
        this.isLit = step.on;
        this.backend.write(this.options.pin, this.level(step.on));
        if (this.current.steps.length === 1)
            return;
        this.timer = this.clock.setTimeout(() => {
            this.timer = null;
            this.step = (this.step + 1) % this.current.steps.length;
            this.playStep();
        }, step.ms);
    }
    clearTimer() {
        if (this.timer)
            this.clock.clearTimeout(this.timer);
        this.timer = null;
    }
    level(lit) {
        return lit !== this.options.activeLow ? 1 : 0;
    }
}
//# sourceMappingURL=status-led.js.map