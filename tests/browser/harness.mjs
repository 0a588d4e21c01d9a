// What every browser test script shares: its settings from the environment, named steps
// with their durations, the pages it watches for errors, Debian's Chromium with the flags
// a closed network needs, and the one JSON line it prints (with screenshots on failure).

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

/**
 * A run of the script `name` (used in messages and screenshot names). `results.ok` must be
 * set by its `main`; `finish(main)` runs it and reports.
 */
export function harness(name) {
  const results = { ok: false, steps: {} };
  const pages = {}; // label -> Page, for screenshots
  const pageErrors = [];
  const consoleErrors = [];
  let browser;

  const need = (k) => {
    const v = process.env[k];
    if (!v) throw new Error(`set ${k} (see the header of ${name}.mjs)`);
    return v;
  };

  /** Runs one named step and records its duration and outcome. */
  async function step(label, fn) {
    const t0 = Date.now();
    try {
      const extra = await fn();
      results.steps[label] = { ok: true, ms: Date.now() - t0, ...(extra || {}) };
    } catch (e) {
      results.steps[label] = { ok: false, ms: Date.now() - t0 };
      e.step = label;
      throw e;
    }
  }

  /** Records the uncaught errors and console errors of `page`, known as `label`. */
  function watch(label, page) {
    pages[label] = page;
    page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error' && consoleErrors.length < 20) consoleErrors.push(`${label}: ${m.text()}`);
    });
    return page;
  }

  /** Debian's Chromium, headless; without the background flags a closed network refuses it. */
  async function launch(extraArgs = []) {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
    });
    return browser;
  }

  async function screenshots() {
    const dir = process.env.SCREENSHOT_DIR;
    if (!dir) return;
    fs.mkdirSync(dir, { recursive: true });
    results.screenshots = [];
    for (const [label, page] of Object.entries(pages)) {
      const file = path.join(dir, `${name}-${label}.png`);
      try { await page.screenshot({ path: file }); results.screenshots.push(file); } catch { /* page gone */ }
    }
  }

  /** Runs `main`, then prints the results as one JSON line; exits non-zero on failure. */
  async function finish(main) {
    try {
      await main();
    } catch (e) {
      results.error = `${e.step ? `[${e.step}] ` : ''}${e.message.split('\n')[0]}`;
      await screenshots();
      process.exitCode = 1;
    } finally {
      if (pageErrors.length) results.page_errors = pageErrors;
      if (consoleErrors.length) results.console_errors = consoleErrors;
      if (browser) await browser.close().catch(() => {});
      console.log(JSON.stringify(results));
      if (!results.ok) console.error(`FAILED: ${results.error}`);
    }
  }

  return { results, pages, pageErrors, need, step, watch, launch, finish };
}
