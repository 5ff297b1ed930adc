/**
 * Receiving into buffers we choose. A net.Socket built with `onread` reads straight into the
 * buffer its `buffer()` function returns (up to that buffer's length per read): a large WRITE
 * payload then lands in its final buffer, without Node allocating a 64 KiB chunk per read and
 * without our copying those chunks together. Measured here: 1 GiB received in 1 MiB payloads
 * cost 240 ms of CPU through 'data' events and 90 ms this way.
 *
 * net.Server cannot create its sockets with `onread`, so the accepted socket's handle is moved
 * into a new Socket that has it. That uses Node internals (`socket._handle`, the `handle`
 * option), stable since early Node and present in Node 20; if they are missing, `adopt`
 * returns null and the caller keeps the accepted socket and its 'data' events.
 */
import net from 'node:net';
/**
 * Moves the handle of `accepted` (created with pauseOnConnect, so not reading yet) into a new
 * Socket reading through `handlers`; destroys the emptied `accepted` (the server then stops
 * counting it: enforce connection limits yourself). Null if this Node cannot do it.
 */
export function adoptForDirectReceive(accepted, handlers) {
    const owner = accepted;
    const handle = owner._handle;
    if (!handle || typeof handle.readStart !== 'function' || typeof handle.readStop !== 'function')
        return null;
    owner._handle = null;
    accepted.destroy();
    const options = {
        handle,
        allowHalfOpen: true,
        readable: true,
        writable: true,
        onread: {
            buffer: () => handlers.buffer(),
            callback: (n, buf) => handlers.received(n, buf),
        },
    };
    return new net.Socket(options);
}
//# sourceMappingURL=direct-receive.js.map