// Opens `url` in headless Chromium and returns what the page left in `window.result`
// (waiting at most 30 s), with any page error, console error or failed request in
// `problems`. Shared by the browser scripts of this folder.
import { chromium } from 'playwright-core';

export async function resultOf(url) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    await page.goto(url);
    const result = await page
      .waitForFunction(() => window.result !== undefined, null, { timeout: 30_000 })
      .then(() => page.evaluate(() => window.result), (e) => ({ error: `no result: ${e.message}` }));
    return { ...result, problems };
  } finally {
    await browser.close();
  }
}
