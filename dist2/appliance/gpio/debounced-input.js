export class DebouncedInput {
    backend;
    clock;
    options;
    onChange;
    stable = null;
    timer = null;
    onEdge = () => this.restartSettle();
    constructor(backend, clock, options, 
    /** Called after each debounced change, with the new state. */
    onChange) {
        this.backend = backend;
        this.clock = clock;
        this.options = options;
        this.onChange = onChange;
    }
    /** Claims the line and reads its current level (reported by `active`, not by onChange). */
    start() {
        if (this.stable !== null)
            return;
        this.backend.export(this.options.pin, { direction: 'in', edge: 'both' });
        this.stable = this.backend.read(this.options.pin);
        this.backend.watch(this.options.pin, this.onEdge);
    }
    stop() {
        if (this.stable === null)
            return;
        if (this.timer)
            this.clock.clearTimeout(this.timer);
        this.timer = null;
        this.backend.unwatch(this.options.pin, this.onEdge);
        this.backend.unexport(this.options.pin);
        this.stable = null;
    }
    get started() {
        return this.stable !== null;
    }
    /** The debounced state: true = pressed / lit; null before start. */
    get active() {
        return this.stable === null ? null : this.isActive(this.stable);
    }
    /** The physical level of the line right now (not debounced); null before start. */
    rawLevel() {
        return this.stable === null ? null : this.backend.read(this.options.pin);
    }
    restartSettle() {
        if (this.timer)
            this.clock.clearTimeout(this.timer);
        this.timer = this.clock.setTimeout(() => {
            this.timer = null;
            if (this.stable === null)
                return;
            const level = this.backend.read(this.options.pin);
            if (level === this.stable)
                return;
            this.stable = level;
            this.onChange(this.isActive(level));
        }, this.options.debounceMs);
    }
    isActive(level) {
        return this.options.activeLow ? level === 0 : level === 1;
    }
}
//# sourceMappingURL=debounced-input.js.map