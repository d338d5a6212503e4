// The library on gateway routes. tests/api/typescript.rs starts every server with
// GATEWAY_UPSTREAM pointing at tests/gateway/upstream.py (a Python echo service that
// answers JSON describing the request it received) under the default prefix /api/.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ServerRefusedError, SessionCrypto } from '../dist/index.js';

import { servers, skip } from './servers.mjs';

for (const [backend, baseUrl] of servers.length ? servers : [['none', '']]) {
  test(`${backend}: fetch on a gateway route reaches the upstream and opens its answer`, { skip }, async () => {
    const s = await SessionCrypto.connect({ baseUrl, clientId: 'TS_GATEWAY' });
    const order = { item: 'book', qty: 2 };
    const res = await s.fetch('/api/orders?expand=lines', { method: 'POST', body: order, headers: { 'X-Request-Id': 'ts-gw-1' } });
    assert.equal(res.status, 200);
    assert.equal(res.ok, true);
    assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
    const seen = await res.json();
    assert.equal(seen.server, 'python');
    assert.equal(seen.method, 'POST');
    assert.equal(seen.target, '/orders?expand=lines');
    assert.deepEqual(JSON.parse(Buffer.from(seen.body, 'base64').toString()), order);
    assert.equal(seen.headers['content-type'], 'application/json');
    assert.equal(seen.headers['x-session-client-id'], 'TS_GATEWAY');
    assert.equal(seen.headers['x-session-protocol'], '2');
    assert.match(seen.headers['x-session-id'], /^[0-9a-f]{32}$/);
    assert.ok(!s.sessionId.includes(seen.headers['x-session-id']));
    assert.equal(seen.headers['x-request-id'], 'ts-gw-1');

    // GET: no body on the wire (the envelope is in X-Envelope), the default method's
    // content type, and a sealed 404 is an answer, not an error.
    const got = await s.fetch('/api/status/404?x=1', { method: 'GET' });
    assert.equal(got.status, 404);
    assert.equal(got.ok, false);
    const echoed = await got.json();
    assert.equal(echoed.method, 'GET');
    assert.equal(echoed.body, '');
    assert.equal(echoed.headers['x-envelope'], undefined);

    // A text body with its own content type, bound in the AAD.
    const text = await s.fetch('/api/notes', { method: 'PUT', body: 'héllo', contentType: 'text/plain; charset=utf-8' });
    const note = await text.json();
    assert.equal(note.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(Buffer.from(note.body, 'base64').toString(), 'héllo');
    assert.equal((await s.fetch('/api/status/500', { method: 'DELETE' })).status, 500);

    // The target is bound as it goes on the wire (URL parsing encodes the space and
    // resolves the dot segment), and the upstream gets it so.
    const odd = await (await s.fetch('/api/a b/./c/../d?q=x y')).json();
    assert.equal(odd.target, '/a%20b/d?q=x%20y');
    // The gateway's own refusal (an encoded slash could leave the route) throws.
    await assert.rejects(s.fetch('/api/a%2Fb'), (e) => e instanceof ServerRefusedError && e.status === 400 && e.code === 'INVALID_PATH');
  });
}
