import { SnapbackError } from '../errors.js';
import { DEFAULT_PREFERRED_BLOCK_SIZE, MIN_BLOCK_SIZE, TFLAG_CAN_MULTI_CONN, TFLAG_HAS_FLAGS, TFLAG_READ_ONLY, TFLAG_SEND_DF, TFLAG_SEND_FLUSH, TFLAG_SEND_FUA, TFLAG_SEND_TRIM, TFLAG_SEND_WRITE_ZEROES, } from './protocol.js';
/** Reads the device's size and capabilities now (the device must be open). */
export function describeExport(s) {
    const size = s.device.size;
    const caps = s.device.capabilities;
    const readOnly = s.readOnly || !caps.canWrite;
    return {
        name: s.name,
        description: s.description,
        size,
        readOnly,
        canFlush: caps.canFlush,
        canFua: caps.canFua,
        canTrim: !readOnly && caps.canTrim,
        canZero: !readOnly && caps.canZero,
        minBlockSize: MIN_BLOCK_SIZE,
        preferredBlockSize: preferredBlockSize(caps.preferredBlockSize, s.maxBlockSize),
        maxBlockSize: s.maxBlockSize,
    };
}
/**
 * Transmission flags. CAN_MULTI_CONN is safe because every connection shares one device
 * object whose flush() covers every write that resolved before it, whichever connection made
 * it (the BlockDevice contract), and reads on any connection see every completed write.
 * SEND_DF only with structured replies (we always answer a read with a single chunk anyway).
 */
export function transmissionFlags(info, structured) {
    let flags = TFLAG_HAS_FLAGS | TFLAG_CAN_MULTI_CONN;
    if (info.readOnly)
        flags |= TFLAG_READ_ONLY;
    if (info.canFlush)
        flags |= TFLAG_SEND_FLUSH;
    if (info.canFua)
        flags |= TFLAG_SEND_FUA;
    if (info.canTrim)
        flags |= TFLAG_SEND_TRIM;
    if (info.canZero)
        flags |= TFLAG_SEND_WRITE_ZEROES;
    if (structured)
        flags |= TFLAG_SEND_DF;
    return flags;
}
/** Checks a maxBlockSize option: an integer from 4 KiB to 256 MiB. */
export function validateMaxBlockSize(n) {
    if (!Number.isInteger(n) || n < DEFAULT_PREFERRED_BLOCK_SIZE || n > 256 * 1024 * 1024) {
        throw new SnapbackError('BAD_ARGUMENT', `maxBlockSize ${n} must be an integer from 4096 to 268435456`);
    }
    return n;
}
/** The device's preferred size as a power of two, at least 4096 and at most maxBlockSize. */
function preferredBlockSize(devicePreferred, maxBlockSize) {
    let p = DEFAULT_PREFERRED_BLOCK_SIZE;
    while (p < devicePreferred && p * 2 <= maxBlockSize && p < 1 << 24)
        p *= 2;
    return p;
}
//# sourceMappingURL=export-info.js.map