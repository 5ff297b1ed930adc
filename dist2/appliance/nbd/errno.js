/**
 * From a storage error to the NBD error value a client sees. SnapbackError codes map one to
 * one; anything else (a bug, an fs error that escaped a layer) becomes NBD_EIO.
 */
import { isSnapbackError } from '../errors.js';
import { NBD_EINVAL, NBD_EIO, NBD_ENOSPC, NBD_ENOTSUP, NBD_EPERM } from './protocol.js';
export function nbdErrnoFor(err) {
    if (!isSnapbackError(err))
        return NBD_EIO;
    switch (err.code) {
        case 'OUT_OF_RANGE':
            return NBD_EINVAL;
        case 'NO_SPACE':
            return NBD_ENOSPC;
        case 'READ_ONLY':
            return NBD_EPERM;
        case 'IO_ERROR':
            return NBD_EIO;
        case 'NOT_SUPPORTED':
            return NBD_ENOTSUP;
        default:
            return NBD_EIO;
    }
}
/** A short message for a structured error chunk (the protocol caps strings at 4096 bytes). */
export function errorMessageFor(err) {
    const msg = err instanceof Error ? err.message : String(err);
    return msg.length > 200 ? `${msg.slice(0, 197)}...` : msg;
}
//# sourceMappingURL=errno.js.map