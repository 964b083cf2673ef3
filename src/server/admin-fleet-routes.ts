/**
 * The fleet's routes (README, Operating a fleet):
 *   POST /v1/customers/:clientId/databases/:databaseId/report — an agent's run report, with its API key
 *     and under its lease (a second agent with the same key gets 409, as on the table routes);
 *   GET  /v1/admin/fleet?client=&state= — every database's health, worst first (admin key);
 *   GET  /v1/admin/customers/:clientId/databases/:databaseId/detail — one database's tables and runs (admin key).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import {
  type FleetDetail,
  type FleetList,
  fleetQuerySchema,
  parseClientId,
  parseDatabaseId,
  parseMessage,
  ROUTES,
  type RunReportResult,
  runReportSchema,
} from '../shared/protocol.js';
import { adminGuard } from './admin-routes.js';
import type { AuthGate } from './auth-throttle.js';
import { compareFleet, type FleetClock, toFleetDatabase } from './fleet-state.js';
import type { FleetStore } from './fleet-store.js';
import { pathTenant, requireDatabaseKey, requireLease } from './request-auth.js';
import type { Tenant, TenantStore } from './tenant-store.js';

export interface FleetRouteOptions {
  store: TenantStore;
  fleet: FleetStore;
  adminKey: string;
  authenticated: AuthGate;
  leaseSeconds: number;
  /** A database whose agent was last seen longer ago is `silent`. */
  silentAfterSeconds: number;
  /** The clock states are computed with (epoch ms). */
  now: () => number;
}

interface DatabaseParams {
  clientId: string;
  databaseId: string;
}

export function registerFleetRoutes(app: FastifyInstance, options: FleetRouteOptions): void {
  const { store, fleet } = options;
  const requireAdmin = adminGuard(options.adminKey, options.authenticated);
  const clock = (): FleetClock => ({ now: options.now(), silentAfterSeconds: options.silentAfterSeconds });

  const authenticateAgent = async (req: FastifyRequest<{ Params: DatabaseParams }>): Promise<Tenant> => {
    const { tenant } = await requireDatabaseKey(
      req,
      options.authenticated,
      (key) => store.authenticate(key),
      () => pathTenant(req.params),
    );
    await requireLease(req, store, tenant, options.leaseSeconds);
    return tenant;
  };

  app.post<{ Params: DatabaseParams; Body: unknown }>(ROUTES.databaseReport, async (req): Promise<RunReportResult> => {
    const tenant = await authenticateAgent(req);
    await fleet.recordReport(tenant, parseMessage(runReportSchema, req.body, 'run report'));
    return { recorded: true };
  });

  app.get<{ Querystring: Record<string, string> }>(ROUTES.adminFleet, { preHandler: requireAdmin }, async (req): Promise<FleetList> => {
    const query = parseMessage(fleetQuerySchema, req.query, 'query');
    const now = clock();
    const databases = (await fleet.facts({ clientId: query.client }))
      .map((f) => toFleetDatabase(f, now))
      .filter((d) => query.state === undefined || d.state === query.state)
      .sort(compareFleet);
    return { databases };
  });

  app.get<{ Params: DatabaseParams }>(ROUTES.adminDatabaseDetail, { preHandler: requireAdmin }, async (req): Promise<FleetDetail> => {
    const tenant = { clientId: parseClientId(req.params.clientId), databaseId: parseDatabaseId(req.params.databaseId) };
    const [facts] = await fleet.facts(tenant);
    if (!facts) throw new ProtocolError(ErrorCode.NOT_FOUND, 404, 'no such client/database');
    const [tables, runs] = await Promise.all([fleet.tables(tenant), fleet.runs(tenant)]);
    return {
      database: toFleetDatabase(facts, clock()),
      tables,
      runs: runs.map((r) => ({ ...r, at: r.at.toISOString() })),
    };
  });
}
