/**
 * The enrollment and key routes as the CLI calls them (server side: admin-key-routes.ts): admin
 * calls go through the admin client; registration by token and rotation authenticate with the
 * token or the database's own key.
 */
import type { z } from 'zod';

import { HttpTransport, type StreamBody, type TransportOptions } from '../agent/http-transport.js';
import { ErrorCode, ProtocolError, RetryableError, TidemarkError } from '../shared/errors.js';
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
import { adminRequest } from './admin-client.js';

const KEY_TIMEOUT_MS = 60_000;

/** A POST's body: its bytes (or a stream of them) and their content type. */
export interface PostBody {
  bytes: Buffer | StreamBody;
  contentType: string;
}

/**
 * One POST authenticated by a bearer credential (an enrollment token, a database key, the admin
 * key), sent as the agent sends its requests (the environment's proxy, the config's TLS files:
 * http-transport.ts); the answer parsed by `schema`. `timeoutMs` null: no timeout (an exchange
 * that lasts as long as the server works on it).
 */
export async function bearerPost<S extends z.ZodType>(
  serverUrl: string,
  credential: string,
  path: string,
  body: PostBody,
  schema: S,
  what: string,
  network: TransportOptions | undefined,
  timeoutMs: number | null,
): Promise<z.output<S>> {
  const transport = new HttpTransport(serverUrl, network);
  let res: { status: number; text: string };
  try {
    res = await transport.request(
      'POST',
      `${serverUrl.replace(/\/+$/, '')}${path}`,
      body.bytes,
      { authorization: `Bearer ${credential}`, 'content-type': body.contentType },
      timeoutMs,
    );
  } catch (e) {
    const err = e as { code?: string; message?: string };
    throw new RetryableError(ErrorCode.SERVER_UNAVAILABLE, `${what}: server unreachable at ${serverUrl} (${err.code ?? err.message})`, { cause: e });
  } finally {
    transport.close();
  }
  let json: unknown;
  try {
    json = JSON.parse(res.text);
  } catch {
    json = undefined;
  }
  if (res.status < 200 || res.status >= 300) {
    const parsed = errorBodySchema.safeParse(json);
    if (!parsed.success) throw new ProtocolError(ErrorCode.INTERNAL, res.status, `${what}: server at ${serverUrl} answered ${res.status}`);
    const code = (Object.values(ErrorCode) as string[]).includes(parsed.data.error.code) ? (parsed.data.error.code as ErrorCode) : ErrorCode.INTERNAL;
    throw new ProtocolError(code, res.status, `${what}: ${parsed.data.error.message}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new TidemarkError(ErrorCode.INTERNAL, `${what}: unexpected answer from the server; is it a tidemark server of this version?`);
  return parsed.data;
}

/** A JSON POST authenticated by a token or a database key. */
function bearerRequest<S extends z.ZodType>(
  serverUrl: string,
  credential: string,
  path: string,
  body: unknown,
  schema: S,
  what: string,
  network: TransportOptions | undefined,
): Promise<z.output<S>> {
  const json = { bytes: Buffer.from(JSON.stringify(body)), contentType: 'application/json' };
  return bearerPost(serverUrl, credential, path, json, schema, what, network, KEY_TIMEOUT_MS);
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
export function enrollDatabase(serverUrl: string, token: string, name: string, network?: TransportOptions): Promise<RegisterResult> {
  return bearerRequest(serverUrl, token, ROUTES.enroll, { name }, registerResultSchema, 'registration with the enrollment token', network);
}

/** The database where a key rotation happens, and the key it authenticates with. */
export interface KeyHolder {
  serverUrl: string;
  clientId: string;
  databaseId: string;
  apiKey: string;
}

/** Asks for a new key (pending until confirmed), authenticated by the current one. */
export function issueKey(h: KeyHolder, network?: TransportOptions): Promise<IssuedKey> {
  return bearerRequest(h.serverUrl, h.apiKey, buildPath('databaseKeys', h), {}, issuedKeySchema, 'asking for a new key', network);
}

/** Confirms the presented (new) key: the other keys retire after `overlapSeconds`. */
export function confirmKey(h: KeyHolder, overlapSeconds: number, network?: TransportOptions): Promise<ConfirmKeyResult> {
  return bearerRequest(
    h.serverUrl,
    h.apiKey,
    buildPath('databaseKeyConfirm', h),
    { overlapSeconds },
    confirmKeyResultSchema,
    'confirming the new key',
    network,
  );
}
