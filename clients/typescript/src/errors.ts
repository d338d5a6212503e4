// Typed errors: what went wrong, and who can fix it (README, "Errors").

/** Base class of every error the library throws. */
export class SessionCryptoError extends Error {
  override name = 'SessionCryptoError';
}

/**
 * A mistake in the options or the call (a `baseUrl` that is not a URL, an `undefined`
 * pin, a key that is not a P-256 public key, a `GET` with a body, …): fix the code or
 * the configuration; sending again will not help. Nothing was sent.
 */
export class ConfigurationError extends SessionCryptoError {
  override name = 'ConfigurationError';
}

/** The request did not reach the server, or no answer came back (its fate is unknown). */
export class NetworkError extends SessionCryptoError {
  override name = 'NetworkError';
  constructor(message: string, readonly cause?: unknown) {
    super(message);
  }
}

/**
 * The call took longer than its `timeoutMs` (or the session's) and was abandoned. As
 * with any {@link NetworkError} the request may have run; the session stays usable.
 */
export class TimeoutError extends NetworkError {
  override name = 'TimeoutError';
  constructor(readonly timeoutMs: number, cause?: unknown) {
    super(`no answer within ${timeoutMs} ms (the request may have run)`, cause);
  }
}

/**
 * The call's `signal` was aborted. The request may have run if it was already sent;
 * the session stays usable. `reason` is the signal's.
 */
export class AbortedError extends NetworkError {
  override name = 'AbortedError';
  constructor(readonly reason: unknown) {
    super('aborted by the caller (the request may have run if it was already sent)', reason);
  }
}

/** The session was revoked with {@link SessionCrypto.revoke}: connect again for a new one. */
export class RevokedError extends SessionCryptoError {
  override name = 'RevokedError';
  constructor() {
    super('this session was revoked; call SessionCrypto.connect for a new one');
  }
}

/**
 * The server refused the request. `code` is its `error` member (`CRYPTO_ERROR`,
 * `SESSION_EXPIRED`, `RATE_LIMITED`, `UNSUPPORTED_PROTOCOL`, …).
 */
export class ServerRefusedError extends SessionCryptoError {
  override name = 'ServerRefusedError';
  constructor(
    readonly status: number,
    readonly code: string,
    readonly body: string,
    readonly retryAfterSec?: number,
    /**
     * A sealed refusal (v2, docs/PROTOCOL.md §9.1): authenticated as the server's, for
     * this very request — and it did not run. Otherwise the refusal is plain JSON that
     * anyone on the path could have written.
     */
    readonly sealed = false,
  ) {
    super(`the server refused with ${status} ${code || '(no code)'}${sealed ? ' (sealed: the request did not run)' : ''}`);
  }
}

/**
 * The request was refused while this machine's clock differs from the server's by
 * `skewMs` (from the answer's `Date` header): the server's timestamp window (±300 s by
 * default) probably refused it. The library already retried once with the corrected
 * clock.
 */
export class ClockSkewError extends ServerRefusedError {
  override name = 'ClockSkewError';
  constructor(
    status: number,
    code: string,
    body: string,
    readonly skewMs: number,
  ) {
    super(status, code, body);
    this.message = `refused with the clocks ${Math.round(skewMs / 1000)} s apart (server − client)`;
  }
}

/**
 * The server's answer broke the protocol: a tampered init answer (`reason`
 * `confirmation`), a signature missing or not made by the pinned key (`signature`), a
 * sealed answer that does not open for this request (`response`), or a malformed answer
 * (`format`), including a v1 answer to a v2 init (no silent downgrade).
 */
export class ProtocolError extends SessionCryptoError {
  override name = 'ProtocolError';
  constructor(
    readonly reason: 'confirmation' | 'signature' | 'response' | 'format',
    message: string,
  ) {
    super(message);
  }
}

/**
 * The request may or may not have run. The server refused it (`refusal`: its status,
 * code and body) — `SESSION_EXPIRED`, after which the library set up a new session —
 * but that refusal is not authenticated: anyone on the path can forward the request,
 * drop the answer and forge it. The method is not one the library sends twice by
 * itself (see `retry` in `ConnectOptions`). Send it again only if running it twice is
 * harmless.
 */
export class OutcomeUnknownError extends SessionCryptoError {
  override name = 'OutcomeUnknownError';
  constructor(readonly refusal: ServerRefusedError) {
    super(`outcome unknown: the server answered ${refusal.status} ${refusal.code || '(no code)'}, which is not authenticated`);
  }
}
