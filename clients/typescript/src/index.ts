// session-crypto-client: an encrypted, replay-proof channel to a session-crypto server,
// with WebCrypto only (browsers and Node ≥ 20). See README.md and docs/PROTOCOL.md.

export { SessionCrypto, type SealedRequestInit } from './session.js';
export { SealedResponse } from './response.js';
export type { ConnectOptions } from './options.js';
export type { ServerKey } from './pin.js';
export type { Body } from './body.js';
export {
  AbortedError,
  ClockSkewError,
  ConfigurationError,
  NetworkError,
  OutcomeUnknownError,
  ProtocolError,
  RevokedError,
  ServerRefusedError,
  SessionCryptoError,
  TimeoutError,
} from './errors.js';
// Helpers for tests and advanced use.
export { concat, fromBase64, toBase64 } from './encoding.js';
