/**
 * The GPIO side's one way to end the host session: a request made while another is in flight
 * joins it (a button press and the power LED agreeing must not end two sessions), and the
 * component can show "restoring" on the LED while it runs.
 */
import { childLogger } from '../logger.js';
import type { ApplianceService, SessionEndReason, SessionRecord } from '../session/appliance-service.js';

const log = childLogger('gpio');

export class SessionEnder {
  private inFlight: Promise<SessionRecord> | null = null;
  private failure: { message: string; at: string } | null = null;

  constructor(
    private readonly service: ApplianceService,
    private readonly onChange: () => void,
  ) {}

  get ending(): boolean {
    return this.inFlight !== null;
  }

  /** The last failed end, until an end succeeds. */
  get error(): { message: string; at: string } | null {
    return this.failure;
  }

  end(reason: SessionEndReason, note: string): Promise<SessionRecord> {
    if (this.inFlight) return this.inFlight;
    log.info({ reason, note }, 'ending the host session');
    const run = this.service.endSession(reason, note).then(
      (record) => {
        this.inFlight = null;
        this.failure = null;
        this.onChange();
        return record;
      },
      (err: unknown) => {
        this.inFlight = null;
        const message = err instanceof Error ? err.message : String(err);
        this.failure = { message: `ending the session failed: ${message}`, at: new Date().toISOString() };
        log.error({ err, reason }, 'ending the host session failed');
        this.onChange();
        throw err;
      },
    );
    this.inFlight = run;
    this.onChange();
    return run;
  }
}
