/** What the GPIO code writes to the appliance's audit log (the daemon supplies the writer). */
export interface GpioAuditEntry {
  /** Who acted: the logged-in user from the API, 'button' for the reset button, 'power-led'. */
  actor: string;
  /** e.g. 'gpio.power.restore-now', 'gpio.button.short-press'. */
  action: string;
  details?: Record<string, unknown>;
}

export type GpioAuditFn = (e: GpioAuditEntry) => void;
