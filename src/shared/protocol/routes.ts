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
