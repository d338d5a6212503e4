// The built library stays small: minified and gzipped, at most 10 kB (its size is printed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

const entry = new URL('../src/index.ts', import.meta.url).pathname;

export async function bundle(minify) {
  const out = await build({ entryPoints: [entry], bundle: true, format: 'esm', minify, write: false, target: 'es2022', legalComments: 'none' });
  return out.outputFiles[0].text;
}

test('minified + gzipped size ≤ 10 kB', async () => {
  const size = gzipSync(await bundle(true), { level: 9 }).length;
  console.log(`session-crypto-client: ${size} bytes minified + gzipped`);
  assert.ok(size <= 10 * 1024, `${size} bytes`);
});

test('the browser demo serves the current library (adapters/http/static/session-crypto-client.js)', async () => {
  const served = readFileSync(new URL('../../../adapters/http/static/session-crypto-client.js', import.meta.url), 'utf8');
  assert.equal(served, await bundle(true), 'rebuild it: npm run bundle --prefix clients/typescript');
});
