/**
 * The NBD server: one BlockDevice served as one export to any NBD client.
 *
 *   server.ts             NbdServer: listeners (unix, TCP; client and gadget roles), connections,
 *                         connection slots, idle clients dropped, orderly close
 *   listen-policy.ts      who may reach a listener: loopback or TLS, live sockets, groups
 *   tls-config.ts         NBD_OPT_STARTTLS sessions: PSK file, certificates
 *   memory-budget.ts      bytes all connections may hold above their own floors
 *   connection.ts         one client: greeting, handshake deadline, transmission, close
 *   option-negotiation.ts fixed-newstyle option haggling (GO/INFO/LIST/EXPORT_NAME/ABORT/...)
 *   transmission.ts       request parsing, dispatch to the device, backpressure
 *   request-checks.ts     which requests are refused before the device, with which error
 *   reply-writer.ts       reply encoding, batched into one socket write per turn
 *   export-info.ts        size, block sizes and transmission flags from the device
 *   byte-queue.ts         received bytes, parsed in place
 *   buffer-pool.ts        reused large read/write buffers
 *   errno.ts              SnapbackError code -> NBD error
 *   protocol.ts           wire constants
 */
export { NbdServer, DEFAULT_TUNING, type NbdServerOptions, type NbdServerTuning, type ListenerRole, type UnixListenOptions, type TcpListenOptions } from './server.js';
export { checkSocketFree, checkTcpListen, groupId, isLoopback } from './listen-policy.js';
export { loadNbdTls, parsePskFile, type NbdTlsFiles, type NbdTlsOptions } from './tls-config.js';
export { nbdErrnoFor } from './errno.js';
