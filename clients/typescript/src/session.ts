// The session: set-up, sealed calls, re-init, revocation (docs/PROTOCOL.md).

import { toBase64, utf8, uuid } from './encoding.js';
import { type Body, headersOf, plaintextOf } from './body.js';
import {
  AbortedError,
  ClockSkewError,
  ConfigurationError,
  NetworkError,
  OutcomeUnknownError,
  ProtocolError,
  RevokedError,
  ServerRefusedError,
  TimeoutError,
} from './errors.js';
import { type ConnectOptions, checkOptions } from './options.js';
import { type ServerKey, importPin } from './pin.js';
import {
  type InitAnswer,
  type RequestLine,
  type SessionKeys,
  generateKeyPair,
  open,
  refusalAad,
  requestAad,
  responseAad,
  seal,
  v1Session,
  v2Session,
} from './protocol.js';
import { SealedResponse } from './response.js';
import { type Call, Deadline, IDEMPOTENT, OWN, methodOf, quotedCallKey } from './call.js';
import { Refusal, Sealed, refusal, skewOf } from './refusal.js';

/** What {@link SessionCrypto.fetch} sends besides the path, as `fetch`'s `init`. */
export interface SealedRequestInit {
  /** HTTP method, any case (default `GET`, as with `fetch`). `HEAD` is not offered: its answer cannot carry a sealed body. */
  method?: string;
  /**
   * The plaintext, as `fetch` takes it — a string (UTF-8), bytes, a `Blob`,
   * `URLSearchParams`, `FormData` or a `ReadableStream` — or a plain object, array,
   * number or boolean, sent as JSON. Not with `GET`.
   */
  body?: Body;
  /**
   * Extra request headers (a record, `[name, value]` pairs or a `Headers`), e.g.
   * `X-Request-Id`. A `Content-Type` becomes the sealed body's (`X-Inner-Content-Type`);
   * the protocol's own headers are the library's.
   */
  headers?: HeadersInit;
  /**
   * `X-Inner-Content-Type`, bound by a v2 session; default: the `Content-Type` header,
   * or the media type of a `Blob`, `URLSearchParams` or `FormData` body. Leave it out
   * for the built-in routes.
   */
  contentType?: string;
  /** Aborts the call (an {@link AbortedError}); the session stays usable. */
  signal?: AbortSignal;
  /** This call's time limit (ms), instead of the session's `timeoutMs` ({@link TimeoutError}). */
  timeoutMs?: number;
  /**
   * The call's `Idempotency-Key` (unquoted; 1–255 visible ASCII characters without `"`
   * or `\\`). The library makes one per call when it is absent, and keeps it on a
   * re-send; pass your own to keep it across your own retries, so that an upstream that
   * deduplicates runs the call once. A v2 session binds it; a gateway forwards it.
   */
  idempotencyKey?: string;
}

/** Clock differences above this, seen on a refused request, trigger the one retry. */
const SKEW_RETRY_MS = 30_000;

