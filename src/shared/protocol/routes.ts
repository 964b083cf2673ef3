/**
 * Every route of the API in one place: the templates the server registers, and the path builders
 * the agent, the admin CLI and the tests use. A builder fills its template, so the two cannot drift.
 */
import { InvariantError } from '../errors.js';
import { formatTableName, type TableName } from './table-name.js';

/** Route templates (Fastify syntax), all under /v1 except health and metrics. */
export const ROUTES = {
  /** GET summary, PUT declare, POST upload (COPY text), DELETE rows. */
  table: '/v1/customers/:clientId/databases/:databaseId/tables/:table',
  tableManifest: '/v1/customers/:clientId/databases/:databaseId/tables/:table/manifest',
  tableRecount: '/v1/customers/:clientId/databases/:databaseId/tables/:table/recount',
  tableResync: '/v1/customers/:clientId/databases/:databaseId/tables/:table/resync',
  /** POST register a database. */
  adminDatabases: '/v1/admin/customers/:clientId/databases',
  /** GET one tenant's tables, lag and resync state. */
  adminDatabase: '/v1/admin/customers/:clientId/databases/:databaseId',
  /** POST request a resync. */
  adminResync: '/v1/admin/customers/:clientId/databases/:databaseId/resync',
  /** GET every tenant. */
  adminTenants: '/v1/admin/tenants',
  /** POST import an offline site's bundle (the tenant is in the bundle). */
  adminBundles: '/v1/admin/bundles',
  /** GET the last bundle a database imported. */
  adminBundle: '/v1/admin/customers/:clientId/databases/:databaseId/bundle',
  /** GET the admin's catalog of admitted tables. */
  adminTables: '/v1/admin/tables',
  /** PUT admit a table with its key (re-keys its replica when the key differs). */
  adminTable: '/v1/admin/tables/:table',
  /** POST an agent's run report (fleet-messages.ts), with the database's API key. */
  databaseReport: '/v1/customers/:clientId/databases/:databaseId/report',
  /** GET every database's health, worst first (?client=&state=). */
  adminFleet: '/v1/admin/fleet',
  /** GET one database's tables, quarantine, schema and resync state, and run history. */
  adminDatabaseDetail: '/v1/admin/customers/:clientId/databases/:databaseId/detail',
  /** POST create an enrollment token for a client (admin). */
  adminEnrollmentTokens: '/v1/admin/customers/:clientId/enrollment-tokens',
  /** POST register a database with an enrollment token (Authorization: Bearer <token>). */
  enroll: '/v1/enroll',
  /** POST a new key for this database, pending until confirmed (authenticated by a current key). */
  databaseKeys: '/v1/customers/:clientId/databases/:databaseId/keys',
  /** POST confirm the presented key: the other keys retire after the overlap window. */
  databaseKeyConfirm: '/v1/customers/:clientId/databases/:databaseId/keys/confirm',
  /** POST revoke every key of a database and issue a new one (admin). */
  adminRevokeKeys: '/v1/admin/customers/:clientId/databases/:databaseId/keys/revoke',
  /** GET the last bundle a database imported, with the database's API key (`tidemark status`). */
  tenantBundle: '/v1/customers/:clientId/databases/:databaseId/bundle',
  healthz: '/healthz',
  readyz: '/readyz',
  metrics: '/metrics',
} as const;
export type RouteName = keyof typeof ROUTES;

/** The `:name` parameters of a template, as a type: `'/a/:x/b/:y'` gives `'x' | 'y'`. */
type ParamsOf<T extends string> = T extends `${string}:${infer P}/${infer Rest}` ? P | ParamsOf<`/${Rest}`> : T extends `${string}:${infer P}` ? P : never;

/** The parameters a route's handler receives (raw path segments, before validation). */
export type RouteParams<R extends RouteName> = Record<ParamsOf<(typeof ROUTES)[R]>, string>;

/** Fills a route template, percent-encoding each parameter as one path segment. */
export function buildPath<R extends RouteName>(route: R, params: RouteParams<R>): string {
  const values = params as Record<string, string>;
  return ROUTES[route].replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = values[name];
    if (value === undefined) throw new InvariantError(`route ${route} needs parameter ${name}`);
    return encodeURIComponent(value);
  });
}

/** Path of a table's routes: `/v1/customers/{c}/databases/{d}/tables/{table}`. */
export function tablePath(clientId: string, databaseId: string, table: TableName): string {
  return buildPath('table', { clientId, databaseId, table: formatTableName(table) });
}

/** Admin paths, built from the templates above. */
export const adminPaths = {
  databases: (clientId: string): string => buildPath('adminDatabases', { clientId }),
  database: (clientId: string, databaseId: string): string => buildPath('adminDatabase', { clientId, databaseId }),
  resync: (clientId: string, databaseId: string): string => buildPath('adminResync', { clientId, databaseId }),
  tenants: (): string => ROUTES.adminTenants,
  bundles: (): string => ROUTES.adminBundles,
  bundle: (clientId: string, databaseId: string): string => buildPath('adminBundle', { clientId, databaseId }),
  tables: (): string => ROUTES.adminTables,
  table: (table: TableName): string => buildPath('adminTable', { table: formatTableName(table) }),
  fleet: (): string => ROUTES.adminFleet,
  detail: (clientId: string, databaseId: string): string => buildPath('adminDatabaseDetail', { clientId, databaseId }),
  enrollmentTokens: (clientId: string): string => buildPath('adminEnrollmentTokens', { clientId }),
  revokeKeys: (clientId: string, databaseId: string): string => buildPath('adminRevokeKeys', { clientId, databaseId }),
};

/** Path of one of a table's routes (the table itself, or its manifest, recount or resync). */
export function tableRoutePath(
  route: 'table' | 'tableManifest' | 'tableRecount' | 'tableResync',
  clientId: string,
  databaseId: string,
  table: TableName,
): string {
  return buildPath(route, { clientId, databaseId, table: formatTableName(table) });
}
