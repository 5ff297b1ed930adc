/** The GPIO component's status, as GET /api/gpio and the web UI show it: the wire contract's. */
export type { GpioPinStatus, GpioRole, GpioStatus } from '../api/gpio.js';
