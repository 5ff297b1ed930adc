/** The NBD server (issue 3): one BlockDevice served as one export to any NBD client. */
export { NbdServer, DEFAULT_TUNING, type NbdServerOptions, type NbdServerTuning } from './server.js';
export { nbdErrnoFor } from './errno.js';
