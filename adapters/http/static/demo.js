// The browser counterpart of `session-crypto client`: protocol v2 (docs/PROTOCOL.md),
// WebCrypto only, every key non-extractable.
'use strict';

const enc = new TextEncoder();
const dec = new TextDecoder();
const $ = (id) => document.getElementById(id);

const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)));
const unb64 = (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
const idempotencyKey = () => `${Date.now()}.${crypto.randomUUID()}`;

/** Runs `f`, records its duration under `step`. */
async function timed(rows, step, where, f) {
  const t = performance.now();
  const value = await f();
  rows.push([step, where, performance.now() - t]);
  return value;
}

/** `Server-Timing: a;dur=1.2, b;dur=0.3` → [[a, 1.2], …] */
function serverTiming(header) {
  return (header || '').split(',').map((part) => {
    const [name, ...params] = part.trim().split(';');
    const dur = params.map((p) => p.trim()).find((p) => p.startsWith('dur='));
    return [name, dur ? Number(dur.slice(4)) : NaN];
  }).filter(([name, dur]) => name && !Number.isNaN(dur));
}

async function failure(res, what) {
  let detail = '';
  try { detail = await res.text(); } catch (_) { /* no body */ }
  return new Error(`${what} answered ${res.status} ${detail}`);
}

// Protocol v2 (docs/PROTOCOL.md, part III): every byte string is a list of fields, each
// preceded by its length as two big-endian bytes.
const SUITE = 'P256-HKDF-SHA256-A256GCM';
function fields(...parts) {
  const bytes = parts.map((p) => (typeof p === 'string' ? enc.encode(p) : new Uint8Array(p)));
  const out = new Uint8Array(bytes.reduce((n, b) => n + 2 + b.length, 0));
  let at = 0;
  for (const b of bytes) {
    if (b.length > 0xffff) throw new Error('field too long');
    out[at] = b.length >> 8;
    out[at + 1] = b.length & 0xff;
    out.set(b, at + 2);
    at += 2 + b.length;
  }
  return out;
}

/** The v2 key schedule: transcript hash, directional AES keys, key confirmation. */
async function v2Session(keyPair, rawPublic, answer, clientId) {
  const serverPublic = unb64(answer.serverPublicKey);
  const transcript = fields('session-crypto/2 transcript', '2', SUITE, clientId, answer.sessionId, rawPublic, serverPublic);
  const th = new Uint8Array(await crypto.subtle.digest('SHA-256', transcript));
  const peer = await crypto.subtle.importKey('raw', serverPublic, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
  const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: peer }, keyPair.privateKey, 256);
  const ikm = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
  const derive = (label, algorithm, usages) => crypto.subtle.deriveKey(
    { name: 'HKDF', hash: 'SHA-256', salt: th, info: enc.encode(label) }, ikm, algorithm, false, usages);
  const aes = { name: 'AES-GCM', length: 256 };
  const [requestKey, responseKey, confirmKey] = await Promise.all([
    derive('session-crypto/2 c2s', aes, ['encrypt']),
    derive('session-crypto/2 s2c', aes, ['decrypt']),
    derive('session-crypto/2 confirm', { name: 'HMAC', hash: 'SHA-256', length: 256 }, ['verify']),
  ]);
  return { th, requestKey, responseKey, confirmKey };
}

/** Checks `confirm`; and a signature against the key the server publishes. */
async function confirmSession(session, answer) {
  const input = fields('session-crypto/2 server confirm', session.th, String(answer.expiresInSec));
  if (!answer.confirm || !await crypto.subtle.verify('HMAC', session.confirmKey, unb64(answer.confirm), input)) {
    throw new Error('key confirmation failed: the init exchange was tampered with');
  }
  if (!answer.signature) return 'keys confirmed';
  const res = await fetch('/.well-known/session-crypto');
  const published = (await res.json()).keys.find((k) => k.kid === answer.signingKeyId);
  if (!published) throw new Error('the init response is signed by an unpublished key');
  const key = await crypto.subtle.importKey('jwk', published.jwk, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  const signed = fields('session-crypto/2 server signature', session.th);
  if (!await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, unb64(answer.signature), signed)) {
    throw new Error('the server signature does not verify');
  }
  return `keys confirmed, signed by ${answer.signingKeyId}`;
}

