/**
 * A daemon component (zigbee2mqtt's model): the controller (daemon.ts) constructs the
 * components in order and starts them in that order, then stops them in reverse order.
 * `start()` and `stop()` must each be safe to call twice.
 */
export interface Component {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}
