// The library against real servers. They are started by tests/api/typescript.rs (one
// per crypto backend), which passes their URLs as SERVER_URLS="name=url,…"; without it
// these tests are skipped (run them with `cargo nextest run --test api typescript`).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { ClockSkewError, ConfigurationError, ProtocolError, RevokedError, ServerRefusedError, SessionCrypto } from '../dist/index.js';

import { baseUrl, servers, skip } from './servers.mjs';
const BUY = { schemeCode: 'AEF', amount: 5000 };

for (const [backend, baseUrl] of servers.length ? servers : [['none', '']]) {
  test(`${backend}: v1 and v2 flows on both init routes, then revoke`, { skip }, async () => {
    for (const protocol of [1, 2]) {
      for (const initPath of ['/session/init', '/v1/session/init']) {
        const s = await SessionCrypto.connect({ baseUrl, clientId: 'TS_CLIENT', protocol, initPath });
        assert.equal(s.protocol, protocol);
        const answer = await s.fetch('/transaction/purchase', { method: 'POST', body: BUY, headers: { 'X-Request-Id': 'ts-test-1' } });
        assert.equal(answer.status, 200);
        const v = await answer.json();
        assert.equal(v.status, 'SUCCESS');
        assert.equal(v.amount, 5000);
        for (const key of s.cryptoKeys) await assert.rejects(crypto.subtle.exportKey('raw', key), 'non-extractable');
        await s.revoke();
        // Revoked for good: later calls fail without a request, revoking again is a no-op.
        await assert.rejects(s.fetch('/transaction/purchase', { method: 'POST', body: BUY }), (e) => e instanceof RevokedError);
        await s.revoke();
      }
    }
  });
}


/** A fetch that passes `change` every answer on its way back. */
function intercepting(change) {
  return async (url, init) => change(await fetch(url, init), url, init);
}

test('a replayed or tampered answer is refused by the library', { skip }, async () => {
  let first;
  const replaying = intercepting(async (res, url) => {
    if (!url.endsWith('/transaction/purchase')) return res;
    const body = new Uint8Array(await res.arrayBuffer());
    const copy = () => new Response(body.slice(), { status: res.status, headers: res.headers });
    if (!first) first = copy;
    return first();
  });
  const s = await SessionCrypto.connect({ baseUrl, clientId: 'TS_REPLAY', fetch: replaying });
  await s.fetch('/transaction/purchase', { method: 'POST', body: BUY });
  const response = (e) => e instanceof ProtocolError && e.reason === 'response';
  await assert.rejects(s.fetch('/transaction/purchase', { method: 'POST', body: BUY }), response, 'the first answer, replayed for the second request');

  const flipping = intercepting(async (res, url) => {
    if (!url.endsWith('/transaction/purchase')) return res;
    const body = new Uint8Array(await res.arrayBuffer());
    body[20] ^= 1;
    return new Response(body, { status: res.status, headers: res.headers });
  });
  const t = await SessionCrypto.connect({ baseUrl, clientId: 'TS_TAMPER', fetch: flipping });
  await assert.rejects(t.fetch('/transaction/purchase', { method: 'POST', body: BUY }), response);
});

