/**
 * Admin routes of offline sites (README, Offline sites), authenticated by the admin key:
 *   POST /v1/admin/bundles — the bundle, streamed and spooled to a temp file, verified whole
 *     (bundle-reader.ts), then applied (bundle-import.ts); answers the result and the receipt;
 *   GET  .../databases/:databaseId/bundle — the last bundle imported and the cloud copy's age;
 * and the same answer to the database's own API key (GET /v1/customers/:c/databases/:d/bundle, for
 * `tidemark status`). Failed keys count in the same throttle as the other routes (auth-throttle.ts).
 * The tenant of an import is the one the bundle names, proven by its MAC; each rows frame obeys the
 * online body limit.
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import type { FastifyInstance } from 'fastify';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { BUNDLE_CONTENT_TYPE, type BundleStatus } from '../shared/protocol/bundle.js';
import { ROUTES } from '../shared/protocol.js';
import { adminGuard } from './admin-routes.js';
import type { AuthGate } from './auth-throttle.js';
import { applyBundle } from './bundle-import.js';
import { verifyBundle } from './bundle-reader.js';
import { type BundleStore, bundleStatusOf } from './bundle-store.js';
import { pathTenant, requireDatabaseKey } from './request-auth.js';
import { clientIdSchema, databaseIdSchema, parse } from './request-schemas.js';
import type { TenantStore } from './tenant-store.js';

export interface BundleRouteOptions {
  store: TenantStore;
  bundles: BundleStore;
  adminKey: string;
  maxBodyBytes: number;
  leaseSeconds: number;
  log: Logger;
  authenticated: AuthGate;
}

export function registerBundleRoutes(app: FastifyInstance, options: BundleRouteOptions): void {
  const { store, bundles, log } = options;
  const requireAdmin = adminGuard(options.adminKey, options.authenticated);

  // The bundle reaches the handler as the raw request stream.
  app.addContentTypeParser(BUNDLE_CONTENT_TYPE, (_req, payload, done) => done(null, payload));

  app.post<{ Body: unknown }>(ROUTES.adminBundles, { preHandler: requireAdmin }, async (req) => {
    if (!req.headers['content-type']?.startsWith(BUNDLE_CONTENT_TYPE))
      throw new ProtocolError(ErrorCode.REQUEST_INVALID, 415, `a bundle must be sent as ${BUNDLE_CONTENT_TYPE}`);
    const dir = await mkdtemp(join(tmpdir(), 'tidemark-bundle-'));
    try {
      const path = join(dir, 'bundle');
      await pipeline(req.body as Readable, createWriteStream(path));
      const bytes = (await stat(path)).size;
      const header = await verifyBundle(path, bundles, options.maxBodyBytes);
      const result = await applyBundle({ store, bundles, path, header, bytes, maxRowsBytes: options.maxBodyBytes, leaseSeconds: options.leaseSeconds });
      log.info(
        {
          clientId: result.clientId,
          databaseId: result.databaseId,
          sequence: result.sequence,
          applied: result.applied,
          rows: result.rows,
          deletes: result.deletes,
        },
        'bundle imported',
      );
      return result;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  app.get<{ Params: { clientId: string; databaseId: string } }>(ROUTES.adminBundle, { preHandler: requireAdmin }, async (req): Promise<BundleStatus> => {
    const tenant = {
      clientId: parse(clientIdSchema, req.params.clientId, 'clientId'),
      databaseId: parse(databaseIdSchema, req.params.databaseId, 'databaseId').toLowerCase(),
    };
    if (!(await bundles.apiKeyHash(tenant.clientId, tenant.databaseId))) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'no such client/database');
    return bundleStatusOf(bundles, tenant, Date.now());
  });

  app.get<{ Params: { clientId: string; databaseId: string } }>(ROUTES.tenantBundle, async (req): Promise<BundleStatus> => {
    const { tenant } = await requireDatabaseKey(
      req,
      options.authenticated,
      (key) => store.authenticate(key),
      () => pathTenant(req.params),
    );
    return bundleStatusOf(bundles, tenant, Date.now());
  });
}
