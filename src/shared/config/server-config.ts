import { z } from 'zod';

import { type ConfigSources, type EnvMap, loadConfig } from './load-config.js';

export const SERVER_DEFAULTS = {
  listen: '127.0.0.1:8080',
  maxBodyBytes: 64 * 1024 * 1024,
  leaseSeconds: 300,
  poolMax: 20,
  manifestMaxRows: 1_000_000,
  manifestMaxBuckets: 2 ** 20,
  authFailureLimit: 20,
  authFailureWindowSeconds: 60,
  keyCacheSeconds: 10,
  tenantMaxTables: 1000,
  tenantMaxColumns: 1600,
  tenantMaxConcurrentRequests: 32,
  fleetSilentAfterSeconds: 900,
  fleetMetricsRefreshSeconds: 30,
  uploadMaxConcurrent: 4,
  uploadQueueSeconds: 40,
} as const;

/** Pool connections left to small requests (declarations, idle runs, manifests) when uploads take their share. */
export const UPLOAD_POOL_HEADROOM = 4;

export const serverConfigSchema = z.object({
  /** The cloud database holding replica tables and tidemark's catalog. */
  databaseUrl: z.string().min(1),
  /** HOST:PORT to listen on. */
  listen: z.string().default(SERVER_DEFAULTS.listen),
  /** Key of the admin API (register, resync, tenants). At least 16 characters. */
  adminKey: z.string().min(16, 'at least 16 characters'),
  /** Largest upload body accepted, in bytes (after gzip decompression too). */
  maxBodyBytes: z.coerce.number().int().min(1024).default(SERVER_DEFAULTS.maxBodyBytes),
  /** Seconds an agent's lease on its database lasts after its last write. */
  leaseSeconds: z.coerce.number().positive().default(SERVER_DEFAULTS.leaseSeconds),
  /** Connections to the cloud database. */
  poolMax: z.coerce.number().int().min(2).default(SERVER_DEFAULTS.poolMax),
  /** Most rows one manifest answer (level rows) may list; a request for more gets a 400 naming the limit. */
  manifestMaxRows: z.coerce.number().int().min(1).default(SERVER_DEFAULTS.manifestMaxRows),
  /** Most bucket sums one manifest answer (level buckets) may hold (8 bytes each); default 2^20, what the agent asks at most. */
  manifestMaxBuckets: z.coerce.number().int().min(1).default(SERVER_DEFAULTS.manifestMaxBuckets),
  /** Failed authentications per source address (or key prefix) within the window before 429s. */
  authFailureLimit: z.coerce.number().int().min(1).default(SERVER_DEFAULTS.authFailureLimit),
  /** Seconds of the failed-authentication window (and the longest Retry-After it gives). */
  authFailureWindowSeconds: z.coerce.number().int().min(1).default(SERVER_DEFAULTS.authFailureWindowSeconds),
  /**
   * Seconds a server process trusts an API key it authenticated, without asking the database again
   * (a request then costs one statement less). A key revoked or rotated out through another server
   * process, or by hand, keeps working here for at most this long; through this one, it stops at
   * once. 0 asks the database at every request. Default 10.
   */
  keyCacheSeconds: z.coerce.number().min(0).default(SERVER_DEFAULTS.keyCacheSeconds),
  /** Quota: tables one registered database may declare (403 past it). */
  tenantMaxTables: z.coerce.number().int().min(1).default(SERVER_DEFAULTS.tenantMaxTables),
  /** Quota: columns per declared table, the version column included (403 past it). */
  tenantMaxColumns: z.coerce.number().int().min(2).max(1600).default(SERVER_DEFAULTS.tenantMaxColumns),
  /**
   * Uploads with rows that load into the database at once, all tenants together; more wait in a
   * queue of the server process (docs/scaling.md, Fan-in). About twice the database server's CPU
   * cores: past that, concurrent loads into one replica table only wait on its extension lock.
   * Default 4 (at most poolMax minus 4, at least 1). Env TIDEMARK_UPLOAD_MAX_CONCURRENT.
   */
  uploadMaxConcurrent: z.coerce.number().int().min(1).optional(),
  /**
   * Seconds an upload may wait for its turn before the answer is 503 TM_SERVER_OVERLOADED with
   * Retry-After (the agent then sends it again). Keep it well below the agents' batch timeout
   * (60 s), which counts the wait too. Default 40. Env TIDEMARK_UPLOAD_QUEUE_SECONDS.
   */
  uploadQueueSeconds: z.coerce.number().min(0).default(SERVER_DEFAULTS.uploadQueueSeconds),
  /** Quota: requests one registered database may have in progress at once (429 past it). */
  tenantMaxConcurrentRequests: z.coerce.number().int().min(1).default(SERVER_DEFAULTS.tenantMaxConcurrentRequests),
  /**
   * Column types beyond pg_catalog's built-in data types that tenants may declare (enums, domains,
   * extension types), as `schema.name` (e.g. `public.citext`). Default none.
   */
  admittedTypes: z.array(z.string().min(1)).default([]),
  /**
   * Tables no admin admitted yet: `auto` (default) admits a table provisionally with the key of its
   * first declaration (the admin can see it and admit another key: tidemark admin admit-table);
   * `manual` refuses them until the admin admits them (403 TM_REPLICA_NOT_ADMITTED).
   */
  replicaAdmission: z.enum(['auto', 'manual']).default('auto'),
  /**
   * A replica column that no tenant declares any more (every tenant dropped it locally): `keep`
   * (default; the column stays, NULL for the tenants that dropped it) or `drop` (the replica drops it).
   */
  replicaDroppedColumns: z.enum(['keep', 'drop']).default('keep'),
  /**
   * Start even when the database role is a superuser or has BYPASSRLS (row-level security, the
   * second tenant wall, then does not apply to the server). Default false: such a start is refused.
   * Flag --allow-superuser, env TIDEMARK_ALLOW_SUPERUSER=1. For tests and the demo.
   */
  allowSuperuser: z
    .union([z.boolean(), z.enum(['1', 'true', '0', 'false', ''])])
    .default(false)
    .transform((v) => v === true || v === '1' || v === 'true'),
  /** HOST:PORT of a separate listener for /metrics; when set, the API listener does not serve /metrics. Default: none. */
  metricsListen: z.string().optional(),
  /** When set, /metrics requires `Authorization: Bearer <token>` (16+ characters). Default: none. */
  metricsBearerToken: z.string().min(16, 'at least 16 characters').optional(),
  logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  /** Seconds without a report or request from a database's agent before it is `silent` (default 900: three agent heartbeats). */
  fleetSilentAfterSeconds: z.coerce.number().int().min(1).default(SERVER_DEFAULTS.fleetSilentAfterSeconds),
  /** Seconds the per-database metrics' snapshot is reused for (one query per refresh, whatever the scrapes). Default 30. */
  fleetMetricsRefreshSeconds: z.coerce.number().min(0).default(SERVER_DEFAULTS.fleetMetricsRefreshSeconds),
  /**
   * Export the per-database series (labels client, database; 11 per database). false keeps only the
   * fleet-wide ones (a few series), for very large fleets. Env TIDEMARK_FLEET_METRICS_PER_DATABASE. Default true.
   */
  fleetMetricsPerDatabase: z
    .union([z.boolean(), z.enum(['1', 'true', '0', 'false'])])
    .default(true)
    .transform((v) => v === true || v === '1' || v === 'true'),
});

