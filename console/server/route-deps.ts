/** What every console route file gets: the console's services. */
import type { Catalogue } from './catalogue.js';
import type { ConsoleStore } from './console-store.js';
import type { Dispatcher } from './dispatcher.js';
import type { Enrollment } from './enrollment.js';
import type { FleetLink } from './fleet-link.js';

export interface ConsoleDeps {
  store: ConsoleStore;
  link: FleetLink;
  dispatcher: Dispatcher;
  catalogue: Catalogue;
  enrollment: Enrollment;
}
