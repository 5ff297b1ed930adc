/** The GPIO component's public surface, for the daemon, the HTTP server and the settings. */
export { GpioComponent, type GpioComponentOptions } from './gpio-component.js';
export { createGpioRouter } from './gpio-routes.js';
export {
  GpioSettingsSchema,
  defaultGpioSettings,
  type GpioSettings,
  type GpioSettingsInput,
} from './gpio-settings.js';
export type { GpioStatus, GpioPinStatus, GpioRole } from './gpio-status.js';
export type { GpioAuditEntry, GpioAuditFn } from './gpio-audit.js';
export type { GpioBackend, Level, Edge, LineConfig } from './gpio-backend.js';
export { SimulatedGpioBackend } from './simulated-backend.js';
export { detectGpio, type GpioDetection } from './detect-gpio.js';
export { systemClock, type Clock } from './clock.js';
export { POWER_ACTIONS, type PowerAction } from './power-controller.js';
export { LED_PATTERNS, type LedPatternName } from './led-patterns.js';
