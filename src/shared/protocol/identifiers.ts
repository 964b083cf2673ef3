/**
 * Identity values of the protocol: versions, client ids and database ids, each with one canonical
 * text form that every side (config, CLI, agent, server paths) agrees on.
 */
import { z } from 'zod';

import { ErrorCode, ProtocolError } from '../errors.js';
import { MAX_VERSION } from './limits.js';

/** Client ids: lower-case letters, digits, `-` and `_`, 1 to 63 characters. */
export const CLIENT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** A UUID in any case; `databaseIdSchema` gives its canonical (lower-case) form. */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a decimal version in 0..2^63-1 (digits only: no sign, no exponent). */
export function isVersion(text: string): boolean {
  return /^\d{1,19}$/.test(text) && BigInt(text) <= MAX_VERSION;
}

/** A version (xid8 value) as a decimal string in 0..2^63-1: JSON numbers lose precision above 2^53. */
export const versionSchema = z.string().refine(isVersion, { message: `must be a decimal integer from 0 to ${MAX_VERSION}` });

/** A client id, as given at registration. */
export const clientIdSchema = z.string().regex(CLIENT_ID_PATTERN, 'must be 1 to 63 lower-case letters, digits, - and _, starting with a letter or digit');

/** A database id: a UUID, accepted in any case and always given back in lower case (its canonical form). */
export const databaseIdSchema = z
  .string()
  .regex(UUID_PATTERN, 'must be a UUID')
  .transform((s) => s.toLowerCase());

function parseId<T>(schema: z.ZodType<T>, text: string, what: string): T {
  const r = schema.safeParse(text);
  if (!r.success)
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `invalid ${what} ${JSON.stringify(text)}: ${r.error.issues[0]?.message ?? 'invalid'}`);
  return r.data;
}

/** A database id from a path or flag, in its canonical lower-case form; 400 when it is not a UUID. */
export function parseDatabaseId(text: string): string {
  return parseId(databaseIdSchema, text, 'database id');
}

/** A client id from a path or flag; 400 when malformed. */
export function parseClientId(text: string): string {
  return parseId(clientIdSchema, text, 'client id');
}
