import { SnapbackError } from '../errors.js';
/** Throws OUT_OF_RANGE unless [offset, offset+length) lies within a device of `size` bytes. */
export function checkRange(size, offset, length, what = 'request') {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
        throw new SnapbackError('OUT_OF_RANGE', `${what} at ${offset}+${length} is outside the device (size ${size})`, {
            offset,
            length,
            size,
        });
    }
}
//# sourceMappingURL=block-device.js.map