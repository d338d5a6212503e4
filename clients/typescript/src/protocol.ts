// The protocol's client rules (docs/PROTOCOL.md): key derivation for v1 and v2, the AADs,
// key confirmation and the server signature. Every key is a non-extractable CryptoKey.

import { fields, fromBase64, utf8 } from './encoding.js';
import { ProtocolError } from './errors.js';

const subtle = (): SubtleCrypto => globalThis.crypto.subtle;

export const SUITE = 'P256-HKDF-SHA256-A256GCM';

/** The request line a v2 AAD binds. */
export interface RequestLine {
  method: string;
  target: string;
  contentType: string;
}

/** A session's keys and identity. `requestKey === responseKey` in v1. */
export interface SessionKeys {
  protocol: 1 | 2;
  sessionId: string;
  kid: string;
  clientId: string;
  requestKey: CryptoKey;
  responseKey: CryptoKey;
  expiresInSec: number;
}

/** The init answer's members the client reads. */
export interface InitAnswer {
  sessionId: string;
  serverPublicKey: string;
  expiresInSec: number;
  protocol?: number;
  confirm?: string;
  signature?: string;
  signingKeyId?: string;
}

// TypeScript's DOM types want an ArrayBuffer-backed view.
const buf = (b: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(b);

/** A fresh ephemeral ECDH key pair; the private key cannot be exported. */
export function generateKeyPair(): Promise<CryptoKeyPair> {
  return subtle().generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
}

async function sharedSecret(privateKey: CryptoKey, serverPublic: Uint8Array): Promise<CryptoKey> {
  if (serverPublic.length !== 65 || serverPublic[0] !== 4) {
    throw new ProtocolError('format', 'serverPublicKey is not an uncompressed P-256 point');
  }
  let peer: CryptoKey;
  try {
    peer = await subtle().importKey('raw', buf(serverPublic), { name: 'ECDH', namedCurve: 'P-256' }, false, []);
  } catch {
    throw new ProtocolError('format', 'serverPublicKey is not a point on P-256');
  }
  const z = await subtle().deriveBits({ name: 'ECDH', public: peer }, privateKey, 256);
  return subtle().importKey('raw', z, 'HKDF', false, ['deriveKey']);
}

const AES = { name: 'AES-GCM', length: 256 } as const;

function hkdf(ikm: CryptoKey, salt: Uint8Array, info: Uint8Array, algorithm: AesKeyGenParams | HmacKeyGenParams, usages: KeyUsage[]) {
  return subtle().deriveKey({ name: 'HKDF', hash: 'SHA-256', salt: buf(salt), info: buf(info) }, ikm, algorithm, false, usages);
}

/** v1 (§10): one key, HKDF(Z, salt = session id, info = "SESSION|A256GCM|" + client id). */
export async function v1Session(
  keyPair: CryptoKeyPair,
  answer: InitAnswer,
  clientId: string,
): Promise<SessionKeys> {
  const ikm = await sharedSecret(keyPair.privateKey, fromBase64(answer.serverPublicKey));
  const key = await hkdf(ikm, utf8(answer.sessionId), utf8(`SESSION|A256GCM|${clientId}`), AES, ['encrypt', 'decrypt']);
  return session(1, answer, clientId, key, key);
}

function session(protocol: 1 | 2, answer: InitAnswer, clientId: string, requestKey: CryptoKey, responseKey: CryptoKey): SessionKeys {
  return {
    protocol,
    sessionId: answer.sessionId,
    kid: `session:${answer.sessionId}`,
    clientId,
    requestKey,
    responseKey,
    expiresInSec: answer.expiresInSec,
  };
}

/** The v2 transcript hash (§13). */
export async function transcriptHash(
  clientId: string,
  sessionId: string,
  clientPublic: Uint8Array,
  serverPublic: Uint8Array,
): Promise<Uint8Array> {
  const transcript = fields('session-crypto/2 transcript', '2', SUITE, clientId, sessionId, clientPublic, serverPublic);
  return new Uint8Array(await subtle().digest('SHA-256', buf(transcript)));
}

/**
 * v2 (§13–14): the transcript hash, the directional keys, and the checks — the
 * signature first when keys are pinned (it must verify under one of them), then the key
 * confirmation.
 */
export async function v2Session(
  keyPair: CryptoKeyPair,
  clientPublic: Uint8Array,
  answer: InitAnswer,
  clientId: string,
  pinned: readonly CryptoKey[],
): Promise<SessionKeys> {
  const serverPublic = fromBase64(answer.serverPublicKey);
  const th = await transcriptHash(clientId, answer.sessionId, clientPublic, serverPublic);
  if (pinned.length > 0) {
    const signature = answer.signature === undefined ? undefined : fromBase64(answer.signature);
    const input = fields('session-crypto/2 server signature', th);
    let signed = false;
    for (const key of pinned) {
      if (signature !== undefined && (await subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, key, buf(signature), buf(input)))) {
        signed = true;
        break;
      }
    }
    if (!signed) throw new ProtocolError('signature', 'the init answer is not signed by a pinned server key');
  }
  const ikm = await sharedSecret(keyPair.privateKey, serverPublic);
  const [requestKey, responseKey, confirmKey] = await Promise.all([
    hkdf(ikm, th, utf8('session-crypto/2 c2s'), AES, ['encrypt']),
    hkdf(ikm, th, utf8('session-crypto/2 s2c'), AES, ['decrypt']),
    hkdf(ikm, th, utf8('session-crypto/2 confirm'), { name: 'HMAC', hash: 'SHA-256', length: 256 }, ['verify']),
  ]);
  const input = fields('session-crypto/2 server confirm', th, String(answer.expiresInSec));
  const confirm = answer.confirm === undefined ? undefined : fromBase64(answer.confirm);
  if (confirm === undefined || !(await subtle().verify('HMAC', confirmKey, buf(confirm), buf(input)))) {
    throw new ProtocolError('confirmation', 'key confirmation failed: the init exchange was changed in transit');
  }
  return session(2, answer, clientId, requestKey, responseKey);
}

