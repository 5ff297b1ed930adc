/**
 * The console's web UI shell: checks the login (the login page is the appliance's own), opens
 * the live stream, routes between pages by the URL's hash (#/fleet, #/groups, #/models,
 * #/commands, #/audit).
 */
import { authState, postJson, setUnauthenticatedHandler } from './api.js';
import { errorText, notify } from './dom.js';
import { auditPage } from './audit-page.js';
import { cataloguePage } from './catalogue-page.js';
import { commandsPage } from './commands-page.js';
import { connect, disconnect, on } from './console-live.js';
import type { ConsolePage } from './console-page.js';
import { fleetPage } from './fleet-page.js';
import { groupsPage } from './groups-page.js';

const PAGES: Record<string, ConsolePage> = {
  fleet: fleetPage,
  groups: groupsPage,
  models: cataloguePage,
  commands: commandsPage,
  audit: auditPage,
};

let cleanup: (() => void) | null = null;

function toLogin(): void {
  disconnect();
  location.replace('/login');
}

function route(): void {
  const name = /^#\/([a-z]+)/.exec(location.hash)?.[1] ?? 'fleet';
  const known = PAGES[name] ? name : 'fleet';
  const page = PAGES[known]!;
  const main = document.getElementById('page');
  if (!main) return;
  cleanup?.();
  cleanup = null;
  main.replaceChildren();
  main.dataset.page = known;
  document.title = `${page.title} · Snapback console`;
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) {
    if (a.dataset.page === known) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  cleanup = page.render(main);
}

async function main(): Promise<void> {
  setUnauthenticatedHandler(toLogin);
  const st = await authState();
  if (!st.authenticated) {
    toLogin();
    return;
  }
  const live = document.getElementById('live');
  on<boolean>('connection', (up) => {
    if (!live) return;
    live.textContent = up ? 'live' : 'reconnecting…';
    live.className = up ? 'live live-on' : 'live live-off';
  });
  const reconnect = (): void =>
    connect(() => {
      // The stream was refused: find out whether the login is gone.
      authState().then(
        (s) => (s.authenticated ? setTimeout(reconnect, 3000) : toLogin()),
        () => setTimeout(reconnect, 3000),
      );
    });
  reconnect();
  document.getElementById('logout')?.addEventListener('click', () => {
    postJson('/api/auth/logout')
      .then(toLogin)
      .catch((err: unknown) => notify(`Could not log out: ${errorText(err)}`, 'error'));
  });
  window.addEventListener('hashchange', route);
  route();
}

main().catch((err: unknown) => notify(`The console failed to start: ${errorText(err)}`, 'error'));
