/**
 * What the gadget's parts (host watch, session-end participant, watchdog) tell the component
 * they belong to: a host-side event for the session history, a changed status, the last error.
 */
export interface GadgetEvents {
  /** Records a host-side event in the current session's history (and the log). */
  record(what: string): void;
  /** The status changed. */
  changed(): void;
  /** The host connection (UDC state or bound/unbound) changed. */
  connectionChanged(): void;
  readonly lastError: string | null;
  setLastError(message: string | null): void;
  /** Runs `fn` after every gadget operation queued before it. */
  serial<T>(fn: () => Promise<T>): Promise<T>;
  /** The gadget is built and bound (between start and stop). */
  readonly running: boolean;
}