test('a tampered init answer is refused at once; a wrong pinned key too', { skip }, async () => {
  const stretching = intercepting(async (res, url) => {
    if (!url.endsWith('/session/init')) return res;
    const v = await res.json();
    v.expiresInSec = 86400;
    return new Response(JSON.stringify(v), { status: res.status, headers: res.headers });
  });
  await assert.rejects(
    SessionCrypto.connect({ baseUrl, clientId: 'TS_MITM', fetch: stretching }),
    (e) => e instanceof ProtocolError && e.reason === 'confirmation',
  );
  const downgrading = intercepting(async (res, url) => {
    if (!url.endsWith('/session/init')) return res;
    const { protocol: _p, confirm: _c, suite: _s, ...v1 } = await res.json();
    return new Response(JSON.stringify(v1), { status: res.status, headers: res.headers });
  });
  await assert.rejects(SessionCrypto.connect({ baseUrl, clientId: 'TS_MITM', fetch: downgrading }), (e) => e instanceof ProtocolError && e.reason === 'format');
  const well = await (await fetch(`${baseUrl}/.well-known/session-crypto`)).json();
  if (well.keys.length) {
    const s = await SessionCrypto.connect({ baseUrl, clientId: 'TS_PIN', serverKey: well.keys[0].jwk });
    await s.fetch('/transaction/purchase', { method: 'POST', body: BUY });
    const other = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const otherJwk = await crypto.subtle.exportKey('jwk', other.publicKey);
    const stranger = { kty: otherJwk.kty, crv: otherJwk.crv, x: otherJwk.x, y: otherJwk.y };
    await assert.rejects(
      SessionCrypto.connect({ baseUrl, clientId: 'TS_PIN', serverKey: stranger }),
      (e) => e instanceof ProtocolError && e.reason === 'signature',
    );
    // A set of pins (a key rotation): the signer anywhere in it is accepted, in either
    // form; a set without it is refused; an empty set is a mistake, not "no pin".
    for (const set of [[stranger, well.keys[0].publicKey], [well.keys[0].jwk, stranger]]) {
      const pinnedSet = await SessionCrypto.connect({ baseUrl, clientId: 'TS_PIN', serverKey: set });
      await pinnedSet.fetch('/transaction/purchase', { method: 'POST', body: BUY });
    }
    const another = await crypto.subtle.exportKey('raw', (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign'])).publicKey);
    await assert.rejects(
      SessionCrypto.connect({ baseUrl, clientId: 'TS_PIN', serverKey: [stranger, Buffer.from(another).toString('base64')] }),
      (e) => e instanceof ProtocolError && e.reason === 'signature',
    );
    await assert.rejects(SessionCrypto.connect({ baseUrl, clientId: 'TS_PIN', serverKey: [] }), ConfigurationError);
  }
});

test('a clock ten minutes slow: corrected from Date for inits and GETs, from the sealed refusal for a POST', { skip }, async () => {
  const realNow = Date.now;
  Date.now = () => realNow() - 600_000;
  try {
    const s = await SessionCrypto.connect({ baseUrl, clientId: 'TS_SKEW' });
    assert.ok(Math.abs(s.clockOffsetMs - 600_000) < 5_000, `offset ${s.clockOffsetMs}`);
    assert.equal((await s.fetch('/api/orders', { method: 'GET' })).status, 200);
    // The Date header is not authenticated: a POST goes out with this machine's clock.
    // The server's refusal comes sealed (bound to this request, with the server's
    // time): proven not run, so the library corrects its clock from it and sends the
    // POST again, once.
    let sent = 0;
    const counting = await SessionCrypto.connect({
      baseUrl,
      clientId: 'TS_SKEW',
      fetch: (url, init) => {
        if (new URL(url).pathname === '/transaction/purchase') sent += 1;
        return fetch(url, init);
      },
    });
    assert.equal((await (await counting.fetch('/transaction/purchase', { method: 'POST', body: BUY })).json()).status, 'SUCCESS');
    assert.equal(sent, 2, 'refused (sealed), then sent once more');
    assert.ok(Math.abs(counting.clockOffsetMs - 600_000) < 5_000, `offset ${counting.clockOffsetMs}`);
    assert.equal((await (await counting.fetch('/transaction/purchase', { method: 'POST', body: BUY })).json()).status, 'SUCCESS');
    assert.equal(sent, 3, 'the authenticated clock stamps later POSTs');
  } finally {
    Date.now = realNow;
  }
  // A server that refuses whatever the clock gets one retry, then the error says why.
  const alwaysSkewed = async () =>
    new Response('{"error":"CRYPTO_ERROR"}', { status: 400, headers: { date: new Date(Date.now() + 3_600_000).toUTCString() } });
  await assert.rejects(SessionCrypto.connect({ baseUrl, clientId: 'TS_SKEW', fetch: alwaysSkewed }), (e) => e instanceof ClockSkewError);
  // Refusals carry the server's code.
  const unsupported = async () => new Response('{"error":"RATE_LIMITED"}', { status: 429, headers: { 'retry-after': '3' } });
  await assert.rejects(
    SessionCrypto.connect({ baseUrl, clientId: 'TS_X', fetch: unsupported }),
    (e) => e instanceof ServerRefusedError && e.code === 'RATE_LIMITED' && e.retryAfterSec === 3,
  );
});
