// An independent client written from the reference's PROTOCOL.md alone (its §13; docs/PROTOCOL.md §12 here), using only WebCrypto
// as the browser SPAs do. Usage: node client.mjs http://127.0.0.1:3000
// Prints the decrypted purchase response; exits non-zero on any failure.
import { webcrypto as crypto } from 'node:crypto';

const base = process.argv[2] ?? 'http://localhost:3000';
const clientId = 'NODE_CLIENT';
const enc = new TextEncoder();
const b64 = (buf) => Buffer.from(buf).toString('base64');
const unb64 = (s) => new Uint8Array(Buffer.from(s, 'base64'));
const idem = () => `${Date.now()}.${crypto.randomUUID()}`;

const kp = await crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits']);
const rawPub = new Uint8Array(await crypto.subtle.exportKey('raw', kp.publicKey)); // 65 bytes, 0x04||X||Y

const initRes = await fetch(`${base}/session/init`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json', 'X-Idempotency-Key': idem(), 'X-ClientId': clientId },
  body: JSON.stringify({ clientPublicKey: b64(rawPub), ttlSec: 1800 }),
});
if (initRes.status !== 200) throw new Error(`init ${initRes.status}: ${await initRes.text()}`);
const { sessionId, serverPublicKey } = await initRes.json();

const serverKey = await crypto.subtle.importKey('raw', unb64(serverPublicKey), { name: 'ECDH', namedCurve: 'P-256' }, false, []);
const z = await crypto.subtle.deriveBits({ name: 'ECDH', public: serverKey }, kp.privateKey, 256);
const hkdfKey = await crypto.subtle.importKey('raw', z, 'HKDF', false, ['deriveKey']);
const sessionKey = await crypto.subtle.deriveKey(
  { name: 'HKDF', hash: 'SHA-256', salt: enc.encode(sessionId), info: enc.encode(`SESSION|A256GCM|${clientId}`) },
  hkdfKey, { name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);

const kid = `session:${sessionId}`;
const key = idem();
const [ts, nonce] = key.split('.');
const iv = crypto.getRandomValues(new Uint8Array(12));
const ct = new Uint8Array(await crypto.subtle.encrypt(
  { name: 'AES-GCM', iv, additionalData: enc.encode(`${ts}|${nonce}|${kid}|${clientId}`), tagLength: 128 },
  sessionKey, enc.encode(JSON.stringify({ schemeCode: 'AEF', amount: 5000 }))));
const body = new Uint8Array(12 + ct.length);
body.set(iv); body.set(ct, 12);

const res = await fetch(`${base}/transaction/purchase`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/octet-stream', 'X-Kid': kid, 'X-Idempotency-Key': key, 'X-ClientId': clientId },
  body,
});
if (res.status !== 200) throw new Error(`purchase ${res.status}: ${await res.text()}`);
const [rts, rnonce] = res.headers.get('x-idempotency-key').split('.');
const env = new Uint8Array(await res.arrayBuffer());
const plain = await crypto.subtle.decrypt(
  { name: 'AES-GCM', iv: env.slice(0, 12), additionalData: enc.encode(`${rts}|${rnonce}|${kid}|${clientId}`), tagLength: 128 },
  sessionKey, env.slice(12));
console.log(new TextDecoder().decode(plain));
