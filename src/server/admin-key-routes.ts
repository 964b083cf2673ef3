/**
 * Enrollment and key routes: enrollment tokens (admin), registration by token (public, the token is
 * the credential, under the failed-authentication throttle), key rotation (the database's own keys),
 * key revocation and deregistration (admin). Storage and the rotation's crash analysis: key-store.ts.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { confirmKeyRequestSchema, enrollmentTokenRequestSchema, enrollRequestSchema } from '../shared/protocol/key-messages.js';
import { ROUTES } from '../shared/protocol.js';
import { adminGuard } from './admin-routes.js';
import type { AuthGate } from './auth-throttle.js';
import type { KeyStore } from './key-store.js';
import { bearerToken, requireDatabaseKey } from './request-auth.js';
import { clientIdSchema, databaseIdSchema, parse } from './request-schemas.js';
import type { Tenant, TenantStore } from './tenant-store.js';

export interface KeyRouteOptions {
  store: TenantStore;
  keys: KeyStore;
  adminKey: string;
  log: Logger;
  authenticated: AuthGate;
}

export function registerKeyRoutes(app: FastifyInstance, options: KeyRouteOptions): void {
  const { store, keys, log } = options;
  const requireAdmin = adminGuard(options.adminKey, options.authenticated);
  const tenantOf = (params: { clientId: string; databaseId: string }): Tenant => ({
    clientId: parse(clientIdSchema, params.clientId, 'clientId'),
    databaseId: parse(databaseIdSchema, params.databaseId, 'databaseId'),
  });
  /** The caller's own key, checked against the path's database; returns the tenant and the key. */
  const databaseKey = (req: FastifyRequest<{ Params: { clientId: string; databaseId: string } }>): Promise<{ tenant: Tenant; key: string }> =>
    requireDatabaseKey(
      req,
      options.authenticated,
      (key) => store.authenticate(key),
      () => tenantOf(req.params),
    );

  app.post<{ Params: { clientId: string }; Body: unknown }>(ROUTES.adminEnrollmentTokens, { preHandler: requireAdmin }, async (req, reply) => {
    const clientId = parse(clientIdSchema, req.params.clientId, 'clientId');
    const body = parse(enrollmentTokenRequestSchema, req.body, 'body');
    const result = await keys.createEnrollmentToken(clientId, body.expiresSeconds, body.uses);
    log.info({ clientId, uses: body.uses, expiresAt: result.expiresAt }, 'enrollment token created');
    return reply.code(201).send(result);
  });

  app.post<{ Body: unknown }>(ROUTES.enroll, async (req, reply) => {
    const token = bearerToken(req);
    if (!token) throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'enrollment token required (Authorization: Bearer <token>)');
    const { name } = parse(enrollRequestSchema, req.body, 'body');
    // The token is checked (and used) under the throttle: a guess counts as a failed authentication.
    const result = await options.authenticated(req, token, () => keys.enroll(token, name));
    if (!result) throw new ProtocolError(ErrorCode.AUTH_UNAUTHENTICATED, 401, 'enrollment token not accepted: unknown, expired or used up; ask for a new one');
    log.info({ clientId: result.clientId, databaseId: result.databaseId }, 'database enrolled');
    return reply.code(201).send(result);
  });

  app.post<{ Params: { clientId: string; databaseId: string } }>(ROUTES.databaseKeys, async (req, reply) => {
    const { tenant, key } = await databaseKey(req);
    const issued = await keys.issueKey(tenant, key);
    log.info({ ...tenant }, 'key issued (pending)');
    return reply.code(201).send(issued);
  });

  app.post<{ Params: { clientId: string; databaseId: string }; Body: unknown }>(ROUTES.databaseKeyConfirm, async (req) => {
    const { tenant, key } = await databaseKey(req);
    const { overlapSeconds } = parse(confirmKeyRequestSchema, req.body ?? {}, 'body');
    const result = await keys.confirmKey(tenant, key, overlapSeconds);
    log.info({ ...tenant, ...result }, 'key confirmed');
    return result;
  });

  app.post<{ Params: { clientId: string; databaseId: string } }>(ROUTES.adminRevokeKeys, { preHandler: requireAdmin }, async (req) => {
    const result = await keys.revokeKeys(tenantOf(req.params));
    log.info({ clientId: result.clientId, databaseId: result.databaseId, keysRevoked: result.keysRevoked }, 'keys revoked');
    return result;
  });

  app.delete<{ Params: { clientId: string; databaseId: string } }>(ROUTES.adminDatabase, { preHandler: requireAdmin }, async (req) => {
    const result = await keys.deregister(tenantOf(req.params));
    log.info(
      { clientId: result.clientId, databaseId: result.databaseId, tables: result.tables.length, rowsDeleted: result.rowsDeleted },
      'database deregistered',
    );
    return result;
  });
}
