/** Admin routes (register a database, request a resync, list tenants), authenticated by the admin key. */
import { createHash, timingSafeEqual } from 'node:crypto';

import type { FastifyInstance, FastifyRequest } from 'fastify';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { parseTableName, ROUTES } from '../shared/protocol.js';
import type { AuthGate } from './auth-throttle.js';
import { type BundleStore, bundleStatusOf } from './bundle-store.js';
import { bearerToken } from './request-auth.js';
import { admitTableSchema, clientIdSchema, databaseIdSchema, parse, registerSchema, resyncRequestSchema } from './request-schemas.js';
import type { TenantStore } from './tenant-store.js';

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The preHandler of admin routes: the admin key as a bearer token, failures counted by the auth throttle. */
export function adminGuard(adminKey: string, authenticated: AuthGate): (req: FastifyRequest) => Promise<void> {
  const adminKeyHash = sha256(adminKey);
  return async (req) => {
    const given = bearerToken(req);
    const ok = await authenticated(req, given, async () => (given && timingSafeEqual(sha256(given), adminKeyHash) ? true : null));
    if (!ok)
      throw new ProtocolError(
        ErrorCode.AUTH_UNAUTHENTICATED,
        401,
        given ? 'admin key not accepted (check the admin key the server was started with)' : 'admin key required (Authorization: Bearer <admin key>)',
      );
  };
}

export function registerAdminRoutes(
  app: FastifyInstance,
  /** `bundles`: offline sites' imports; the database's answer then carries its last bundle (`bundle`). */
  options: { store: TenantStore; adminKey: string; log: Logger; authenticated: AuthGate; bundles?: BundleStore },
): void {
  const { store, log } = options;
  const requireAdmin = adminGuard(options.adminKey, options.authenticated);
  const clientIdOf = (s: string): string => parse(clientIdSchema, s, 'clientId');
  const databaseIdOf = (s: string): string => parse(databaseIdSchema, s, 'databaseId').toLowerCase();

  app.post<{ Params: { clientId: string }; Body: unknown }>(ROUTES.adminDatabases, { preHandler: requireAdmin }, async (req, reply) => {
    const clientId = clientIdOf(req.params.clientId);
    const { name } = parse(registerSchema, req.body, 'body');
    const result = await store.registerDatabase(clientId, name);
    log.info({ clientId, databaseId: result.databaseId }, 'database registered');
    return reply.code(201).send(result);
  });

  app.post<{ Params: { clientId: string; databaseId: string }; Body: unknown }>(ROUTES.adminResync, { preHandler: requireAdmin }, async (req, reply) => {
    const clientId = clientIdOf(req.params.clientId);
    const databaseId = databaseIdOf(req.params.databaseId);
    const body = parse(resyncRequestSchema, req.body ?? undefined, 'body');
    const tables = body?.tables ? body.tables.map((t) => parseTableName(t)) : null;
    const flagged = await store.requestResync(clientId, databaseId, tables);
    if (flagged.length === 0) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'no matching declared table for this database');
    log.info({ clientId, databaseId, tables: flagged }, 'resync requested');
    return reply.code(202).send({ tables: flagged });
  });

  // The shared catalog's governance (docs/security.md, The shared catalog).
  app.get(ROUTES.adminTables, { preHandler: requireAdmin }, async () => ({ tables: await store.listAdmittedTables() }));
  app.put<{ Params: { table: string }; Body: unknown }>(ROUTES.adminTable, { preHandler: requireAdmin }, async (req) => {
    const table = parseTableName(req.params.table);
    const { keyColumns } = parse(admitTableSchema, req.body, 'body');
    const key = keyColumns.map((c) => ({ name: c.name, type: c.type, notNull: true, ...(c.collation ? { collation: c.collation } : {}) }));
    const result = await store.admitTable(table, key);
    log.info({ table: req.params.table, rekeyed: result.rekeyed }, 'table admitted');
    return result;
  });

  app.get(ROUTES.adminTenants, { preHandler: requireAdmin }, async () => ({ tenants: await store.listTenants() }));
  app.get<{ Params: { clientId: string; databaseId: string } }>(ROUTES.adminDatabase, { preHandler: requireAdmin }, async (req) => {
    const [tenant] = await store.listTenants(clientIdOf(req.params.clientId), databaseIdOf(req.params.databaseId));
    if (!tenant) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'no such client/database');
    // An offline database (one that imported a bundle): its last bundle and the cloud copy's age.
    const bundle = options.bundles ? await bundleStatusOf(options.bundles, tenant, Date.now()) : null;
    return bundle?.lastImport ? { ...tenant, bundle } : tenant;
  });
}
