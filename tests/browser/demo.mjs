// Opens the browser demo in headless Chromium, clicks the button, waits for the
// decrypted answer and prints what the page shows as JSON; saves a screenshot.
// Usage: node demo.mjs <server url> <screenshot path>
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ['--no-sandbox'],
});
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });
  await page.goto(url);
  await page.click('#run');
  await page.waitForFunction(
    () => ['ok', 'error'].includes(document.getElementById('status').className),
    null,
    { timeout: 30_000 },
  );
  // The session's keys are non-extractable CryptoKeys: exporting them fails in the page.
  const exportable = await page.evaluate(async () => {
    const keys = window.sessionCrypto ? window.sessionCrypto.cryptoKeys : [];
    const results = await Promise.all(keys.map((k) => crypto.subtle.exportKey('raw', k).then(() => true, () => false)));
    return { count: keys.length, exported: results.filter(Boolean).length, extractable: keys.map((k) => k.extractable) };
  });
  const result = await page.evaluate(() => ({
    status: document.getElementById('status').textContent,
    statusClass: document.getElementById('status').className,
    transactionId: document.getElementById('transaction-id').textContent,
    response: document.getElementById('response').textContent,
    timings: [...document.querySelectorAll('#timings tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ ...result, problems, exportable }));
} finally {
  await browser.close();
}