/** The request AAD of the session's version (§11, §15). */
export function requestAad(s: SessionKeys, line: RequestLine, timestamp: string, nonce: string, callKey?: string): Uint8Array {
  if (s.protocol === 1) return utf8(`${timestamp}|${nonce}|${s.kid}|${s.clientId}`);
  const base = ['session-crypto/2 request', line.method, line.target, line.contentType, s.kid, s.clientId, timestamp, nonce];
  // With an Idempotency-Key, its value (quoted, as sent) is one more field (§15).
  return callKey === undefined ? fields(...base) : fields(...base, callKey);
}

/** The response AAD (§11, §15): v2 binds the request's nonce and the status. */
export function responseAad(
  s: SessionKeys,
  line: RequestLine,
  timestamp: string,
  nonce: string,
  requestNonce: string,
  status: number,
): Uint8Array {
  if (s.protocol === 1) return utf8(`${timestamp}|${nonce}|${s.kid}|${s.clientId}`);
  return fields('session-crypto/2 response', line.method, line.target, line.contentType, s.kid, s.clientId, timestamp, nonce, requestNonce, String(status));
}

/**
 * The AAD of a sealed refusal (§9.1, v2 only): the response AAD's fields under its own
 * label, with the request's content type.
 */
export function refusalAad(s: SessionKeys, line: RequestLine, timestamp: string, nonce: string, requestNonce: string, status: number): Uint8Array {
  return fields('session-crypto/2 refusal', line.method, line.target, line.contentType, s.kid, s.clientId, timestamp, nonce, requestNonce, String(status));
}

/** `IV ‖ ciphertext ‖ tag` under `key`. */
export async function seal(key: CryptoKey, aad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: buf(aad), tagLength: 128 }, key, buf(plaintext)));
  const out = new Uint8Array(12 + sealed.length);
  out.set(iv);
  out.set(sealed, 12);
  return out;
}

/** Opens an envelope; throws `ProtocolError('response')` when it does not authenticate. */
export async function open(key: CryptoKey, aad: Uint8Array, envelope: Uint8Array): Promise<ArrayBuffer> {
  if (envelope.length < 28) throw new ProtocolError('response', 'sealed answer shorter than 28 bytes');
  try {
    return await subtle().decrypt(
      { name: 'AES-GCM', iv: buf(envelope.subarray(0, 12)), additionalData: buf(aad), tagLength: 128 },
      key,
      buf(envelope.subarray(12)),
    );
  } catch {
    throw new ProtocolError('response', 'the sealed answer does not authenticate for this request');
  }
}
