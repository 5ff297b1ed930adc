/**
 * Debian's Chromium driven by playwright-core (nothing downloaded), and helpers for the web UI
 * end-to-end tests: viewports, screenshots into docs/screenshots, and a guard that fails a test
 * on any page error or console error (a CSP violation shows up as one).
 */
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const VIEWPORTS = {
  desktop: { width: 1280, height: 800 },
  phone: { width: 390, height: 844 },
} as const;
export type ViewportName = keyof typeof VIEWPORTS;

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

/** The viewport names, for a test that runs at each width. */
export const VIEWPORT_NAMES = Object.keys(VIEWPORTS) as ViewportName[];

/**
 * One Chromium for a describe block: launched before its tests, closed after them. Call it in
 * the block's body; `browser` is there once the tests run.
 */
export function useChromium(): { readonly browser: Browser } {
  let browser: Browser | null = null;
  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });
  return {
    get browser(): Browser {
      if (!browser) throw new Error('Chromium is not running (useChromium() belongs in a describe body)');
      return browser;
    },
  };
}

/**
 * One page for a describe block whose tests share it: opened before them, closed after them.
 * Each test fails on a page error, a console error or a request off the appliance it caused.
 * Call it in the block's body after useChromium(); `page` is there once the tests run.
 */
export function usePage(chromium: { readonly browser: Browser }, vp: ViewportName): { readonly page: Page; readonly problems: string[] } {
  let opened: { context: BrowserContext; page: Page; problems: string[] } | null = null;
  before(async () => {
    opened = await newPage(chromium.browser, vp);
  });
  after(async () => {
    await opened?.context.close();
  });
  afterEach(() => {
    if (opened) assert.deepEqual(opened.problems.splice(0), []);
  });
  return {
    get page(): Page {
      if (!opened) throw new Error('no page is open (usePage() belongs in a describe body)');
      return opened.page;
    },
    /** What went wrong on the page since the last test ended (a test that expects a problem takes it out). */
    get problems(): string[] {
      if (!opened) throw new Error('no page is open (usePage() belongs in a describe body)');
      return opened.problems;
    },
  };
}

/**
 * Where screenshots go: a temporary directory in a test run (tests write only under temporary
 * directories), or SNAPBACK_SCREENSHOTS — `npm run screenshots` points it at docs/screenshots
 * to refresh the committed ones.
 */
let tempShots: string | null = null;
export function screenshotDir(): string {
  const d = process.env.SNAPBACK_SCREENSHOTS ?? (tempShots ??= mkdtempSync(join(tmpdir(), 'snapback-screenshots-')));
  mkdirSync(d, { recursive: true });
  return d;
}

/**
 * A fresh browser context and page. Only the appliance may be reached: loopback, plus the
 * addresses in `appliance` (this machine's own network address, for the first-boot test).
 */
export async function newPage(
  browser: Browser,
  vp: ViewportName,
  opts: { appliance?: string[] } = {},
): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({
    viewport: VIEWPORTS[vp],
    deviceScaleFactor: vp === 'phone' ? 2 : 1,
    isMobile: vp === 'phone',
    hasTouch: vp === 'phone',
    colorScheme: 'light',
    acceptDownloads: true,
  });
  // Nothing may come from the internet: any request off the appliance fails the test.
  const problems: string[] = [];
  const hosts = ['127\\.0\\.0\\.1', 'localhost', ...(opts.appliance ?? []).map((a) => a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))];
  await context.route(new RegExp(`^(?!https?://(${hosts.join('|')})[:/]).*`), (route) => {
    problems.push(`request off the appliance: ${route.request().url()}`);
    return route.abort();
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const t = m.text();
    // A refused login / 401 probe logs a failed resource load: expected in the login tests.
    if (/status of (401|403|409|429)/.test(t)) return;
    problems.push(`console error: ${t}`);
  });
  return { context, page, problems };
}

export async function shot(page: Page, vp: ViewportName, name: string, fullPage = true): Promise<string> {
  const file = join(screenshotDir(), `${vp}-${name}.png`);
  // Transient notices (they fade after a few seconds; the tests move faster) are cleared, and a
  // full-page picture starts from the top (the sticky header stays where it belongs).
  await page.evaluate((top) => {
    const d = (globalThis as unknown as { document: { getElementById(id: string): { replaceChildren(): void } | null } }).document;
    d.getElementById('notices')?.replaceChildren();
    if (top) (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0);
  }, fullPage);
  await page.screenshot({ path: file, fullPage, caret: 'hide', animations: 'disabled' });
  return file;
}

/** Waits until the element's trimmed text equals `want` (or matches it). */
export async function waitText(page: Page, sel: string, want: string | RegExp): Promise<void> {
  const src = want instanceof RegExp ? want.source : null;
  await page.waitForFunction(
    ({ sel, want, src }) => {
      const t: string = ((globalThis as any).document.querySelector(sel)?.textContent ?? '').trim();
      return src !== null ? new RegExp(src).test(t) : t === want;
    },
    { sel, want: typeof want === 'string' ? want : '', src },
  );
}

/** Waits until the element's data-`key` equals `want`. */
export async function waitData(page: Page, sel: string, key: string, want: string): Promise<void> {
  await page.waitForFunction(({ sel, key, want }) => (globalThis as any).document.querySelector(sel)?.dataset[key] === want, { sel, key, want });
}

/**
 * The first-run form on a fresh appliance: the administrator password, twice, then the
 * dashboard. (The tests of the form itself, with a wrong setup code or passwords that differ,
 * drive it field by field.)
 */
export async function setFirstPassword(page: Page, password: string): Promise<void> {
  await page.waitForSelector('#setup-form');
  await page.fill('#new-password', password);
  await page.fill('#confirm-password', password);
  await page.click('#setup-submit');
  await page.waitForSelector('#session-number');
}
