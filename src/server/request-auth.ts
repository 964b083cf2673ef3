/**
 * How a request shows who it acts for, shared by the routes: the bearer token, a database's API key
 * checked against the database its path names, and the lease of the agent that sends it.
 */
import type { FastifyRequest } from 'fastify';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { HEADER_AGENT_ID } from '../shared/protocol.js';
import type { AuthGate } from './auth-throttle.js';
import type { Tenant, TenantStore } from './tenant-store.js';

/** The request's `Authorization: Bearer` token, or '' when it has none. */
export function bearerToken(req: FastifyRequest): string {
  return /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
}

/**
 * The tenant whose API key the request carries (failures counted by the auth throttle), which must
 * be `wanted` (the database its path names, read only once the key is known): 401 without a known
 * key, 403 for another database's key.
 */
export async function requireDatabaseKey(
  req: FastifyRequest,
  authenticated: AuthGate,
  authenticate: (key: string) => Promise<Tenant | null>,
  wanted: () => Tenant,
): Promise<{ tenant: Tenant; key: string }> {
  const key = bearerToken(req);
  if (!key) throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'API key required (Authorization: Bearer <key>)');
  const tenant = await authenticated(req, key, () => authenticate(key));
  if (!tenant) throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'unknown API key');
  const path = wanted();
  if (tenant.clientId !== path.clientId || tenant.databaseId !== path.databaseId)
    throw new ProtocolError(ErrorCode.AUTH_FORBIDDEN, 403, 'this API key is bound to another client or database');
  return { tenant, key };
}

/** The database a path names, as written (the id lower-cased, as the server stores it). */
export function pathTenant(params: { clientId: string; databaseId: string }): Tenant {
  return { clientId: params.clientId, databaseId: params.databaseId.toLowerCase() };
}

/** Takes or renews the database's lease for the agent the request names (its agent id header): 409 while another agent holds it. */
export async function requireLease(req: FastifyRequest, store: Pick<TenantStore, 'acquireLease'>, tenant: Tenant, leaseSeconds: number): Promise<void> {
  const agentId = req.headers[HEADER_AGENT_ID];
  if (typeof agentId !== 'string' || agentId.length === 0 || agentId.length > 200)
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, `header ${HEADER_AGENT_ID} required`);
  const heldUntil = await store.acquireLease(tenant, agentId, leaseSeconds);
  if (heldUntil) throw new ProtocolError(ErrorCode.LEASE_HELD, 409, `another agent holds this database's lease until ${heldUntil.toISOString()}`);
}
