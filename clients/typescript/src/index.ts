// session-crypto-client: an encrypted, replay-proof channel to a session-crypto server,
// with WebCrypto only (browsers and Node ≥ 20). See README.md and docs/PROTOCOL.md.

import { concat, fromBase64, toBase64, utf8, uuid } from './encoding.js';
import { ClockSkewError, NetworkError, OutcomeUnknownError, ProtocolError, ServerRefusedError } from './errors.js';
import {
  type InitAnswer,
  type RequestLine,
  type SessionKeys,
  generateKeyPair,
  importServerKey,
  open,
  refusalAad,
  requestAad,
  responseAad,
  seal,
  v1Session,
  v2Session,
} from './protocol.js';

export { ClockSkewError, NetworkError, OutcomeUnknownError, ProtocolError, ServerRefusedError, SessionCryptoError } from './errors.js';

/** Options of {@link SessionCrypto.connect}. */
export interface ConnectOptions {
  /** The server's origin, e.g. `https://api.example.com` (`''`: this page's origin). */
  baseUrl: string;
  /** `X-ClientId`: 1–128 visible ASCII characters without `|` and `:`. */
  clientId: string;
  /** Protocol version (default 2; 1 for servers that predate v2). */
  protocol?: 1 | 2;
  /**
   * The server's signing key to pin (v2): the `publicKey` (base64) or the `jwk` of
   * `GET /.well-known/session-crypto`, obtained over a trusted channel — or an array of
   * them: during a key rotation, pin the `current` and the `next` key. An init answer
   * not signed by a pinned key is refused.
   */
  serverKey?: string | JsonWebKey | ReadonlyArray<string | JsonWebKey>;
  /** A `fetch` to use instead of the global one (tests, custom agents). */
  fetch?: typeof fetch;
  /** Session lifetime to ask for (`ttlSec`; the server clamps it). */
  ttlSec?: number;
  /** The init route (default `/session/init`). */
  initPath?: '/session/init' | '/v1/session/init';
  /** The timestamp window answers must be stamped within (default 300,000 ms, the server's). */
  windowMs?: number;
  /**
   * Which requests the library sends a second time by itself — after a new session,
   * when the server answered `SESSION_EXPIRED`, or with a corrected clock, when it
   * refused one while the clocks disagree. Those refusals are not authenticated (an
   * attacker can forward a request, drop its answer and forge them), so only requests
   * that may safely run twice are sent again: `'idempotent'` (default: `GET`, `HEAD`,
   * `PUT`, `DELETE`, `OPTIONS`) or `'never'`. Others get {@link OutcomeUnknownError}.
   */
  retry?: 'idempotent' | 'never';
  /**
   * Protocol 1 against a server that does not mark its answers' nonces with `rsp_` (the
   * reference server): accept them. Without it such answers are refused, since in v1 a
   * request sent back could pass for its answer.
   */
  v1UnmarkedAnswers?: boolean;
}

/** What {@link SessionCrypto.fetch} sends besides the path. */
export interface SealedRequestInit {
  /** HTTP method (default `POST`). */
  method?: string;
  /** The plaintext: bytes, a string (UTF-8), or any other value (sent as JSON). */
  body?: BufferSource | string | unknown;
  /** Extra request headers (e.g. `X-Request-Id`); the protocol's own ones win. */
  headers?: Record<string, string>;
  /** `X-Inner-Content-Type`, bound by a v2 session (omit for the built-in routes). */
  contentType?: string;
  /**
   * The call's `Idempotency-Key` (unquoted; 1–255 visible ASCII characters without `"`
   * or `\\`). The library makes one per call when it is absent, and keeps it on a
   * re-send; pass your own to keep it across your own retries, so that an upstream that
   * deduplicates runs the call once. A v2 session binds it; a gateway forwards it.
   */
  idempotencyKey?: string;
}

