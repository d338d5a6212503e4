// One call: its method, headers, deadline and Idempotency-Key, worked out before sending.

import { AbortedError, ConfigurationError, NetworkError, TimeoutError } from './errors.js';
import type { RequestLine } from './protocol.js';
import type { SealedRequestInit } from './session.js';

/** `key` as an `Idempotency-Key` value: a quoted sf-string with nothing to escape. */
export function quotedCallKey(key: string): string {
  if (!/^[\x21\x23-\x5b\x5d-\x7e]{1,255}$/.test(key)) {
    throw new ConfigurationError('idempotencyKey: 1–255 visible ASCII characters without " or \\');
  }
  return `"${key}"`;
}

/** The methods HTTP defines as idempotent: running one twice has the effect of once. */
export const IDEMPOTENT = new Set(['GET', 'PUT', 'DELETE', 'OPTIONS']);

/** An HTTP method token (RFC 9110 §9.1). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The protocol's own request headers: the library sets them. */
export const OWN = /^(x-kid|x-idempotency-key|x-clientid|content-type|x-inner-content-type|x-envelope|idempotency-key|x-sealed-refusals)$/;

/** The call's method, upper-cased, checked as `fetch` checks it. */
export function methodOf(init: SealedRequestInit): string {
  const method = (init.method ?? 'GET').toUpperCase();
  if (!TOKEN.test(method)) throw new ConfigurationError(`method: not an HTTP method: ${JSON.stringify(init.method)}`);
  if (method === 'HEAD') throw new ConfigurationError('method: HEAD is not offered (its answer cannot carry a sealed body); use GET');
  if (method === 'CONNECT' || method === 'TRACE' || method === 'TRACK') throw new ConfigurationError(`method: ${method} cannot be sent`);
  if (method === 'GET' && init.body !== undefined && init.body !== null) {
    throw new ConfigurationError("body: a GET has no body (as with fetch); set method: 'POST'");
  }
  return method;
}

/** One call's abort signal: the caller's and its time limit, and which fired. */
export class Deadline {
  readonly signal: AbortSignal | undefined;
  private readonly timer: AbortSignal | undefined;
  constructor(
    private readonly caller: AbortSignal | undefined,
    private readonly timeoutMs: number | undefined,
  ) {
    if (timeoutMs !== undefined && !(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new ConfigurationError(`timeoutMs: a positive number of milliseconds, got ${String(timeoutMs)}`);
    }
    this.timer = timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs);
    const signals = [caller, this.timer].filter((x): x is AbortSignal => x !== undefined);
    this.signal = signals.length < 2 ? signals[0] : anySignal(signals);
  }
  /** The error for `cause`, seen while this call was under way. */
  error(cause: unknown, what: string): NetworkError {
    if (this.caller?.aborted) return new AbortedError(this.caller.reason);
    if (this.timer?.aborted && this.timeoutMs !== undefined) return new TimeoutError(this.timeoutMs, cause);
    return new NetworkError(`${what}: ${cause instanceof Error ? cause.message : String(cause)}`, cause);
  }
  /** Throws now if the call was aborted or ran out of time. */
  check(): void {
    if (this.signal?.aborted) throw this.error(this.signal.reason, 'aborted');
  }
}

/** A signal aborted when any of `signals` is (AbortSignal.any where it exists). */
function anySignal(signals: AbortSignal[]): AbortSignal {
  const any = (AbortSignal as { any?: (s: AbortSignal[]) => AbortSignal }).any;
  if (any) return any.call(AbortSignal, signals);
  const both = new AbortController();
  for (const s of signals) {
    if (s.aborted) both.abort(s.reason);
    else s.addEventListener('abort', () => both.abort(s.reason), { once: true });
  }
  return both.signal;
}


/** What one call sends, the same on every attempt. */
export interface Call {
  url: URL;
  line: RequestLine;
  headers: Map<string, string>;
  plaintext: Uint8Array;
  /** Whether `X-Inner-Content-Type` is sent. */
  innerType: boolean;
}
