/**
 * The web UI shell: checks the login, opens the live stream, routes between pages by the URL's
 * hash (#/dashboard, #/sessions, #/model, #/settings, #/gpio, #/events).
 */
import { authState, postJson, setUnauthenticatedHandler } from './api.js';
import { errorText, notify } from './dom.js';
import { connect, disconnect, on } from './live.js';
import { dashboardPage } from './pages/dashboard.js';
import { eventsPage } from './pages/events.js';
import { gpioPage } from './pages/gpio.js';
import { modelPage } from './pages/model.js';
import type { Page } from './pages/page.js';
import { sessionsPage } from './pages/sessions.js';
import { settingsPage } from './pages/settings.js';

const PAGES: Record<string, Page> = {
  dashboard: dashboardPage,
  sessions: sessionsPage,
  model: modelPage,
  settings: settingsPage,
  gpio: gpioPage,
  events: eventsPage,
};

let cleanup: (() => void) | null = null;

function toLogin(): void {
  disconnect();
  location.replace('/login');
}

function route(): void {
  const name = /^#\/([a-z]+)/.exec(location.hash)?.[1] ?? 'dashboard';
  const page = PAGES[name] ?? dashboardPage;
  const main = document.getElementById('page');
  if (!main) return;
  cleanup?.();
  cleanup = null;
  main.replaceChildren();
  main.dataset.page = PAGES[name] ? name : 'dashboard';
  document.title = `${page.title} · Snapback`;
  for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) {
    if (a.dataset.page === main.dataset.page) a.setAttribute('aria-current', 'page');
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
  connect(() => {
    // The stream was refused: find out whether the login is gone.
    authState().then(
      (s) => {
        if (!s.authenticated) toLogin();
        else setTimeout(() => connect(toLogin), 3000);
      },
      () => setTimeout(() => connect(toLogin), 3000),
    );
  });
  document.getElementById('logout')?.addEventListener('click', () => {
    postJson('/api/auth/logout')
      .then(toLogin)
      .catch((err: unknown) => notify(`Could not log out: ${errorText(err)}`, 'error'));
  });
  window.addEventListener('hashchange', route);
  route();
}

main().catch((err: unknown) => notify(`The web UI failed to start: ${errorText(err)}`, 'error'));
