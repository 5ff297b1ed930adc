/**
 * The one logger of the appliance (pino). Library code takes a child of `logger`; nothing
 * writes to the console directly. LOG_LEVEL sets the level; tests default to 'silent'.
 *
 * Lines go to standard output (a daemon's journal) until setLogDestination says otherwise: the
 * CLI sends the logs of its one-shot commands to standard error, so that what a command prints
 * (its --json above all) is its output alone.
 */
import { destination as pinoDestination, pino, type DestinationStream, type Logger } from 'pino';

const defaultLevel = process.env.LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'silent' : 'info');

type LogDestination = 'stdout' | 'stderr';
const streams = new Map<LogDestination, DestinationStream>();
function streamTo(to: LogDestination): DestinationStream {
  let stream = streams.get(to);
  if (!stream) {
    // to stderr synchronously: a short-lived command's log lines stay in order with the errors it writes itself
    stream = to === 'stdout' ? pinoDestination(1) : pinoDestination({ dest: 2, sync: true });
    streams.set(to, stream);
  }
  return stream;
}
let current = streamTo('stdout');

export const logger: Logger = pino({ level: defaultLevel, base: { app: 'snapback' } }, { write: (line: string) => current.write(line) });

/** Where log lines go from now on. */
export function setLogDestination(to: LogDestination): void {
  current = streamTo(to);
}

export function childLogger(component: string): Logger {
  return logger.child({ component });
}

export type { Logger };
