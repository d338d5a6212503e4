// Pinned server signing keys (docs/PROTOCOL.md §13): every form an operator has at hand.

import { fromBase64 } from './encoding.js';
import { ConfigurationError } from './errors.js';

/** A server signing key to pin: PEM, base64 (SPKI or raw point), or a JWK. */
export type ServerKey = string | JsonWebKey;

const ECDSA = { name: 'ECDSA', namedCurve: 'P-256' };

/**
 * Imports `key` for verifying init answers: a PEM `PUBLIC KEY` (what `session-crypto
 * keygen --signing` prints), the base64 of an SPKI or of a raw 65-byte point (the
 * well-known document's `publicKey`), or its `jwk`. Anything else is a
 * {@link ConfigurationError} that says what was given and what is expected.
 */
export async function importPin(key: ServerKey, what = 'serverKey'): Promise<CryptoKey> {
  if (key === null || (typeof key !== 'string' && typeof key !== 'object')) {
    throw new ConfigurationError(`${what}: expected a PEM or base64 public key or a JWK, got ${key === null ? 'null' : typeof key}`);
  }
  try {
    if (typeof key !== 'string') {
      if (key.kty !== 'EC' || key.crv !== 'P-256' || key.d !== undefined) {
        throw new ConfigurationError(`${what}: a JWK must be a P-256 public key (kty EC, crv P-256, no d)`);
      }
      return await crypto.subtle.importKey('jwk', key, ECDSA, false, ['verify']);
    }
    const text = key.trim();
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
      throw new ConfigurationError(`${what}: that is a private key; pin the server's public key (keygen --signing prints it)`);
    }
    const pem = /^-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----$/.exec(text);
    let der: Uint8Array;
    try {
      der = fromBase64((pem ? pem[1]! : text).replace(/\s+/g, ''));
    } catch {
      throw new ConfigurationError(`${what}: neither a PEM PUBLIC KEY nor base64`);
    }
    if (!pem && der.length === 65 && der[0] === 4) {
      return await crypto.subtle.importKey('raw', der as Uint8Array<ArrayBuffer>, ECDSA, false, ['verify']);
    }
    return await crypto.subtle.importKey('spki', der as Uint8Array<ArrayBuffer>, ECDSA, false, ['verify']);
  } catch (e) {
    if (e instanceof ConfigurationError) throw e;
    throw new ConfigurationError(`${what}: not a P-256 public key (${e instanceof Error ? e.message : String(e)})`);
  }
}