/** A decrypted answer, shaped like a `Response`. */
export class SealedResponse {
  /** Whether the status is 2xx. */
  readonly ok: boolean;
  /**
   * @param status The answer's status: 200 from the built-in routes; on a gateway route
   *   the upstream's (also for a 204 or 304, which travel as 200 with `X-Inner-Status`).
   * @param headers The answer's headers, with `Content-Type` replaced by the decrypted
   *   body's (`X-Inner-Content-Type`; removed when it has none).
   */
  constructor(
    readonly status: number,
    readonly headers: Headers,
    private readonly plaintext: ArrayBuffer,
  ) {
    this.ok = status >= 200 && status < 300;
  }
  /** The decrypted body. */
  async arrayBuffer(): Promise<ArrayBuffer> {
    return this.plaintext.slice(0);
  }
  /** The decrypted body as UTF-8 text. */
  async text(): Promise<string> {
    return new TextDecoder().decode(this.plaintext);
  }
  /** The decrypted body as JSON. */
  async json<T = unknown>(): Promise<T> {
    return JSON.parse(await this.text()) as T;
  }
}

/** Clock differences above this, seen on a refused request, trigger the one retry. */
const SKEW_RETRY_MS = 30_000;

/** The largest clock correction taken from a sealed refusal (a day): beyond, the error says why. */
const MAX_CLOCK_FIX_MS = 86_400_000;

/** `key` as an `Idempotency-Key` value: a quoted sf-string with nothing to escape. */
function quotedCallKey(key: string): string {
  if (!/^[\x21\x23-\x5b\x5d-\x7e]{1,255}$/.test(key)) {
    throw new TypeError('idempotencyKey: 1–255 visible ASCII characters without " or \\');
  }
  return `"${key}"`;
}

/** The methods HTTP defines as idempotent: running one twice has the effect of once. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);

/** The server's clock minus ours, from an answer's `Date` header (1 s resolution). */
function skewOf(res: Response, sentAt: number): number | undefined {
  const date = res.headers.get('date');
  const server = date === null ? NaN : Date.parse(date);
  return Number.isNaN(server) ? undefined : server + 500 - sentAt;
}

async function refusal(res: Response): Promise<ServerRefusedError> {
  const body = await res.text().catch(() => '');
  let code = '';
  try {
    const parsed: unknown = JSON.parse(body);
    if (parsed && typeof parsed === 'object' && typeof (parsed as { error?: unknown }).error === 'string') {
      code = (parsed as { error: string }).error;
    }
  } catch {
    /* not JSON */
  }
  const retry = Number(res.headers.get('retry-after'));
  return new ServerRefusedError(res.status, code, body, Number.isFinite(retry) && retry > 0 ? retry : undefined);
}

