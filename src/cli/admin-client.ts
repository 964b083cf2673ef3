/** The admin API, as the CLI calls it. */
import { ErrorCode, ProtocolError, RetryableError } from '../shared/errors.js';
import type { ErrorBody } from '../shared/protocol.js';

export async function adminRequest<T>(serverUrl: string, adminKey: string, method: string, path: string, body?: unknown): Promise<T> {
  const url = `${serverUrl.replace(/\/+$/, '')}${path}`;
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${adminKey}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(60_000),
    });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new RetryableError(ErrorCode.SERVER_UNAVAILABLE, `server unreachable at ${serverUrl}${cause ? ` (${cause.code ?? cause.message})` : ''}`, {
      cause: e,
    });
  }
  const text = await res.text();
  if (!res.ok) {
    let message = `server answered ${res.status}`;
    let code: ErrorCode = ErrorCode.INTERNAL;
    try {
      const parsed = JSON.parse(text) as ErrorBody;
      message = parsed.error.message;
      code = parsed.error.code as ErrorCode;
    } catch {
      // not a tidemark body
    }
    throw new ProtocolError(code, res.status, message);
  }
  return JSON.parse(text) as T;
}
