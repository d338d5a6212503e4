// Serves a built single-page app (a directory, e.g. Vite's dist/) from its own loopback
// origin, opens it in headless Chromium and prints what the page left in
// `window.result` (and any page error) as JSON.
// Usage: node built-page.mjs <dist directory>
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { resultOf } from './page.mjs';

const [root] = process.argv.slice(2);
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };
const app = createServer(async (req, res) => {
  if (req.url === '/favicon.ico') {
    res.writeHead(204);
    res.end();
    return;
  }
  const path = normalize(new URL(req.url, 'http://x').pathname).replace(/^(\.\.[/\\])+/, '');
  try {
    const body = await readFile(join(root, path === '/' ? 'index.html' : path));
    res.writeHead(200, { 'content-type': types[extname(path) || '.html'] ?? 'application/octet-stream' });
    res.end(body);
  } catch {
    res.writeHead(404);
    res.end();
  }
});
await new Promise((ok) => app.listen(0, '127.0.0.1', ok));
try {
  console.log(JSON.stringify(await resultOf(`http://127.0.0.1:${app.address().port}/`)));
} finally {
  app.close();
}
