/**
 * Test support: Debian's headless Chromium driven by playwright-core (no browser download), and a page
 * that records console errors, uncaught exceptions and Content Security Policy violations. Screenshots go to test-results/dashboard/.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import type { Teardown } from '../helper.ts';

/** The browser the tests drive; override with CHROMIUM_PATH. */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SCREENSHOT_DIR = join(import.meta.dirname, '..', '..', 'test-results', 'dashboard');

export async function launchChromium(teardown: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  teardown.after(() => browser.close());
  return browser;
}

export interface WatchedPage {
  page: Page;
  /** Console errors, uncaught exceptions and CSP violations so far. */
  errors: string[];
}

export async function openPage(
  browser: Browser,
  viewport = { width: 1366, height: 900 },
): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => errors.push(`page: ${error.message}`));
  // Every Content Security Policy violation, reported or not by the console, is an error of the page.
  await page.exposeFunction('reportCspViolation', (text: string) => errors.push(`csp: ${text}`));
  await page.addInitScript(() => {
    const scope = globalThis as unknown as {
      document: { addEventListener(type: string, listener: (event: CspEvent) => void): void };
      reportCspViolation(text: string): void;
    };
    interface CspEvent {
      violatedDirective: string;
      blockedURI: string;
      sourceFile: string;
    }
    scope.document.addEventListener('securitypolicyviolation', (event) => {
      scope.reportCspViolation(
        `${event.violatedDirective} blocked ${event.blockedURI || 'inline'} (${event.sourceFile})`,
      );
    });
  });
  return { page, errors };
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  const path = join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Opens the dashboard and connects it with `readerKey`, as a person would the first time. */
export async function connectDashboard(page: Page, base: string, readerKey: string): Promise<void> {
  await page.goto(`${base}/dashboard`);
  await page.locator('#reader-key').fill(readerKey);
  await page.locator('#key-form button[type=submit]').click();
  await page.locator('#stream-state[data-state="live"]').waitFor({ timeout: 15_000 });
}
