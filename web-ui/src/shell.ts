/**
 * The frame of a Snapback web UI, the appliance's and the console's alike: checks the login
 * (sending a visitor without one to /login), opens the live stream and shows whether it is up,
 * draws the navigation from the pages, routes between them by the URL's hash (#/NAME; the first
 * page is the default), and logs out. Each front end passes its own pages and live stream.
 */
import { authState, postJson, setUnauthenticatedHandler } from './api.js';
import { errorText, h, notify } from './dom.js';
import type { LiveStream } from './live-stream.js';
import type { Page } from './pages/page.js';

export interface ShellPage {
  /** The hash route (#/id) and the nav link's data-page. */
  id: string;
  /** The nav link's text. */
  label: string;
  page: Page;
}

export interface ShellOptions {
  /** The product's name, after each page's title in the document title. */
  product: string;
  /** The pages in nav order; the first is the default. */
  pages: readonly [ShellPage, ...ShellPage[]];
  live: LiveStream;
}

/** How long after a refused live stream (with the login still valid) it is tried again. */
const RECONNECT_MS = 3000;

export function startShell(o: ShellOptions): void {
  run(o).catch((err: unknown) => notify(`${o.product} failed to start: ${errorText(err)}`, 'error'));
}

async function run(o: ShellOptions): Promise<void> {
  const toLogin = (): void => {
    o.live.disconnect();
    location.replace('/login');
  };
  setUnauthenticatedHandler(toLogin);
  const st = await authState();
  if (!st.authenticated) {
    toLogin();
    return;
  }

  const nav = document.getElementById('nav');
  nav?.replaceChildren(...o.pages.map((p) => h('a', { href: `#/${p.id}`, 'data-page': p.id }, p.label)));

  const live = document.getElementById('live');
  o.live.on<boolean>('connection', (up) => {
    if (!live) return;
    live.textContent = up ? 'live' : 'reconnecting…';
    live.className = up ? 'live live-on' : 'live live-off';
  });
  const reconnect = (): void =>
    o.live.connect(() => {
      // The stream was refused: find out whether the login is gone; if not, try again.
      authState().then(
        (s) => (s.authenticated ? setTimeout(reconnect, RECONNECT_MS) : toLogin()),
        () => setTimeout(reconnect, RECONNECT_MS),
      );
    });
  reconnect();

  document.getElementById('logout')?.addEventListener('click', () => {
    postJson('/api/auth/logout')
      .then(toLogin)
      .catch((err: unknown) => notify(`Could not log out: ${errorText(err)}`, 'error'));
  });

  let cleanup: (() => void) | null = null;
  const route = (): void => {
    const name = /^#\/([a-z]+)/.exec(location.hash)?.[1];
    const shown = o.pages.find((p) => p.id === name) ?? o.pages[0];
    const main = document.getElementById('page');
    if (!main) return;
    cleanup?.();
    cleanup = null;
    main.replaceChildren();
    main.dataset.page = shown.id;
    document.title = `${shown.page.title} · ${o.product}`;
    for (const a of document.querySelectorAll<HTMLAnchorElement>('#nav a')) {
      if (a.dataset.page === shown.id) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    cleanup = shown.page.render(main);
  };
  window.addEventListener('hashchange', route);
  route();
}
