import { DebouncedInput } from './debounced-input.js';
export class ResetButton {
    clock;
    settings;
    handlers;
    input;
    longTimer = null;
    longFired = false;
    constructor(backend, clock, settings, handlers) {
        this.clock = clock;
        this.settings = settings;
        this.handlers = handlers;
        this.input = new DebouncedInput(backend, clock, { pin: settings.pin, activeLow: settings.activeLow, debounceMs: settings.debounceMs }, (pressed) => this.onDebounced(pressed));
    }
    get pin() {
        return this.settings.pin;
    }
    start() {
        this.input.start();
        // A button already held at start (or stuck) is not a press: wait for its release.
        this.longFired = this.input.active === true;
    }
    stop() {
        this.clearLongTimer();
        this.input.stop();
    }
    get pressed() {
        return this.input.active;
    }
    rawLevel() {
        return this.input.rawLevel();
    }
    onDebounced(pressed) {
        this.handlers.onChange?.(pressed);
        if (pressed) {
            this.longFired = false;
            this.clearLongTimer();
            this.armLongPress(this.settings.longPressMs);
            return;
        }
        this.clearLongTimer();
        if (this.longFired) {
            this.longFired = false;
            return;
        }
        this.handlers.onShortPress();
    }
    /**
     * Fires the long press after `ms`, unless the button is by then physically released (its
     * release still being debounced): that press was short, and the release will say so. If it
     * was only a glitch, the press still counts as long one debounce period later.
     */
    armLongPress(ms) {
        this.longTimer = this.clock.setTimeout(() => {
            this.longTimer = null;
            const raw = this.input.rawLevel();
            const physicallyPressed = raw === null ? false : (raw === 0) === this.settings.activeLow;
            if (!physicallyPressed) {
                this.armLongPress(this.settings.debounceMs);
                return;
            }
            this.longFired = true;
            this.handlers.onLongPress();
        }, ms);
    }
    clearLongTimer() {
        if (this.longTimer)
            this.clock.clearTimeout(this.longTimer);
        this.longTimer = null;
    }
}
//# sourceMappingURL=reset-button.js.map