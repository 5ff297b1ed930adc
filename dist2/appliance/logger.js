/**
 * The one logger of the appliance (pino). Library code takes a child of `logger`; nothing
 * writes to the console directly. LOG_LEVEL sets the level; tests default to 'silent'.
 */
import { pino } from 'pino';
const defaultLevel = process.env.LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'silent' : 'info');
export const logger = pino({ level: defaultLevel, base: { app: 'snapback' } });
export function childLogger(component) {
    return logger.child({ component });
}
//# sourceMappingURL=logger.js.map