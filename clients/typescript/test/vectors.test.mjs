// The library against the published vectors (vectors/*.json): AAD bytes, the v2
// transcript hash, key derivation (through the envelopes, since the keys cannot be
// exported), key confirmation and the server signature.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { fromBase64 } from '../dist/encoding.js';
import { ProtocolError } from '../dist/errors.js';
import { open, refusalAad, requestAad, responseAad, transcriptHash, v1Session, v2Session } from '../dist/protocol.js';
import { importPin as importServerKey } from '../dist/pin.js';

const root = new URL('../../../vectors/', import.meta.url);
const v1 = JSON.parse(readFileSync(new URL('reference-v1.json', root)));
const v2 = JSON.parse(readFileSync(new URL('protocol-v2.json', root)));
const exchanges = JSON.parse(readFileSync(new URL('exchanges.json', root)));
const hex = (h) => Uint8Array.from(h.match(/../g) ?? [], (b) => parseInt(b, 16));
const toHex = (b) => Buffer.from(b).toString('hex');
const b64url = (b) => Buffer.from(b).toString('base64url');

/** The vector's client key pair, imported as a non-extractable ECDH key (JWK with d). */
async function clientKeyPair(scalarHex, publicB64) {
  const pub = fromBase64(publicB64);
  const jwk = { kty: 'EC', crv: 'P-256', x: b64url(pub.slice(1, 33)), y: b64url(pub.slice(33)), d: b64url(hex(scalarHex)) };
  const privateKey = await crypto.subtle.importKey('jwk', jwk, { name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
  const publicKey = await crypto.subtle.importKey('raw', pub, { name: 'ECDH', namedCurve: 'P-256' }, true, []);
  return { privateKey, publicKey };
}

const split = (k) => k.split('.');

test('v1: the session key opens the reference envelopes, AAD byte for byte', async () => {
  const kp = await clientKeyPair(v1.client_private_scalar, v1.client_public_key_b64);
  const s = await v1Session(kp, { sessionId: v1.session_id_ascii, serverPublicKey: v1.server_public_key_b64, expiresInSec: 1800 }, v1.client_id_ascii);
  const line = { method: 'POST', target: '/transaction/purchase', contentType: '' };
  const [ts, nonce] = split(v1.request.x_idempotency_key_ascii);
  const aad = requestAad(s, line, ts, nonce);
  assert.equal(new TextDecoder().decode(aad), v1.request.aad_ascii);
  assert.equal(new TextDecoder().decode(await open(s.requestKey, aad, hex(v1.request.envelope))), v1.request.plaintext_ascii);
  const [rts, rnonce] = split(v1.response.x_idempotency_key_ascii);
  const raad = responseAad(s, line, rts, rnonce, nonce, 200);
  assert.equal(new TextDecoder().decode(raad), v1.response.aad_ascii);
  assert.equal(new TextDecoder().decode(await open(s.responseKey, raad, hex(v1.response.envelope))), v1.response.plaintext_ascii);
});

function v2Answer(overrides = {}) {
  const answer = JSON.parse(v2.init_response_ascii);
  return { ...answer, ...overrides };
}

test('v2: transcript hash, AADs, keys (through the envelopes), confirmation and signature', async () => {
  const kp = await clientKeyPair(v2.client_private_scalar, v2.client_public_key_b64);
  const clientPublic = fromBase64(v2.client_public_key_b64);
  const th = await transcriptHash(v2.client_id_ascii, v2.session_id_ascii, clientPublic, fromBase64(v2.server_public_key_b64));
  assert.equal(toHex(th), v2.transcript_hash);
  const pinned = await importServerKey(v2.signing.public_key_b64);
  const s = await v2Session(kp, clientPublic, v2Answer(), v2.client_id_ascii, [pinned]);
  assert.equal(s.protocol, 2);
  const line = { method: v2.request.method_ascii, target: v2.request.target_ascii, contentType: '' };
  const [ts, nonce] = split(v2.request.x_idempotency_key_ascii);
  const aad = requestAad(s, line, ts, nonce);
  assert.equal(toHex(aad), v2.request.aad);
  // The request key seals exactly the vector's envelope under its IV.
  const iv = hex(v2.request.iv);
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad, tagLength: 128 }, s.requestKey, new TextEncoder().encode(v2.request.plaintext_ascii)));
  assert.equal(toHex(iv) + toHex(sealed), v2.request.envelope);
  const [rts, rnonce] = split(v2.response.x_idempotency_key_ascii);
  const raad = responseAad(s, line, rts, rnonce, nonce, v2.response.status);
  assert.equal(toHex(raad), v2.response.aad);
  assert.equal(new TextDecoder().decode(await open(s.responseKey, raad, hex(v2.response.envelope))), v2.response.plaintext_ascii);
  // Directional: the request key cannot open, the response key cannot seal.
  await assert.rejects(crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: aad }, s.requestKey, sealed));
  // Non-extractable.
  for (const key of [s.requestKey, s.responseKey, kp.privateKey]) await assert.rejects(crypto.subtle.exportKey('raw', key));
});

