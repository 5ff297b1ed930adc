/**
 * The appliance's web UI: its pages in the shared shell (shell.ts), with the daemon's live stream.
 */
import { live } from './live.js';
import { dashboardPage } from './pages/dashboard.js';
import { eventsPage } from './pages/events.js';
import { gpioPage } from './pages/gpio.js';
import { modelPage } from './pages/model.js';
import { sessionsPage } from './pages/sessions.js';
import { settingsPage } from './pages/settings.js';
import { startShell } from './shell.js';

startShell({
  product: 'Snapback',
  live,
  pages: [
    { id: 'dashboard', label: 'Dashboard', page: dashboardPage },
    { id: 'sessions', label: 'Sessions', page: sessionsPage },
    { id: 'model', label: 'Models', page: modelPage },
    { id: 'settings', label: 'Settings', page: settingsPage },
    { id: 'gpio', label: 'GPIO', page: gpioPage },
    { id: 'events', label: 'Events', page: eventsPage },
  ],
});
