/**
 * The GPIO component as the maintenance windows' host power: the power button output (presses)
 * and the power LED input (is the host on or off?). A window needs both: it must see the host
 * go off before it may capture, and it must never force off a host it cannot see.
 */
import type { GpioComponent } from '../gpio/gpio-component.js';
import type { HostPowerPort } from '../maintenance/window-run.js';

export function gpioHostPower(gpio: GpioComponent): HostPowerPort {
  return {
    unavailableReason() {
      const s = gpio.status();
      if (!s.available) return `GPIO is off${s.reason ? `: ${s.reason}` : ''}`;
      if (!s.power.wired.power) return 'the host power button output is not wired (gpio.json power.switchPin)';
      if (!s.host.senseWired) return "the host's power LED input is not wired (gpio.json power.ledPin): a window must see the host go off";
      return null;
    },
    state: () => gpio.status().host.power,
    press: (action, actor) => gpio.powerAction(action, actor),
    watch(fn) {
      gpio.on('change', fn);
      return () => gpio.off('change', fn);
    },
  };
}
