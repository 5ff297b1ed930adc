export class SnapbackError extends Error {
    code;
    details;
    constructor(code, message, details, options) {
        super(message, options);
        this.name = 'SnapbackError';
        this.code = code;
        this.details = details;
    }
}
/** A verification that found a difference: carries what was expected and what was found. */
export class VerificationError extends SnapbackError {
    expected;
    actual;
    constructor(message, expected, actual, details) {
        super('VERIFY_FAILED', message, { expected, actual, ...details });
        this.name = 'VerificationError';
        this.expected = expected;
        this.actual = actual;
    }
}
/** Turns an fs error (EIO, ENOSPC, …) into a SnapbackError, keeping the original as cause. */
export function fromSystemError(err, what) {
    if (err instanceof SnapbackError)
        return err;
    const code = err?.code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EFBIG') {
        return new SnapbackError('NO_SPACE', `${what}: no space left on the device`, { errno: code }, { cause: err });
    }
    const msg = err instanceof Error ? err.message : String(err);
    return new SnapbackError('IO_ERROR', `${what}: ${msg}`, { errno: code }, { cause: err });
}
export function isSnapbackError(err, code) {
    return err instanceof SnapbackError && (code === undefined || err.code === code);
}
//# sourceMappingURL=errors.js.map