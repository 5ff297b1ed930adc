/**
 * A maintenance window's schedule: a 5-field cron expression (minute hour day-of-month month
 * day-of-week, as crontab(5) has them) read in an IANA time zone, parsed by croner (which
 * handles the time zone's daylight-saving changes: a time that does not exist on the day the
 * clocks go forward is skipped, one that happens twice when they go back runs once).
 */
import { Cron } from 'croner';
import { SnapbackError } from '../errors.js';

export class MaintenanceSchedule {
  private readonly cron: Cron;

  private constructor(
    readonly expression: string,
    readonly timeZone: string,
    cron: Cron,
  ) {
    this.cron = cron;
  }

  /** Parses `expression` in `timeZone`; BAD_ARGUMENT with what is wrong when either does not parse. */
  static parse(expression: string, timeZone: string): MaintenanceSchedule {
    const fields = expression.trim().split(/\s+/);
    if (fields.length !== 5) {
      throw new SnapbackError('BAD_ARGUMENT', `schedule "${expression}" has ${fields.length} field(s); a schedule has 5: minute hour day-of-month month day-of-week (e.g. "0 3 * * 6" for Saturdays at 03:00)`, { schedule: expression });
    }
    try {
      new Intl.DateTimeFormat('en-US', { timeZone });
    } catch {
      throw new SnapbackError('BAD_ARGUMENT', `"${timeZone}" is not a time zone (use an IANA name such as Europe/Berlin or UTC)`, { timeZone });
    }
    let cron: Cron;
    try {
      cron = new Cron(fields.join(' '), { timezone: timeZone, paused: true, mode: '5-part' });
    } catch (err) {
      throw new SnapbackError('BAD_ARGUMENT', `schedule "${expression}" does not parse: ${(err as Error).message}`, { schedule: expression });
    }
    if (cron.nextRun(new Date()) === null && cron.nextRun(new Date(0)) === null) {
      throw new SnapbackError('BAD_ARGUMENT', `schedule "${expression}" never fires (no such date)`, { schedule: expression });
    }
    return new MaintenanceSchedule(fields.join(' '), timeZone, cron);
  }

  /** The first start strictly after `after` (epoch ms), or null when there is none. */
  nextAfter(after: number): number | null {
    const next = this.cron.nextRun(new Date(after));
    return next ? next.getTime() : null;
  }
}
