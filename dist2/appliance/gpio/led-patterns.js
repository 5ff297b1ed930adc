const on = (ms) => ({ on: true, ms });
const off = (ms) => ({ on: false, ms });
export const LED_PATTERNS = {
    off: { name: 'off', meaning: 'daemon not running (or GPIO stopped)', steps: [off(Infinity)] },
    steady: { name: 'steady', meaning: 'frozen and ready', steps: [on(Infinity)] },
    'slow-blink': {
        name: 'slow-blink',
        meaning: 'restoring: a session is ending or the background restore is running',
        steps: [on(1000), off(1000)],
    },
    'double-blink': {
        name: 'double-blink',
        meaning: 'thawed (maintenance): changes are kept',
        steps: [on(150), off(150), on(150), off(1050)],
    },
    'fast-blink': {
        name: 'fast-blink',
        meaning: 'error: see the web UI (disk I/O errors, USB gadget error, host power failure)',
        steps: [on(100), off(100)],
    },
    warning: {
        name: 'warning',
        meaning: 'a long press was taken: restore now follows (press again to cancel)',
        steps: [on(100), off(100), on(100), off(100), on(100), off(500)],
    },
};
/** Total length of one cycle of a repeating pattern (Infinity for a held one). */
export function patternPeriod(pattern) {
    return pattern.steps.reduce((sum, s) => sum + s.ms, 0);
}
/** Whether `pattern`, started at time 0, has the LED lit at time `t` (t ≥ 0). */
export function patternLitAt(pattern, t) {
    const first = pattern.steps[0];
    if (!first)
        return false;
    if (pattern.steps.length === 1)
        return first.on;
    let rest = t % patternPeriod(pattern);
    for (const step of pattern.steps) {
        if (rest < step.ms)
            return step.on;
        rest -= step.ms;
    }
    return first.on;
}
/** The pattern the LED shows, from the most urgent condition down. */
export function choosePattern(status, local) {
    if (local.warning)
        return 'warning';
    if (local.error)
        return 'fast-blink';
    if (!status)
        return 'fast-blink'; // the service cannot tell its status: that is an error
    if (status.disk.ioErrors > 0 || (status.host.gadget?.lastError ?? null) !== null)
        return 'fast-blink';
    const ending = status.host.gadget?.medium === 'ejected';
    if (local.restoring || status.hydration.running || ending)
        return 'slow-blink';
    if (status.mode === 'thawed')
        return 'double-blink';
    return 'steady';
}
//# sourceMappingURL=led-patterns.js.map