async function flow(clientId, payload) {
  const rows = [];
  const keyPair = await timed(rows, 'ECDH key generation', 'browser', () =>
    crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']));
  const rawPublic = new Uint8Array(await crypto.subtle.exportKey('raw', keyPair.publicKey));

  const initRes = await timed(rows, 'POST /session/init', 'round trip', () =>
    fetch('/session/init', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Idempotency-Key': idempotencyKey(), 'X-ClientId': clientId },
      body: JSON.stringify({ clientPublicKey: b64(rawPublic), ttlSec: 1800, protocol: 2 }),
    }));
  if (initRes.status !== 200) throw await failure(initRes, 'init');
  for (const [name, dur] of serverTiming(initRes.headers.get('Server-Timing'))) rows.push([`  ${name}`, 'server (init)', dur]);
  const answer = await initRes.json();
  if (answer.protocol !== 2) throw new Error('the server did not answer with protocol 2');
  const { sessionId } = answer;

  const session = await timed(rows, 'ECDH + HKDF-SHA256', 'browser', () => v2Session(keyPair, rawPublic, answer, clientId));
  const confirmed = await timed(rows, 'key confirmation (HMAC)', 'browser', () => confirmSession(session, answer));

  const kid = `session:${sessionId}`;
  const [method, target] = ['POST', '/transaction/purchase'];
  const requestKey = idempotencyKey();
  const [ts, nonce] = requestKey.split('.');
  const envelope = await timed(rows, 'AES-256-GCM encrypt', 'browser', async () => {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const aad = fields('session-crypto/2 request', method, target, '', kid, clientId, ts, nonce);
    const sealed = new Uint8Array(await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 }, session.requestKey, enc.encode(JSON.stringify(payload))));
    const out = new Uint8Array(12 + sealed.length);
    out.set(iv);
    out.set(sealed, 12);
    return out;
  });

  const res = await timed(rows, 'POST /transaction/purchase', 'round trip', () =>
    fetch(target, {
      method,
      headers: { 'Content-Type': 'application/octet-stream', 'X-Kid': kid, 'X-Idempotency-Key': requestKey, 'X-ClientId': clientId },
      body: envelope,
    }));
  if (res.status !== 200) throw await failure(res, 'purchase');
  for (const [name, dur] of serverTiming(res.headers.get('Server-Timing'))) rows.push([`  ${name}`, 'server (purchase)', dur]);
  const [rts, rnonce] = (res.headers.get('X-Idempotency-Key') || '').split('.');
  if (res.headers.get('X-Kid') !== kid) throw new Error('response X-Kid does not match the request');
  const answerBytes = new Uint8Array(await res.arrayBuffer());

  // The answer is bound to this request (its nonce) and to the status.
  const plain = await timed(rows, 'AES-256-GCM decrypt', 'browser', () =>
    crypto.subtle.decrypt(
      {
        name: 'AES-GCM',
        iv: answerBytes.slice(0, 12),
        additionalData: fields('session-crypto/2 response', method, target, res.headers.get('X-Inner-Content-Type') || '',
          kid, clientId, rts, rnonce, nonce, String(res.status)),
        tagLength: 128,
      },
      session.responseKey, answerBytes.slice(12)));
  return { response: JSON.parse(dec.decode(plain)), rows, sessionId, confirmed };
}

function show(rows) {
  const body = $('timings');
  body.replaceChildren(...rows.map(([step, where, ms]) => {
    const tr = document.createElement('tr');
    const sub = where.startsWith('server') ? 'sub' : '';
    for (const [text, cls] of [[step.trim(), sub], [where, ''], [ms.toFixed(3), 'num']]) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  }));
}

$('run').addEventListener('click', async () => {
  const status = $('status');
  status.className = '';
  status.textContent = 'Running…';
  $('transaction-id').textContent = '—';
  $('response').textContent = '—';
  const amount = Number($('amount').value);
  try {
    const started = performance.now();
    const { response, rows, sessionId, confirmed } = await flow($('client-id').value, { schemeCode: $('scheme').value, amount });
    rows.push(['total', 'browser', performance.now() - started]);
    show(rows);
    $('transaction-id').textContent = response.transactionId;
    $('response').textContent = JSON.stringify(response, null, 2);
    status.className = 'ok';
    status.textContent = `Purchase confirmed in protocol 2 session ${sessionId.slice(0, 10)}… (${confirmed})`;
  } catch (e) {
    status.className = 'error';
    status.textContent = `Failed: ${e.message}`;
  }
});
