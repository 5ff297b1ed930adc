/**
 * An address of this machine that is not loopback, for tests of what the web UI does for a
 * client on the network. Connections to it never leave the machine (the kernel routes them
 * locally), but the server sees a non-loopback client, as it would on a LAN.
 */
import { networkInterfaces } from 'node:os';

export function ownNetworkAddress(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') return a.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address; the network-client tests need one (any interface with an address)');
}
