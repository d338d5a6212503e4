// Refusals: the server's own errors (plain, or sealed in v2) and what they say about the clock.

import { ServerRefusedError } from './errors.js';

/** The server's clock minus ours, from an answer's `Date` header (1 s resolution). */
export function skewOf(res: Response, sentAt: number): number | undefined {
  const date = res.headers.get('date');
  const server = date === null ? NaN : Date.parse(date);
  return Number.isNaN(server) ? undefined : server + 500 - sentAt;
}

export async function refusal(res: Response): Promise<ServerRefusedError> {
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


/** A sealed refusal, opened: authenticated, with the server's time. */
export class Sealed {
  constructor(
    readonly error: ServerRefusedError,
    readonly outcome: 'not-executed' | 'unknown',
    readonly serverTime: number,
    readonly stampedAt: number,
    readonly receivedAt: number,
  ) {}
}

/** An answer that is not the one the attempt waited for (a refusal, maybe from clock skew). */
export class Refusal {
  constructor(
    readonly res: Response,
    readonly sentAt: number,
  ) {}
}