/** The largest clock correction taken from a sealed refusal (a day): beyond, the error says why. */
const MAX_CLOCK_FIX_MS = 86_400_000;

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
  /** Set by {@link SessionCrypto.revoke}: calls then fail with {@link RevokedError}. */
  private revoked = false;
  /** The revocation under way or done (a second `revoke()` shares it). */
  private revoking: Promise<void> | undefined;

  private constructor(
    private keys: SessionKeys,
    private readonly options: ConnectOptions & { fetch: typeof fetch; baseUrl: string },
    private readonly pinned: readonly CryptoKey[],
  ) {}

  /**
   * Sets up a session (v2 unless `protocol: 1`). The options are checked first: a
   * mistake is a {@link ConfigurationError} and nothing is sent.
   */
  static async connect(options: ConnectOptions): Promise<SessionCrypto> {
    const baseUrl = checkOptions(options);
    const fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    const opts = { ...options, baseUrl, fetch: fetcher };
    const given = options.serverKey;
    const keys: ReadonlyArray<ServerKey> = given === undefined ? [] : isKeyList(given) ? given : [given];
    const pinned = await Promise.all(keys.map((k, i) => importPin(k, keys.length > 1 ? `serverKey[${i}]` : 'serverKey')));
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

  /** Sends one request and reads its whole answer, within `deadline`. */
  private async send(url: string, init: RequestInit, deadline: Deadline): Promise<Response> {
    deadline.check();
    const what = `${init.method ?? 'GET'} ${url}`;
    try {
      const res = await this.options.fetch(url, deadline.signal ? { ...init, signal: deadline.signal } : init);
      // The body is read here, so that an abort or a timeout while it arrives is one too.
      const body = await res.arrayBuffer();
      return new Response(res.status === 204 || res.status === 304 ? null : body, { status: res.status, statusText: res.statusText, headers: res.headers });
    } catch (e) {
      throw deadline.error(e, what);
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
    // Shared by every call that found the session gone: the session's own time limit.
    const deadline = new Deadline(undefined, this.options.timeoutMs);
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
        }, deadline);
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
    if (typeof path !== 'string' || !path.startsWith('/')) {
      throw new ConfigurationError(`path: starts with / (the server's route), got ${JSON.stringify(path)}`);
    }
    const method = methodOf(init);
    const callKey = quotedCallKey(init.idempotencyKey ?? uuid());
    const deadline = new Deadline(init.signal, init.timeoutMs ?? this.options.timeoutMs);
    if (this.revoked) throw new RevokedError();
    const call = await this.callOf(path, method, init);
    const keys = this.keys;
    try {
      return await this.fetchOnce(call, keys, callKey, deadline);
    } catch (e) {
      if (!(e instanceof ServerRefusedError && e.status === 401 && e.code === 'SESSION_EXPIRED')) throw e;
      // Revoked meanwhile by this application: no new session (and the refusal may be
      // forged, so the call may have run).
      if (this.revoked) throw new OutcomeUnknownError(e);
      const fresh = await this.renew(keys);
      if (!this.repeatable(method)) throw new OutcomeUnknownError(e);
      deadline.check();
      return this.fetchOnce(call, fresh, callKey, deadline);
    }
  }

  /** What a call sends, worked out once for all its attempts. */
  private async callOf(path: string, method: string, init: SealedRequestInit): Promise<Call> {
    // The target as it goes on the wire: URL parsing percent-encodes and removes dot
    // segments, and the server binds what it receives.
    // (A relative baseUrl, e.g. '' on the page's own origin, resolves against the page.)
    const page = (globalThis as { location?: { href: string } }).location?.href;
    const url = new URL(`${this.options.baseUrl}${path}`, page);
    // A baseUrl with a path is where the server is mounted behind a proxy that strips
    // it: the server receives, and v2 binds, the path after it.
    const mount = this.options.baseUrl === '' ? '' : new URL(this.options.baseUrl).pathname.replace(/\/+$/, '');
    if (mount !== '' && !url.pathname.startsWith(`${mount}/`)) {
      throw new ConfigurationError(`path: ${JSON.stringify(path)} leaves the base URL's path ${mount}`);
    }
    const headers = headersOf(init.headers);
    const body = await plaintextOf(init.body);
    const contentType = init.contentType ?? headers.get('content-type') ?? body.contentType ?? '';
    for (const name of [...headers.keys()]) if (OWN.test(name)) headers.delete(name);
    const line: RequestLine = { method, target: `${url.pathname.slice(mount.length)}${url.search}`, contentType };
    return { url, line, headers, plaintext: body.bytes, innerType: init.contentType !== undefined || contentType !== '' };
  }

  /** A new session in place of `failed`, unless another call already replaced it. */
  private renew(failed: SessionKeys): Promise<SessionKeys> {
    if (this.keys !== failed) return Promise.resolve(this.keys);
    this.renewing ??= this.init()
      .then((keys) => {
        this.keys = keys;
        return keys;
      })
      .finally(() => {
        this.renewing = undefined;
      });
    return this.renewing;
  }

  private async fetchOnce(call: Call, s: SessionKeys, callKey: string, deadline: Deadline): Promise<SealedResponse> {
    const { url, line, plaintext } = call;
    const repeatable = this.repeatable(line.method);
    return this.withClockRetry(
      async () => {
        const [key, ts, nonce] = this.idempotencyKey(repeatable);
        const envelope = await seal(s.requestKey, requestAad(s, line, ts, nonce, callKey), plaintext);
        const headers: Record<string, string> = Object.fromEntries(call.headers);
        Object.assign(headers, {
          'Content-Type': 'application/octet-stream',
          'X-Kid': s.kid,
          'X-Idempotency-Key': key,
          'X-ClientId': s.clientId,
          'Idempotency-Key': callKey,
        });
        if (call.innerType) headers['X-Inner-Content-Type'] = line.contentType;
        // v2: refusals come sealed, so the library can trust what they say (§9.1).
        if (s.protocol === 2) headers['X-Sealed-Refusals'] = '1';
        const isGet = line.method === 'GET';
        if (isGet) headers['X-Envelope'] = toBase64(envelope);
        const sentAt = Date.now();
        const res = await this.send(url.href, { method: line.method, headers, body: isGet ? null : envelope }, deadline);
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
   * Ends the session on the server (`POST /session/revoke`, 204). Final: later calls
   * fail with {@link RevokedError} (connect again for a new session). Calling it again
   * returns the same promise; after a failure (say a {@link NetworkError}) it tries again.
   */
  revoke(): Promise<void> {
    this.revoked = true;
    this.revoking ??= this.revokeOnce().catch((e: unknown) => {
      this.revoking = undefined;
      throw e;
    });
    return this.revoking;
  }

  private async revokeOnce(): Promise<void> {
    const s = this.keys;
    const line: RequestLine = { method: 'POST', target: '/session/revoke', contentType: '' };
    // Revoking twice has the effect of once: the corrected clock may stamp it.
    const [key, ts, nonce] = this.idempotencyKey();
    const envelope = await seal(s.requestKey, requestAad(s, line, ts, nonce), utf8('{"action":"revoke"}'));
    const res = await this.send(
      `${this.options.baseUrl}/session/revoke`,
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/octet-stream', 'X-Kid': s.kid, 'X-Idempotency-Key': key, 'X-ClientId': s.clientId },
        body: envelope,
      },
      new Deadline(undefined, this.options.timeoutMs),
    );
    if (res.status !== 204) throw await refusal(res);
  }
}

function isKeyList(key: ServerKey | ReadonlyArray<ServerKey>): key is ReadonlyArray<ServerKey> {
  return Array.isArray(key);
}