function plaintextOf(body: SealedRequestInit['body']): Uint8Array {
  if (body === undefined) return new Uint8Array(0);
  if (typeof body === 'string') return utf8(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  return utf8(JSON.stringify(body));
}

/**
 * A session with a session-crypto server. Its keys are non-extractable `CryptoKey`s:
 * script in the page can use the session while the page runs, but can never export it.
 */
export class SessionCrypto {
  /** Clock correction learned from `Date` headers (not authenticated): init and repeatable requests only. */
  private offsetMs = 0;
  /** Clock correction learned from a sealed refusal's time (authenticated): every request. */
  private authOffsetMs: number | undefined;
  /** The re-init under way, shared by every call that found the session gone. */
  private renewing: Promise<SessionKeys> | undefined;
  /** Set by {@link SessionCrypto.revoke}: the next call sets up a new session first. */
  private revoked = false;

  private constructor(
    private keys: SessionKeys,
    private readonly options: ConnectOptions & { fetch: typeof fetch },
    private readonly pinned: readonly CryptoKey[],
  ) {}

  /** Sets up a session (v2 unless `protocol: 1`). */
  static async connect(options: ConnectOptions): Promise<SessionCrypto> {
    const fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    const opts = { ...options, fetch: fetcher };
    if (options.serverKey !== undefined && (options.protocol ?? 2) !== 2) {
      throw new TypeError('a pinned serverKey needs protocol 2');
    }
    const given = options.serverKey;
    const keys: ReadonlyArray<string | JsonWebKey> = given === undefined ? [] : isKeyList(given) ? given : [given];
    if (given !== undefined && keys.length === 0) {
      throw new TypeError('serverKey: an empty array pins nothing; leave serverKey out instead');
    }
    const pinned = await Promise.all(keys.map((k) => importServerKey(k)));
    const client = new SessionCrypto(undefined as unknown as SessionKeys, opts, pinned);
    client.keys = await client.init();
    return client;
  }

  /** The session's protocol version. */
  get protocol(): 1 | 2 {
    return this.keys.protocol;
  }
  /** The session id (`S-…`). */
  get sessionId(): string {
    return this.keys.sessionId;
  }
  /** The session's AES keys (non-extractable), e.g. to check that they cannot be exported. */
  get cryptoKeys(): readonly CryptoKey[] {
    return [this.keys.requestKey, this.keys.responseKey];
  }
  /**
   * The clock correction (server − client, ms) learned from a refused request's `Date`
   * header. Not authenticated, so it stamps only what may safely be sent twice: inits
   * and the requests `retry` allows; other requests go out with this machine's clock.
   */
  get clockOffsetMs(): number {
    return this.authOffsetMs ?? this.offsetMs;
  }

  private now(corrected = true): number {
    if (this.authOffsetMs !== undefined) return Date.now() + this.authOffsetMs;
    return Date.now() + (corrected ? this.offsetMs : 0);
  }

  /** Whether a request with `method` may run twice, so the library may send it again. */
  private repeatable(method: string): boolean {
    return (this.options.retry ?? 'idempotent') === 'idempotent' && IDEMPOTENT.has(method);
  }

  private idempotencyKey(corrected = true): [string, string, string] {
    const ts = String(Math.round(this.now(corrected)));
    const nonce = uuid();
    return [`${ts}.${nonce}`, ts, nonce];
  }

  private async send(url: string, init: RequestInit): Promise<Response> {
    try {
      return await this.options.fetch(url, init);
    } catch (e) {
      throw new NetworkError(`${init.method ?? 'GET'} ${url}: ${e instanceof Error ? e.message : String(e)}`, e);
    }
  }

  /**
   * Runs `attempt` and, when it may be repeated, retries it once when it was refused
   * while the clocks disagree (by the answer's `Date`, which is not authenticated).
   */
  private async withClockRetry<T>(attempt: () => Promise<T | Refusal | Sealed>, repeatable: boolean): Promise<T> {
    for (let retried = false; ; retried = true) {
      const out = await attempt();
      if (out instanceof Sealed) {
        // Authenticated, for this very request: the server's refusal and its clock.
        if (out.outcome !== 'not-executed') throw new OutcomeUnknownError(out.error);
        const skew = out.serverTime - out.stampedAt;
        if (out.error.code === 'CRYPTO_ERROR' && Math.abs(skew) > SKEW_RETRY_MS && Math.abs(skew) <= MAX_CLOCK_FIX_MS && !retried) {
          // It did not run, so it may be sent again, stamped by the server's clock.
          this.authOffsetMs = out.serverTime - out.receivedAt;
          continue;
        }
        if (out.error.code === 'CRYPTO_ERROR' && Math.abs(skew) > SKEW_RETRY_MS) {
          throw new ClockSkewError(out.error.status, out.error.code, out.error.body, skew);
        }
        throw out.error;
      }
      if (!(out instanceof Refusal)) return out;
      const { res, sentAt } = out;
      const error = await refusal(res);
      const skew = skewOf(res, sentAt);
      const clockSuspect = res.status === 400 && error.code === 'CRYPTO_ERROR' && skew !== undefined && Math.abs(skew) > SKEW_RETRY_MS;
      if (clockSuspect && !retried && repeatable) {
        this.offsetMs += skew;
        continue;
      }
      if (clockSuspect) throw new ClockSkewError(error.status, error.code, error.body, skew);
      throw error;
    }
  }

  private async init(): Promise<SessionKeys> {
    const { baseUrl, clientId, ttlSec, initPath = '/session/init' } = this.options;
    const protocol = this.options.protocol ?? 2;
    return this.withClockRetry(
      async () => {
        const keyPair = await generateKeyPair();
        const rawPublic = new Uint8Array(await crypto.subtle.exportKey('raw', keyPair.publicKey));
        const body: Record<string, unknown> = { clientPublicKey: toBase64(rawPublic) };
        if (ttlSec !== undefined) body.ttlSec = ttlSec;
        if (protocol === 2) body.protocol = 2;
        const [key] = this.idempotencyKey();
        const sentAt = Date.now();
        const res = await this.send(`${baseUrl}${initPath}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', 'X-Idempotency-Key': key, 'X-ClientId': clientId },
          body: JSON.stringify(body),
        });
        if (res.status !== 200) return new Refusal(res, sentAt);
        let answer: InitAnswer;
        try {
          answer = (await res.json()) as InitAnswer;
        } catch {
          throw new ProtocolError('format', 'the init answer is not JSON');
        }
        if (typeof answer.sessionId !== 'string' || !/^S-[0-9a-f]{32}$/.test(answer.sessionId) || typeof answer.serverPublicKey !== 'string') {
          throw new ProtocolError('format', 'the init answer lacks a valid sessionId or serverPublicKey');
        }
        if (protocol === 2) {
          // No silent downgrade: a v2 init must be answered in v2.
          if (answer.protocol !== 2) throw new ProtocolError('format', 'the server did not answer with protocol 2');
          return v2Session(keyPair, rawPublic, answer, clientId, this.pinned);
        }
        if (answer.protocol !== undefined && answer.protocol !== 1) {
          throw new ProtocolError('format', 'the server answered another protocol version');
        }
        return v1Session(keyPair, answer, clientId);
      },
      // An init may run twice: it only sets up a session.
      true,
    );
  }

  /**
   * Seals `init.body`, sends it to `path` (path and optional query; v2 binds both and the
   * method) and returns the opened answer. Works on the built-in routes and on gateway
   * routes (`s.fetch('/api/orders', { method: 'POST', body })`): a sealed answer of any
   * status is returned (a gateway passes its upstream's 404 on sealed); the server's own
   * refusals (400, 401, 502, 504, …) throw {@link ServerRefusedError}. A `GET` carries
   * its envelope in `X-Envelope` (a `fetch` cannot send a `GET` body). On 401
   * `SESSION_EXPIRED` a new session is set up (one for all the calls that found the
   * session gone) and, if `retry` allows the method, the request is sent once more,
   * freshly sealed; otherwise {@link OutcomeUnknownError}: that refusal is not
   * authenticated, so the request may have run. Each answer is opened with the keys
   * its request was sealed with, whatever happened to the session meanwhile.
   */
  async fetch(path: string, init: SealedRequestInit = {}): Promise<SealedResponse> {
    const method = (init.method ?? 'POST').toUpperCase();
    const callKey = quotedCallKey(init.idempotencyKey ?? uuid());
    const keys = this.revoked ? await this.renew(this.keys) : this.keys;
    try {
      return await this.fetchOnce(path, init, keys, callKey);
    } catch (e) {
      if (!(e instanceof ServerRefusedError && e.status === 401 && e.code === 'SESSION_EXPIRED')) throw e;
      const fresh = await this.renew(keys);
      if (!this.repeatable(method)) throw new OutcomeUnknownError(e);
      return this.fetchOnce(path, init, fresh, callKey);
    }
  }

  /** A new session in place of `failed`, unless another call already replaced it. */
  private renew(failed: SessionKeys): Promise<SessionKeys> {
    if (this.keys !== failed) return Promise.resolve(this.keys);
    this.renewing ??= this.init()
      .then((keys) => {
        this.keys = keys;
        this.revoked = false;
        return keys;
      })
      .finally(() => {
        this.renewing = undefined;
      });
    return this.renewing;
  }

  private async fetchOnce(path: string, init: SealedRequestInit, s: SessionKeys, callKey: string): Promise<SealedResponse> {
    // The target as it goes on the wire: URL parsing percent-encodes and removes dot
    // segments, and the server binds what it receives.
    // (A relative baseUrl, e.g. '' on the page's own origin, resolves against the page.)
    const url = new URL(`${this.options.baseUrl}${path}`, (globalThis as { location?: { href: string } }).location?.href);
    const target = `${url.pathname}${url.search}`;
    const line: RequestLine = { method: (init.method ?? 'POST').toUpperCase(), target, contentType: init.contentType ?? '' };
    const plaintext = plaintextOf(init.body);
    const repeatable = this.repeatable(line.method);
    return this.withClockRetry(
      async () => {
        const [key, ts, nonce] = this.idempotencyKey(repeatable);
        const envelope = await seal(s.requestKey, requestAad(s, line, ts, nonce, callKey), plaintext);
        const headers: Record<string, string> = { ...init.headers };
        for (const name of Object.keys(headers)) {
          if (/^(x-kid|x-idempotency-key|x-clientid|content-type|x-inner-content-type|x-envelope|idempotency-key|x-sealed-refusals)$/i.test(name)) delete headers[name];
        }
        Object.assign(headers, {
          'Content-Type': 'application/octet-stream',
          'X-Kid': s.kid,
          'X-Idempotency-Key': key,
          'X-ClientId': s.clientId,
          'Idempotency-Key': callKey,
        });
        if (init.contentType !== undefined) headers['X-Inner-Content-Type'] = init.contentType;
        // v2: refusals come sealed, so the library can trust what they say (§9.1).
        if (s.protocol === 2) headers['X-Sealed-Refusals'] = '1';
        const isGet = line.method === 'GET';
        if (isGet) headers['X-Envelope'] = toBase64(envelope);
        const sentAt = Date.now();
        const res = await this.send(url.href, { method: line.method, headers, body: isGet ? null : envelope });
        if (s.protocol === 2 && res.headers.get('x-sealed-refusal') !== null) {
          return this.openRefusal(res, line, nonce, s, Number(ts));
        }
        // Sealed answers carry the server's X-Idempotency-Key; its own errors do not.
        if (!res.headers.has('x-idempotency-key')) return new Refusal(res, sentAt);
        return this.openAnswer(res, line, nonce, s, repeatable);
      },
      repeatable,
    );
  }

  /**
   * An authenticated server time (a v2 answer's timestamp, bound by its AAD): when it
   * is more than 30 s (and at most a day) from the clock in use, the library stamps
   * every later request by it, and a clock learned from `Date` is no longer used.
   */
  private learnTime(serverTime: number, s: SessionKeys): void {
    if (s.protocol !== 2) return;
    const skew = serverTime - Date.now();
    if (Math.abs(skew - (this.authOffsetMs ?? 0)) > SKEW_RETRY_MS && Math.abs(skew) <= MAX_CLOCK_FIX_MS) {
      this.authOffsetMs = skew;
    }
  }

  /** Opens a sealed refusal (§9.1) of the request stamped `stampedAt` with `requestNonce`. */
  private async openRefusal(res: Response, line: RequestLine, requestNonce: string, s: SessionKeys, stampedAt: number): Promise<Sealed> {
    const receivedAt = Date.now();
    if (res.headers.get('x-kid') !== s.kid) throw new ProtocolError('response', 'the refusal names another session');
    const match = /^(\d{1,16})\.(rsp_[A-Za-z0-9_-]{16,124})$/.exec(res.headers.get('x-idempotency-key') ?? '');
    if (!match) throw new ProtocolError('response', 'the sealed refusal has no valid X-Idempotency-Key');
    const [, ts, nonce] = match as unknown as [string, string, string];
    // No window check: the AAD binds this request's fresh nonce, so the refusal was
    // made after the request was sent, whatever the two clocks say.
    const aad = refusalAad(s, line, ts, nonce, requestNonce, res.status);
    const plaintext = await open(s.responseKey, aad, new Uint8Array(await res.arrayBuffer()));
    let said: { error?: unknown; outcome?: unknown };
    try {
      said = JSON.parse(new TextDecoder().decode(plaintext)) as typeof said;
    } catch {
      throw new ProtocolError('format', 'a sealed refusal that is not JSON');
    }
    const code = typeof said.error === 'string' ? said.error : '';
    const retry = Number(res.headers.get('retry-after'));
    const error = new ServerRefusedError(res.status, code, JSON.stringify(said), Number.isFinite(retry) && retry > 0 ? retry : undefined, true);
    const outcome = said.outcome === 'not-executed' ? 'not-executed' : 'unknown';
    return new Sealed(error, outcome, Number(ts), stampedAt, receivedAt);
  }

  private async openAnswer(res: Response, line: RequestLine, requestNonce: string, s: SessionKeys, corrected: boolean): Promise<SealedResponse> {
    if (res.headers.get('x-kid') !== s.kid) throw new ProtocolError('response', 'the answer names another session');
    const key = res.headers.get('x-idempotency-key') ?? '';
    const match = /^(\d{1,16})\.([A-Za-z0-9_-]{16,128})$/.exec(key);
    if (!match) throw new ProtocolError('response', 'the answer has no valid X-Idempotency-Key');
    const [, ts, nonce] = match as unknown as [string, string, string];
    // v1 seals both directions under one key: only the server's rsp_ mark (and a nonce
    // that is not the request's) tells an answer from the request sent back.
    if (s.protocol === 1 && (nonce === requestNonce || (!this.options.v1UnmarkedAnswers && !nonce.startsWith('rsp_')))) {
      throw new ProtocolError('response', 'a v1 answer without the rsp_ mark of a server answer (a reflected request?)');
    }
    if (Math.abs(Number(ts) - this.now(corrected)) > (this.options.windowMs ?? 300_000)) {
      throw new ProtocolError('response', 'the answer is stamped outside the window');
    }
    const contentType = res.headers.get('x-inner-content-type') ?? '';
    const inner = res.headers.get('x-inner-status');
    if (inner !== null && (res.status !== 200 || !/^[1-5][0-9]{2}$/.test(inner))) {
      throw new ProtocolError('response', 'malformed X-Inner-Status');
    }
    const status = inner === null ? res.status : Number(inner);
    const aad = responseAad(s, { ...line, contentType }, ts, nonce, requestNonce, status);
    const envelope = new Uint8Array(await res.arrayBuffer());
    const plaintext = await open(s.responseKey, aad, envelope);
    this.learnTime(Number(ts), s);
    const headers = new Headers(res.headers);
    if (contentType) headers.set('content-type', contentType);
    else headers.delete('content-type');
    return new SealedResponse(status, headers, plaintext);
  }

  /**
   * Ends the session on the server (`POST /session/revoke`, 204). A later
   * {@link SessionCrypto.fetch} sets up a new session first.
   */
  async revoke(): Promise<void> {
    const s = this.keys;
    this.revoked = true;
    const line: RequestLine = { method: 'POST', target: '/session/revoke', contentType: '' };
    // Revoking twice has the effect of once: the corrected clock may stamp it.
    const [key, ts, nonce] = this.idempotencyKey();
    const envelope = await seal(s.requestKey, requestAad(s, line, ts, nonce), utf8('{"action":"revoke"}'));
    const res = await this.send(`${this.options.baseUrl}/session/revoke`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/octet-stream', 'X-Kid': s.kid, 'X-Idempotency-Key': key, 'X-ClientId': s.clientId },
      body: envelope,
    });
    if (res.status !== 204) throw await refusal(res);
  }
}

/** A sealed refusal, opened: authenticated, with the server's time. */
class Sealed {
  constructor(
    readonly error: ServerRefusedError,
    readonly outcome: 'not-executed' | 'unknown',
    readonly serverTime: number,
    readonly stampedAt: number,
    readonly receivedAt: number,
  ) {}
}

/** An answer that is not the one the attempt waited for (a refusal, maybe from clock skew). */
class Refusal {
  constructor(
    readonly res: Response,
    readonly sentAt: number,
  ) {}
}

// Re-exported helpers for tests and advanced use.
export { concat, fromBase64, toBase64 };

function isKeyList(key: string | JsonWebKey | ReadonlyArray<string | JsonWebKey>): key is ReadonlyArray<string | JsonWebKey> {
  return Array.isArray(key);
}
