// A decrypted, authenticated answer, shaped like a fetch `Response`.

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
