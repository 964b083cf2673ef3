/** Answers that tell the client when to come back (429, 503): the error mapper sets Retry-After. */
import { type ErrorCode, ProtocolError } from '../shared/errors.js';

export class RetryLaterError extends ProtocolError {
  constructor(
    code: ErrorCode,
    status: number,
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super(code, status, message);
  }
}
