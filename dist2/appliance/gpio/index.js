/** The GPIO component's public surface, for the daemon, the HTTP server and the settings. */
export { GpioComponent } from './gpio-component.js';
export { createGpioRouter } from './gpio-routes.js';
export { GpioSettingsSchema, defaultGpioSettings, } from './gpio-settings.js';
export { SimulatedGpioBackend } from './simulated-backend.js';
export { detectGpio } from './detect-gpio.js';
export { systemClock } from './clock.js';
export { POWER_ACTIONS } from './power-controller.js';
export { LED_PATTERNS } from './led-patterns.js';
//# sourceMappingURL=index.js.map