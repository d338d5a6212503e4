// A page of another origin (a loopback HTTP server of this script) that imports the
// client library from the server and runs a v2 session against it cross-origin, as an
// SPA on its own domain would: CORS preflights with the headers the library and browser
// instrumentation send (X-Request-Id, traceparent), the exposed response headers, and
// Server-Timing readable through PerformanceResourceTiming (Timing-Allow-Origin).
// Usage: node cross-origin.mjs <server url>; prints what the page saw as JSON.
import { createServer } from 'node:http';
import { resultOf } from './page.mjs';

const [server] = process.argv.slice(2);
const html = `<!doctype html><meta charset="utf-8"><title>SPA</title><script type="module">
import { SessionCrypto } from '${server}/session-crypto-client.js';
try {
  const s = await SessionCrypto.connect({ baseUrl: '${server}', clientId: 'CROSS_ORIGIN_SPA' });
  const res = await s.fetch('/transaction/purchase', {
    method: 'POST',
    body: { schemeCode: 'AEF', amount: 5000 },
    headers: { 'X-Request-Id': 'spa-request-1', traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
  });
  const answer = await res.json();
  const timing = performance.getEntriesByType('resource').find((e) => e.name.endsWith('/transaction/purchase'));
  window.result = {
    status: answer.status,
    protocol: s.protocol,
    requestId: res.headers.get('x-request-id'),
    serverTiming: timing ? timing.serverTiming.map((t) => t.name) : null,
  };
} catch (e) {
  window.result = { error: e.name + ': ' + e.message };
}
</script>`;

// The SPA's own origin: 127.0.0.1 on another port (loopback to loopback, as Chromium's
// local-network rules require for a page reaching 127.0.0.1; and a secure context).
const app = createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(html);
});
await new Promise((ok) => app.listen(0, '127.0.0.1', ok));
const page_url = `http://127.0.0.1:${app.address().port}/app.html`;

try {
  console.log(JSON.stringify(await resultOf(page_url)));
} finally {
  app.close();
}
