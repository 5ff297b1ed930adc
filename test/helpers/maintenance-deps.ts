/**
 * The maintenance windows wired as the daemon wires them: their settings and audit log in a
 * real state store, the host's power through a GPIO component. Tests add the capture, the
 * state directory and the clock.
 */
import { gpioHostPower } from '../../appliance/daemon/maintenance-power.js';
import type { GpioComponent } from '../../appliance/gpio/gpio-component.js';
import type { MaintenanceDeps } from '../../appliance/maintenance/maintenance-component.js';
import type { ApplianceService } from '../../appliance/session/appliance-service.js';
import type { StateStore } from '../../appliance/state/state-store.js';

export function storeMaintenanceDeps(
  service: ApplianceService,
  store: StateStore,
  gpio: GpioComponent,
): Pick<MaintenanceDeps, 'service' | 'settings' | 'saveSettings' | 'audit' | 'power'> {
  return {
    service,
    settings: () => store.settings().maintenance,
    saveSettings: async (m) => void (await store.updateSettings({ maintenance: m })),
    audit: (e) => store.audit(e),
    power: () => gpioHostPower(gpio),
  };
}
