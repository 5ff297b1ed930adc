/**
 * Wake-on-LAN: the magic packet (six 0xFF bytes, then the host's MAC sixteen times) sent as one
 * UDP datagram, by default broadcast to port 9. A maintenance window uses it to power the host
 * on when the host's network card is set to wake on it instead of the GPIO power press.
 */
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { WakeOnLan } from '../api/maintenance.js';
import { SnapbackError } from '../errors.js';

/** The 102-byte magic packet for `mac`. */
export function magicPacket(mac: string): Buffer {
  const hex = mac.replace(/[:-]/g, '');
  if (!/^[0-9A-Fa-f]{12}$/.test(hex)) throw new SnapbackError('BAD_ARGUMENT', `"${mac}" is not a MAC address (six hex pairs such as 00:11:22:33:44:55)`);
  const macBytes = Buffer.from(hex, 'hex');
  const packet = Buffer.alloc(6 + 16 * 6, 0xff);
  for (let i = 0; i < 16; i++) macBytes.copy(packet, 6 + i * 6);
  return packet;
}

/** Sends the magic packet of `target.mac` to `target.address`:`target.port` (broadcast allowed). */
export async function sendWakeOnLan(target: WakeOnLan): Promise<void> {
  const packet = magicPacket(target.mac);
  const socket = createSocket(isIPv6(target.address) ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, () => {
        socket.setBroadcast(true);
        socket.send(packet, target.port, target.address, (err) => (err ? reject(err) : resolve()));
      });
    });
  } catch (err) {
    throw new SnapbackError('IO_ERROR', `could not send the Wake-on-LAN packet to ${target.address}:${target.port}: ${(err as Error).message}`, undefined, { cause: err });
  } finally {
    socket.close();
  }
}
