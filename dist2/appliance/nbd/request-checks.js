import { CMD_CACHE, CMD_FLAG_DF, CMD_FLAG_FUA, CMD_FLAG_NO_HOLE, CMD_FLUSH, CMD_READ, CMD_TRIM, CMD_WRITE, CMD_WRITE_ZEROES, NBD_EINVAL, NBD_ENOSPC, NBD_EPERM, } from './protocol.js';
/** Flags each known command accepts. FUA is valid on every command (proto.md). */
function allowedFlags(type, structured) {
    switch (type) {
        case CMD_READ:
            return CMD_FLAG_FUA | (structured ? CMD_FLAG_DF : 0);
        case CMD_WRITE_ZEROES:
            return CMD_FLAG_FUA | CMD_FLAG_NO_HOLE;
        case CMD_WRITE:
        case CMD_FLUSH:
        case CMD_TRIM:
        case CMD_CACHE:
            return CMD_FLAG_FUA;
        default:
            return -1;
    }
}
/**
 * 0 when the request may go to the device, else the NBD error to reply with.
 * `offset` may exceed 2^53 (then it is simply out of range).
 */
export function checkRequest(type, flags, offset, length, info, structured) {
    const allowed = allowedFlags(type, structured);
    if (allowed < 0 || (flags & ~allowed) !== 0)
        return NBD_EINVAL;
    const mutates = type === CMD_WRITE || type === CMD_TRIM || type === CMD_WRITE_ZEROES;
    if (mutates && info.readOnly)
        return NBD_EPERM;
    if (type === CMD_FLUSH)
        return 0;
    if ((type === CMD_READ || type === CMD_WRITE) && length > info.maxBlockSize)
        return NBD_EINVAL;
    if (offset + length > info.size)
        return type === CMD_WRITE || type === CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    return 0;
}
/** Why `checkRequest` refused a request, for the error chunk a structured client receives. */
export function refusalMessage(type, flags, offset, length, info, errno) {
    const what = `${commandName(type)} at ${offset} length ${length}`;
    if (allowedFlags(type, true) < 0)
        return `${what}: unknown command`;
    if (errno === NBD_EPERM)
        return `${what}: the export is read-only`;
    if ((flags & ~allowedFlags(type, true)) !== 0)
        return `${what}: unsupported flags 0x${flags.toString(16)}`;
    if ((type === CMD_READ || type === CMD_WRITE) && length > info.maxBlockSize)
        return `${what}: longer than the maximum block size ${info.maxBlockSize}`;
    if (offset + length > info.size)
        return `${what}: beyond the end of the export (size ${info.size})`;
    return `${what}: invalid request`;
}
export function commandName(type) {
    return COMMAND_NAMES[type] ?? `command ${type}`;
}
const COMMAND_NAMES = {
    0: 'READ',
    1: 'WRITE',
    2: 'DISC',
    3: 'FLUSH',
    4: 'TRIM',
    5: 'CACHE',
    6: 'WRITE_ZEROES',
    7: 'BLOCK_STATUS',
    8: 'RESIZE',
};
//# sourceMappingURL=request-checks.js.map