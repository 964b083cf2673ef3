/**
 * The enrollment and key routes as the CLI calls them (server side: admin-key-routes.ts): admin
 * calls go through the admin client; registration by token and rotation authenticate with the
 * token or the database's own key.
 */
import type { z } from 'zod';

import { ErrorCode, ProtocolError, TidemarkError } from '../shared/errors.js';
import {
  type ConfirmKeyResult,
  confirmKeyResultSchema,
  type DeregisterResult,
  deregisterResultSchema,
  type EnrollmentTokenResult,
  enrollmentTokenResultSchema,
  type IssuedKey,
  issuedKeySchema,
  type RevokeKeysResult,
  revokeKeysResultSchema,
} from '../shared/protocol/key-messages.js';
import { adminPaths, buildPath, errorBodySchema, type RegisterResult, ROUTES, registerResultSchema } from '../shared/protocol.js';
import { adminRequest, fetchAdmin } from './admin-client.js';

const KEY_TIMEOUT_MS = 60_000;

/** One request authenticated by a token or a database key; the answer parsed by `schema`. */
async function bearerRequest<S extends z.ZodType>(
  serverUrl: string,
  credential: string,
  path: string,
  body: unknown,
  schema: S,
  what: string,
): Promise<z.output<S>> {
  const { res, json } = await fetchAdmin(serverUrl, `${serverUrl.replace(/\/+$/, '')}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(KEY_TIMEOUT_MS),
  });
  if (!res.ok) {
    const parsed = errorBodySchema.safeParse(json);
    if (!parsed.success) throw new ProtocolError(ErrorCode.INTERNAL, res.status, `${what}: server at ${serverUrl} answered ${res.status}`);
    const code = (Object.values(ErrorCode) as string[]).includes(parsed.data.error.code) ? (parsed.data.error.code as ErrorCode) : ErrorCode.INTERNAL;
    throw new ProtocolError(code, res.status, `${what}: ${parsed.data.error.message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new TidemarkError(ErrorCode.INTERNAL, `${what}: unexpected answer from the server; is it a tidemark server of this version?`);
  return parsed.data;
}

export function createEnrollmentToken(
  serverUrl: string,
  adminKey: string,
  clientId: string,
  expiresSeconds: number,
  uses: number,
): Promise<EnrollmentTokenResult> {
  return adminRequest(serverUrl, adminKey, 'POST', adminPaths.enrollmentTokens(clientId), { expiresSeconds, uses }, enrollmentTokenResultSchema);
}

export function revokeKeys(serverUrl: string, adminKey: string, clientId: string, databaseId: string): Promise<RevokeKeysResult> {
  return adminRequest(serverUrl, adminKey, 'POST', adminPaths.revokeKeys(clientId, databaseId), {}, revokeKeysResultSchema);
}

export function deregisterDatabase(serverUrl: string, adminKey: string, clientId: string, databaseId: string): Promise<DeregisterResult> {
  return adminRequest(serverUrl, adminKey, 'DELETE', adminPaths.database(clientId, databaseId), undefined, deregisterResultSchema);
}

/** Registers a database with an enrollment token (no admin key). */
export function enrollDatabase(serverUrl: string, token: string, name: string): Promise<RegisterResult> {
  return bearerRequest(serverUrl, token, ROUTES.enroll, { name }, registerResultSchema, 'registration with the enrollment token');
}

/** The database where a key rotation happens, and the key it authenticates with. */
export interface KeyHolder {
  serverUrl: string;
  clientId: string;
  databaseId: string;
  apiKey: string;
}

/** Asks for a new key (pending until confirmed), authenticated by the current one. */
export function issueKey(h: KeyHolder): Promise<IssuedKey> {
  return bearerRequest(h.serverUrl, h.apiKey, buildPath('databaseKeys', h), {}, issuedKeySchema, 'asking for a new key');
}

/** Confirms the presented (new) key: the other keys retire after `overlapSeconds`. */
export function confirmKey(h: KeyHolder, overlapSeconds: number): Promise<ConfirmKeyResult> {
  return bearerRequest(h.serverUrl, h.apiKey, buildPath('databaseKeyConfirm', h), { overlapSeconds }, confirmKeyResultSchema, 'confirming the new key');
}
