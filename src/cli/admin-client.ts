/** The admin API, as the CLI calls it: paths from the protocol's route builders, answers parsed by their schemas. */
import type { z } from 'zod';

import { ErrorCode, ProtocolError, RetryableError, TidemarkError } from '../shared/errors.js';
import {
  adminPaths,
  errorBodySchema,
  type RegisterResult,
  type ResyncResult,
  registerResultSchema,
  resyncResultSchema,
  type TenantInfo,
  type TenantList,
  tenantInfoSchema,
  tenantListSchema,
} from '../shared/protocol.js';

const ADMIN_TIMEOUT_MS = 60_000;

/** Reads an error code the server sent, if it is one of ours. */
function errorCodeOf(code: string): ErrorCode {
  return (Object.values(ErrorCode) as string[]).includes(code) ? (code as ErrorCode) : ErrorCode.INTERNAL;
}

/**
 * One admin request. With `schema`, the answer is parsed by it (a server answering something else
 * is reported as such); without, the decoded JSON is returned as is (kept for callers that predate
 * the schemas; prefer the typed functions below).
 */
export async function adminRequest<T = unknown>(
  serverUrl: string,
  adminKey: string,
  method: string,
  path: string,
  body?: unknown,
  schema?: z.ZodType<T>,
): Promise<T> {
  const url = `${serverUrl.replace(/\/+$/, '')}${path}`;
  const { res, json } = await fetchAdmin(serverUrl, url, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
  });
  if (!res.ok) {
    const parsed = errorBodySchema.safeParse(json);
    // The server says "required" for a missing and a wrong key alike; the CLI always sends one.
    if (res.status === 401)
      throw new ProtocolError(
        ErrorCode.AUTH_UNAUTHENTICATED,
        401,
        `admin key not accepted by the server at ${serverUrl}: check --admin-key, TIDEMARK_ADMIN_KEY or adminKey in the config file`,
      );
    if (!parsed.success) throw new ProtocolError(ErrorCode.INTERNAL, res.status, `${method} ${path}: server answered ${res.status}`);
    throw new ProtocolError(errorCodeOf(parsed.data.error.code), res.status, parsed.data.error.message);
  }
  if (!schema) return json as T; // legacy callers: their own type, unchecked
  const parsed = schema.safeParse(json);
  if (!parsed.success)
    throw new TidemarkError(
      ErrorCode.INTERNAL,
      `${method} ${path}: unexpected answer from the server (${parsed.error.issues[0]?.message ?? 'invalid'}); is it a tidemark server of this version?`,
    );
  return parsed.data;
}

/** Registers a database for a client: its id and API key (shown once). */
export function registerDatabase(serverUrl: string, adminKey: string, clientId: string, name: string): Promise<RegisterResult> {
  return adminRequest(serverUrl, adminKey, 'POST', adminPaths.databases(clientId), { name }, registerResultSchema);
}

/** Requests a resync of some tables (all declared ones when `tables` is undefined); the tables flagged. */
export function requestResync(serverUrl: string, adminKey: string, clientId: string, databaseId: string, tables?: string[]): Promise<ResyncResult> {
  return adminRequest(serverUrl, adminKey, 'POST', adminPaths.resync(clientId, databaseId), tables ? { tables } : {}, resyncResultSchema);
}

/** One tenant: its tables, lag and resync state. */
export function tenantInfo(serverUrl: string, adminKey: string, clientId: string, databaseId: string): Promise<TenantInfo> {
  return adminRequest(serverUrl, adminKey, 'GET', adminPaths.database(clientId, databaseId), undefined, tenantInfoSchema);
}

/** Every tenant. */
export function listTenants(serverUrl: string, adminKey: string): Promise<TenantList> {
  return adminRequest(serverUrl, adminKey, 'GET', adminPaths.tenants(), undefined, tenantListSchema);
}

/**
 * Sends one admin request: an unreachable server is a RetryableError; the answer's body comes back
 * parsed as JSON (undefined when it is not JSON, e.g. a proxy's page).
 */
async function fetchAdmin(serverUrl: string, url: string, init: RequestInit): Promise<{ res: Response; json: unknown }> {
  let res: Response;
  try {
    res = await fetch(url, init);
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new RetryableError(ErrorCode.SERVER_UNAVAILABLE, `server unreachable at ${serverUrl}${cause ? ` (${cause.code ?? cause.message})` : ''}`, {
      cause: e,
    });
  }
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { res, json };
}
