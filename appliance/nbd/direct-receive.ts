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

export interface DirectReceiveHandlers {
  /** The buffer the next read goes into (called once now and after every callback). */
  buffer(): Buffer;
  /** `n` bytes were read into `buf` (the last buffer returned). */
  received(n: number, buf: Buffer): void;
}

interface HandleOwner {
  _handle?: { readStart?: unknown; readStop?: unknown; reading?: boolean } | null;
}

/**
 * Stops or restarts the socket's reads at once, below the stream (libuv's uv_read_stop and
 * uv_read_start), for a WRITE payload another thread takes off the socket (payload-receiver.ts).
 * `socket.pause()` is not enough for a socket reading through `onread`: it stops only what the
 * stream sees. `reading` is the flag net.Socket keeps for its handle, so that its own _read()
 * starts reads again only when they are stopped. False if this Node's socket has no such handle.
 */
export function setSocketReading(socket: net.Socket, on: boolean): boolean {
  const handle = (socket as unknown as HandleOwner)._handle as { readStart(): number; readStop(): number; reading?: boolean } | null | undefined;
  if (!handle || typeof handle.readStart !== 'function' || typeof handle.readStop !== 'function') return false;
  if (on) {
    if (handle.reading === true) return true;
    handle.reading = true;
    handle.readStart();
  } else {
    handle.readStop();
    handle.reading = false;
  }
  return true;
}

/**
 * Moves the handle of `accepted` (created with pauseOnConnect, so not reading yet) into a new
 * Socket reading through `handlers`; destroys the emptied `accepted` (the server then stops
 * counting it: enforce connection limits yourself). Null if this Node cannot do it.
 */
export function adoptForDirectReceive(accepted: net.Socket, handlers: DirectReceiveHandlers): net.Socket | null {
  const owner = accepted as unknown as HandleOwner;
  const handle = owner._handle;
  if (!handle || typeof handle.readStart !== 'function' || typeof handle.readStop !== 'function') return null;
  owner._handle = null;
  accepted.destroy();
  const options = {
    handle,
    allowHalfOpen: true,
    readable: true,
    writable: true,
    onread: {
      buffer: (): Buffer => handlers.buffer(),
      callback: (n: number, buf: Uint8Array): void => handlers.received(n, buf as Buffer),
    },
  };
  return new net.Socket(options as net.SocketConstructorOpts);
}