export type ServerConfig = z.output<typeof serverConfigSchema>;

export const SERVER_ENV: EnvMap = {
  TIDEMARK_DATABASE_URL: ['databaseUrl'],
  TIDEMARK_LISTEN: ['listen'],
  TIDEMARK_ADMIN_KEY: ['adminKey'],
  TIDEMARK_MAX_BODY_BYTES: ['maxBodyBytes'],
  TIDEMARK_LOG_LEVEL: ['logLevel'],
  TIDEMARK_REPLICA_ADMISSION: ['replicaAdmission'],
  TIDEMARK_REPLICA_DROPPED_COLUMNS: ['replicaDroppedColumns'],
  TIDEMARK_ALLOW_SUPERUSER: ['allowSuperuser'],
  TIDEMARK_SERVER_METRICS_LISTEN: ['metricsListen'],
  TIDEMARK_METRICS_BEARER_TOKEN: ['metricsBearerToken'],
  TIDEMARK_FLEET_METRICS_PER_DATABASE: ['fleetMetricsPerDatabase'],
  TIDEMARK_UPLOAD_MAX_CONCURRENT: ['uploadMaxConcurrent'],
  TIDEMARK_UPLOAD_QUEUE_SECONDS: ['uploadQueueSeconds'],
};

export function loadServerConfig(sources: ConfigSources): Readonly<ServerConfig> {
  return loadConfig(serverConfigSchema, SERVER_ENV, sources, {
    databaseUrl: '--database or TIDEMARK_DATABASE_URL',
    adminKey: '--admin-key or TIDEMARK_ADMIN_KEY',
  });
}
