/**
 * Validation at the edge: a message is parsed by its schema once, where it enters, and is typed
 * from then on (no `as T` casts on wire data). A request that fails is the caller's mistake: a 400
 * `TM_REQUEST_INVALID` naming each bad path.
 */
import type { z } from 'zod';

import { ErrorCode, ProtocolError } from '../errors.js';

function describeIssues(issues: readonly z.core.$ZodIssue[], what: string): string {
  return issues
    .slice(0, 10)
    .map((i) => `${i.path.length ? i.path.join('.') : what}: ${i.message}`)
    .join('; ');
}

/** Parses a decoded value (a JSON body, a query string) by its schema; 400 listing the problems otherwise. */
export function parseMessage<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `invalid ${what}: ${describeIssues(r.error.issues, what)}`);
  return r.data;
}

/** Parses JSON text by its schema: `parseJsonBody(tableSummarySchema, text, 'summary')`. */
export function parseJsonBody<S extends z.ZodType>(schema: S, text: string, what = 'body'): z.output<S> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `invalid ${what}: not JSON`);
  }
  return parseMessage(schema, value, what);
}
