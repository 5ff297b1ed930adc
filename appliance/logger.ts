/**
 * The one logger of the appliance (pino). Library code takes a child of `logger`; nothing
 * writes to the console directly. LOG_LEVEL sets the level; tests default to 'silent'.
 */
import { pino, type Logger } from 'pino';

const defaultLevel = process.env.LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'silent' : 'info');

export const logger: Logger = pino({ level: defaultLevel, base: { app: 'snapback' } });

export function childLogger(component: string): Logger {
  return logger.child({ component });
}

export type { Logger };
