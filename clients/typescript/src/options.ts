// The options of SessionCrypto.connect, checked before anything is sent.

import { ConfigurationError } from './errors.js';
import type { ServerKey } from './pin.js';

/** Options of {@link SessionCrypto.connect}. */
export interface ConnectOptions {
  /**
   * The server's origin, e.g. `https://api.example.com` (`''`: this page's origin) — or
   * where it is mounted behind a proxy that strips that path (`https://example.com/sc`):
   * requests go to `<baseUrl><path>`, and v2 binds `<path>`, what the server receives.
   * A trailing `/` is ignored.
   */
  baseUrl: string;
  /** `X-ClientId`: 1–128 visible ASCII characters without `|` and `:`. */
  clientId: string;
  /** Protocol version (default 2; 1 for servers that predate v2). */
  protocol?: 1 | 2;
  /**
   * The server's signing key to pin (v2): a PEM `PUBLIC KEY` (what `session-crypto
   * keygen --signing` prints), the `publicKey` (base64) or the `jwk` of
   * `GET /.well-known/session-crypto`, obtained over a trusted channel — or an array of
   * them: during a key rotation, pin the `current` and the `next` key. An init answer
   * not signed by a pinned key is refused. Present but `undefined` is an error (a
   * missing environment variable must not silently connect unpinned).
   */
  serverKey?: ServerKey | ReadonlyArray<ServerKey>;
  /** A `fetch` to use instead of the global one (tests, custom agents). */
  fetch?: typeof fetch;
  /** Session lifetime to ask for (`ttlSec`; the server clamps it). */
  ttlSec?: number;
  /** The init route (default `/session/init`). */
  initPath?: '/session/init' | '/v1/session/init';
  /** The timestamp window answers must be stamped within (default 300,000 ms, the server's). */
  windowMs?: number;
  /**
   * The default time limit of each request (ms; none by default): the set-up, each
   * call (which can set its own: `timeoutMs` of {@link SealedRequestInit}) and `revoke`.
   */
  timeoutMs?: number;
  /**
   * Which requests the library sends a second time by itself — after a new session,
   * when the server answered `SESSION_EXPIRED`, or with a corrected clock, when it
   * refused one while the clocks disagree. Those refusals are not authenticated (an
   * attacker can forward a request, drop its answer and forge them), so only requests
   * that may safely run twice are sent again: `'idempotent'` (default: `GET`, `PUT`,
   * `DELETE`, `OPTIONS`) or `'never'`. Others get {@link OutcomeUnknownError}.
   */
  retry?: 'idempotent' | 'never';
  /**
   * Protocol 1 against a server that does not mark its answers' nonces with `rsp_` (the
   * reference server): accept them. Without it such answers are refused, since in v1 a
   * request sent back could pass for its answer.
   */
  v1UnmarkedAnswers?: boolean;
}

const CLIENT_ID = /^[\x21-\x39\x3b-\x7b\x7d\x7e]{1,128}$/;

function fail(message: string): never {
  throw new ConfigurationError(message);
}

function positive(value: unknown, name: string): void {
  if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value > 0)) {
    fail(`${name}: a positive number of milliseconds or seconds, got ${String(value)}`);
  }
}

/**
 * Checks `options` and returns the `baseUrl` to prefix paths with (no trailing `/`).
 * Every mistake is a {@link ConfigurationError} naming the option.
 */
export function checkOptions(options: ConnectOptions): string {
  if (options === null || typeof options !== 'object') fail('connect: pass an options object');
  const { baseUrl, clientId, protocol, retry, initPath, ttlSec } = options;
  if (typeof baseUrl !== 'string') fail(`baseUrl: a string (the server's origin, or '' for this page's), got ${typeof baseUrl}`);
  const base = baseUrl.replace(/\/+$/, '');
  if (base !== '') {
    let url: URL;
    try {
      url = new URL(base);
    } catch {
      return fail(`baseUrl: not an absolute URL: ${JSON.stringify(baseUrl)}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') fail(`baseUrl: http or https, got ${url.protocol}`);
    if (url.search || url.hash || url.username || url.password) fail('baseUrl: no query, fragment or credentials');
  }
  if (typeof clientId !== 'string' || !CLIENT_ID.test(clientId)) {
    fail('clientId: 1–128 visible ASCII characters without | and :');
  }
  if (protocol !== undefined && protocol !== 1 && protocol !== 2) fail(`protocol: 1 or 2, got ${String(protocol)}`);
  if (retry !== undefined && retry !== 'idempotent' && retry !== 'never') fail(`retry: 'idempotent' or 'never', got ${String(retry)}`);
  if (initPath !== undefined && initPath !== '/session/init' && initPath !== '/v1/session/init') {
    fail(`initPath: '/session/init' or '/v1/session/init', got ${String(initPath)}`);
  }
  if (ttlSec !== undefined && !Number.isInteger(ttlSec)) fail(`ttlSec: whole seconds, got ${String(ttlSec)}`);
  positive(ttlSec, 'ttlSec');
  positive(options.timeoutMs, 'timeoutMs');
  positive(options.windowMs, 'windowMs');
  if (options.fetch !== undefined && typeof options.fetch !== 'function') fail('fetch: a function');
  if ('serverKey' in options && options.serverKey === undefined) {
    fail('serverKey is present but undefined (a missing setting?): pass the key, or leave serverKey out to connect unpinned');
  }
  if (options.serverKey !== undefined && (protocol ?? 2) !== 2) fail('serverKey: pinning needs protocol 2');
  if (Array.isArray(options.serverKey) && options.serverKey.length === 0) {
    fail('serverKey: an empty array pins nothing; leave serverKey out instead');
  }
  return base;
}
