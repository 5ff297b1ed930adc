/**
 * The API routes the daemon mounts beside the HTTP component's own: the model library, its
 * downloads and uploads, the persistent areas, the model's partition table, the GPIO (when the
 * appliance has it), the fleet link's and the maintenance windows' settings. One list, so that
 * what the daemon serves is what the API's contract test checks against the OpenAPI document.
 */
import type { PartitionTable } from '../api/partitions.js';
import type { GpioComponent } from '../gpio/gpio-component.js';
import type { ApiRouter } from '../http/api-router.js';
import { gpioRoutes } from '../http/routes/gpio-routes.js';
import { maintenanceRoutes } from '../http/routes/maintenance-routes.js';
import { managementRoutes } from '../http/routes/management-routes.js';
import { modelDownloadRoutes } from '../http/routes/model-download-routes.js';
import { modelLibraryRoutes } from '../http/routes/model-library-routes.js';
import { modelUploadRoutes } from '../http/routes/model-upload-routes.js';
import { partitionRoutes } from '../http/routes/partition-routes.js';
import { persistentRoutes } from '../http/routes/persistent-routes.js';
import type { MaintenanceComponent } from '../maintenance/maintenance-component.js';
import type { ManagementComponent } from '../management/management-component.js';
import type { ModelDownloads } from '../session/model-downloads.js';
import type { ModelService } from '../session/model-service.js';
import type { ModelSwitcher } from '../session/model-switcher.js';
import type { StateStore } from '../state/state-store.js';
import type { PersistentAreas } from '../storage/persistent-areas.js';

export interface DaemonRouteDeps {
  store: StateStore;
  models: ModelService;
  downloads: ModelDownloads;
  /** Activations and captures (the model library's activate and capture routes). */
  switcher: ModelSwitcher;
  /** The engine's persistent areas. */
  areas: () => PersistentAreas;
  /** Reads the active model's partition table. */
  partitions: () => Promise<PartitionTable>;
  gpio: GpioComponent | null;
  management: ManagementComponent;
  maintenance: MaintenanceComponent;
}

export function daemonRoutes(d: DaemonRouteDeps): ((api: ApiRouter) => void)[] {
  return [
    (api) => modelLibraryRoutes(api, { models: d.models, store: d.store, switcher: d.switcher }),
    (api) => modelDownloadRoutes(api, { models: d.models, downloads: d.downloads, store: d.store }),
    (api) => modelUploadRoutes(api, { models: d.models, store: d.store }),
    (api) => persistentRoutes(api, { areas: d.areas, store: d.store }),
    (api) => partitionRoutes(api, { partitions: d.partitions }),
    ...(d.gpio ? [(api: ApiRouter) => gpioRoutes(api, d.gpio!)] : []),
    (api) => managementRoutes(api, d.management, d.store),
    (api) => maintenanceRoutes(api, d.maintenance),
  ];
}
