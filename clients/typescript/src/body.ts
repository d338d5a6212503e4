// Request bodies and headers as fetch takes them, turned into the plaintext to seal.

import { utf8 } from './encoding.js';
import { ConfigurationError } from './errors.js';

/** What a request body may be: what `fetch` takes, or a value sent as JSON. */
export type Body =
  | string
  | ArrayBuffer
  | ArrayBufferView
  | Blob
  | URLSearchParams
  | FormData
  | ReadableStream<Uint8Array>
  | null
  | undefined
  | Record<string, unknown>
  | unknown[]
  | number
  | boolean;

/** A body as bytes, with the media type its kind implies (Blob, form data), if any. */
export interface Plaintext {
  bytes: Uint8Array;
  contentType?: string;
}

/** Whether `value` is sent as JSON: plain objects and arrays, numbers, booleans, or anything with `toJSON`. */
function jsonable(value: object): boolean {
  const proto: unknown = Object.getPrototypeOf(value);
  return (
    Array.isArray(value) ||
    proto === Object.prototype ||
    proto === null ||
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
  );
}

/**
 * The plaintext of `body`: a string as UTF-8, bytes as they are, a `Blob`, a
 * `ReadableStream`, `URLSearchParams` or `FormData` encoded as `fetch` would (with their
 * media type), and a plain object, array, number or boolean as JSON. Anything else (a
 * `Map`, a class instance without `toJSON`, a function) is a {@link ConfigurationError}
 * rather than a silent `"{}"`.
 */
export async function plaintextOf(body: unknown): Promise<Plaintext> {
  if (body === undefined || body === null) return { bytes: new Uint8Array(0) };
  if (typeof body === 'string') return { bytes: utf8(body) };
  if (typeof body === 'number' || typeof body === 'boolean') return { bytes: utf8(JSON.stringify(body)) };
  if (typeof body !== 'object') throw new ConfigurationError(`body: cannot send a ${typeof body}`);
  if (body instanceof Uint8Array) return { bytes: body };
  if (body instanceof ArrayBuffer) return { bytes: new Uint8Array(body) };
  if (ArrayBuffer.isView(body)) return { bytes: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) };
  if (typeof Blob !== 'undefined' && body instanceof Blob) {
    const bytes = new Uint8Array(await body.arrayBuffer());
    return body.type ? { bytes, contentType: body.type } : { bytes };
  }
  if (body instanceof URLSearchParams) {
    return { bytes: utf8(body.toString()), contentType: 'application/x-www-form-urlencoded;charset=UTF-8' };
  }
  if ((typeof FormData !== 'undefined' && body instanceof FormData) || (typeof ReadableStream !== 'undefined' && body instanceof ReadableStream)) {
    // Encoded as fetch encodes them (multipart with its boundary; a stream read to the end).
    const encoded = new Response(body as BodyInit);
    const bytes = new Uint8Array(await encoded.arrayBuffer());
    const contentType = encoded.headers.get('content-type');
    return contentType ? { bytes, contentType } : { bytes };
  }
  if (!jsonable(body)) {
    const kind = (body as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    throw new ConfigurationError(`body: a ${kind} has no JSON form; pass a plain object, a string or bytes`);
  }
  return { bytes: utf8(JSON.stringify(body)) };
}

/** The headers of a call, from any form `fetch` takes (record, pairs, `Headers`), lower-cased. */
export function headersOf(init: HeadersInit | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (init === undefined) return out;
  let headers: Headers;
  try {
    headers = new Headers(init);
  } catch (e) {
    throw new ConfigurationError(`headers: ${e instanceof Error ? e.message : String(e)}`);
  }
  headers.forEach((value, name) => out.set(name, value));
  return out;
}
