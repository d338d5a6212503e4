// The browser counterpart of `session-crypto client` (PROTOCOL.md §13), WebCrypto only.
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

async function flow(clientId, payload) {
  const rows = [];
  const keyPair = await timed(rows, 'ECDH key generation', 'browser', () =>
    crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']));
  const rawPublic = await crypto.subtle.exportKey('raw', keyPair.publicKey);

  const initRes = await timed(rows, 'POST /session/init', 'round trip', () =>
    fetch('/session/init', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Idempotency-Key': idempotencyKey(), 'X-ClientId': clientId },
      body: JSON.stringify({ clientPublicKey: b64(rawPublic), ttlSec: 1800 }),
    }));
  if (initRes.status !== 200) throw await failure(initRes, 'init');
  for (const [name, dur] of serverTiming(initRes.headers.get('Server-Timing'))) rows.push([`  ${name}`, 'server (init)', dur]);
  const { sessionId, serverPublicKey } = await initRes.json();

  const sessionKey = await timed(rows, 'ECDH + HKDF-SHA256', 'browser', async () => {
    const peer = await crypto.subtle.importKey('raw', unb64(serverPublicKey), { name: 'ECDH', namedCurve: 'P-256' }, false, []);
    const shared = await crypto.subtle.deriveBits({ name: 'ECDH', public: peer }, keyPair.privateKey, 256);
    const hkdf = await crypto.subtle.importKey('raw', shared, 'HKDF', false, ['deriveKey']);
    return crypto.subtle.deriveKey(
      { name: 'HKDF', hash: 'SHA-256', salt: enc.encode(sessionId), info: enc.encode(`SESSION|A256GCM|${clientId}`) },
      hkdf, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  });

  const kid = `session:${sessionId}`;
  const requestKey = idempotencyKey();
  const [ts, nonce] = requestKey.split('.');
  const envelope = await timed(rows, 'AES-256-GCM encrypt', 'browser', async () => {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const sealed = new Uint8Array(await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv, additionalData: enc.encode(`${ts}|${nonce}|${kid}|${clientId}`), tagLength: 128 },
      sessionKey, enc.encode(JSON.stringify(payload))));
    const out = new Uint8Array(12 + sealed.length);
    out.set(iv);
    out.set(sealed, 12);
    return out;
  });

  const res = await timed(rows, 'POST /transaction/purchase', 'round trip', () =>
    fetch('/transaction/purchase', {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', 'X-Kid': kid, 'X-Idempotency-Key': requestKey, 'X-ClientId': clientId },
      body: envelope,
    }));
  if (res.status !== 200) throw await failure(res, 'purchase');
  for (const [name, dur] of serverTiming(res.headers.get('Server-Timing'))) rows.push([`  ${name}`, 'server (purchase)', dur]);
  const [rts, rnonce] = (res.headers.get('X-Idempotency-Key') || '').split('.');
  if (res.headers.get('X-Kid') !== kid) throw new Error('response X-Kid does not match the request');
  const answer = new Uint8Array(await res.arrayBuffer());

  const plain = await timed(rows, 'AES-256-GCM decrypt', 'browser', () =>
    crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: answer.slice(0, 12), additionalData: enc.encode(`${rts}|${rnonce}|${kid}|${clientId}`), tagLength: 128 },
      sessionKey, answer.slice(12)));
  return { response: JSON.parse(dec.decode(plain)), rows, sessionId };
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
    const { response, rows, sessionId } = await flow($('client-id').value, { schemeCode: $('scheme').value, amount });
    rows.push(['total', 'browser', performance.now() - started]);
    show(rows);
    $('transaction-id').textContent = response.transactionId;
    $('response').textContent = JSON.stringify(response, null, 2);
    status.className = 'ok';
    status.textContent = `Purchase confirmed in session ${sessionId.slice(0, 10)}…`;
  } catch (e) {
    status.className = 'error';
    status.textContent = `Failed: ${e.message}`;
  }
});
