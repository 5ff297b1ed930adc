/**
 * The console's web UI: its pages in the appliance web UI's shell (shell.ts: the same login,
 * frame and routing; the login page is the appliance's own), with the console's live stream.
 */
import { auditPage } from './audit-page.js';
import { cataloguePage } from './catalogue-page.js';
import { commandsPage } from './commands-page.js';
import { live } from './console-live.js';
import { fleetPage } from './fleet-page.js';
import { groupsPage } from './groups-page.js';
import { startShell } from './shell.js';

startShell({
  product: 'Snapback console',
  live,
  pages: [
    { id: 'fleet', label: 'Fleet', page: fleetPage },
    { id: 'groups', label: 'Groups', page: groupsPage },
    { id: 'models', label: 'Models', page: cataloguePage },
    { id: 'commands', label: 'Commands', page: commandsPage },
    { id: 'audit', label: 'Audit', page: auditPage },
  ],
});