test('v2: a changed init answer fails confirmation; a wrong or missing signature fails the pin', async () => {
  const kp = await clientKeyPair(v2.client_private_scalar, v2.client_public_key_b64);
  const clientPublic = fromBase64(v2.client_public_key_b64);
  const confirmation = (e) => e instanceof ProtocolError && e.reason === 'confirmation';
  const signature = (e) => e instanceof ProtocolError && e.reason === 'signature';
  await assert.rejects(v2Session(kp, clientPublic, v2Answer({ expiresInSec: 3600 }), v2.client_id_ascii, []), confirmation);
  await assert.rejects(v2Session(kp, clientPublic, v2Answer(), 'OTHER_CLIENT', []), confirmation);
  await assert.rejects(v2Session(kp, clientPublic, v2Answer({ confirm: undefined }), v2.client_id_ascii, []), confirmation);
  const pinned = await importServerKey(v2.signing.public_key_b64);
  await assert.rejects(v2Session(kp, clientPublic, v2Answer({ signature: undefined }), v2.client_id_ascii, [pinned]), signature);
  const other = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
  await assert.rejects(v2Session(kp, clientPublic, v2Answer(), v2.client_id_ascii, [other.publicKey]), signature);
  // The pin accepts the JWK form too.
  const jwk = await crypto.subtle.exportKey('jwk', await crypto.subtle.importKey('raw', fromBase64(v2.signing.public_key_b64), { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']));
  await v2Session(kp, clientPublic, v2Answer(), v2.client_id_ascii, [await importServerKey(jwk)]);
});

test('exchanges.json: gateway exchanges (GET in X-Envelope, inner content types, a 204) and a v1 rsp_ answer', async () => {
  const kp = await clientKeyPair(v2.client_private_scalar, v2.client_public_key_b64);
  const s = await v2Session(kp, fromBase64(v2.client_public_key_b64), v2Answer(), v2.client_id_ascii, []);
  assert.equal(s.kid, exchanges.x_kid_ascii);
  const text = (b) => new TextDecoder().decode(b);
  for (const { name, request, response } of exchanges.gateway) {
    const line = { method: request.method_ascii, target: request.target_ascii, contentType: request.inner_content_type_ascii };
    const [ts, nonce] = split(request.x_idempotency_key_ascii);
    const aad = requestAad(s, line, ts, nonce, request.idempotency_key_header_ascii);
    assert.equal(toHex(aad), request.aad, name);
    const iv = hex(request.iv);
    const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, s.requestKey, new TextEncoder().encode(request.plaintext_ascii)));
    assert.equal(toHex(iv) + toHex(sealed), request.envelope, name);
    if (request.method_ascii === 'GET') assert.equal(toHex(fromBase64(request.x_envelope_ascii)), request.envelope, name);
    // The answer as the library opens it: the status from X-Inner-Status when present,
    // the content type from the answer's X-Inner-Content-Type.
    const status = response.x_inner_status_ascii === undefined ? response.http_status : Number(response.x_inner_status_ascii);
    assert.equal(status, response.status, name);
    const [rts, rnonce] = split(response.x_idempotency_key_ascii);
    const raad = responseAad(s, { ...line, contentType: response.inner_content_type_ascii }, rts, rnonce, nonce, status);
    assert.equal(toHex(raad), response.aad, name);
    assert.equal(text(await open(s.responseKey, raad, hex(response.envelope))), response.plaintext_ascii, name);
    // The wire status instead of the inner one does not open.
    const wire = responseAad(s, { ...line, contentType: response.inner_content_type_ascii }, rts, rnonce, nonce, response.http_status);
    if (response.http_status !== response.status) await assert.rejects(open(s.responseKey, wire, hex(response.envelope)));
  }
  // The sealed refusal of the v2 example's request (§9.1).
  const refusal = exchanges.v2_refusal;
  const purchase = { method: v2.request.method_ascii, target: v2.request.target_ascii, contentType: '' };
  const [, requestNonce] = split(v2.request.x_idempotency_key_ascii);
  const [fts, fnonce] = split(refusal.x_idempotency_key_ascii);
  const faad = refusalAad(s, purchase, fts, fnonce, requestNonce, refusal.status);
  assert.equal(toHex(faad), refusal.aad);
  assert.equal(text(await open(s.responseKey, faad, hex(refusal.envelope))), refusal.plaintext_ascii);
  await assert.rejects(open(s.responseKey, responseAad(s, purchase, fts, fnonce, requestNonce, refusal.status), hex(refusal.envelope)));
  const k1 = await clientKeyPair(v1.client_private_scalar, v1.client_public_key_b64);
  const s1 = await v1Session(k1, { sessionId: v1.session_id_ascii, serverPublicKey: v1.server_public_key_b64, expiresInSec: 1800 }, v1.client_id_ascii);
  const r = exchanges.v1_response;
  const [rts, rnonce] = split(r.x_idempotency_key_ascii);
  assert.ok(rnonce.startsWith('rsp_'));
  const raad = responseAad(s1, { method: 'POST', target: '/transaction/purchase', contentType: '' }, rts, rnonce, 'unused-in-v1', 200);
  assert.equal(text(raad), r.aad_ascii);
  assert.equal(text(await open(s1.responseKey, raad, hex(r.envelope))), r.plaintext_ascii);
});
