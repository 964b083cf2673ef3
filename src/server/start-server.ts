import type { AddressInfo } from 'node:net';

import type { FastifyInstance } from 'fastify';
import { parseListen } from '../shared/config/load-config.js';
import { SERVER_DEFAULTS, type ServerConfig, UPLOAD_POOL_HEADROOM } from '../shared/config/server-config.js';
import { ConfigError } from '../shared/errors.js';
import type { Logger } from '../shared/logger.js';
import { classifyPgError, createPool } from '../shared/pg.js';
import { buildApp } from './app.js';
import { AuthThrottle } from './auth-throttle.js';
import { PgBundleStore } from './bundle-store.js';
import { PgFleetStore } from './fleet-store.js';
import { KeyCache } from './key-cache.js';
import { PgKeyStore } from './key-store.js';
import { buildMetricsApp } from './metrics-route.js';
import { migrate } from './migrations.js';
import { PgTenantStore } from './pg-tenant-store.js';
import { upgradeTenantWalls } from './replica-ddl.js';
import { createServerMetrics } from './server-metrics.js';
import { SMALL_BODY_BYTES } from './small-batch.js';
import type { StatementCounter } from './statement-counter.js';
import { UploadAdmission } from './upload-admission.js';

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  /** URL of /metrics (on its own listener when metricsListen is set). */
  metricsUrl: string;
  close(): Promise<void>;
}

function urlOf(addr: AddressInfo): string {
  return `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
}

/** Seams for tests and benchmarks. */
export interface StartServerOptions {
  /** The clock of the failed-authentication throttle and the lease memory (ms since the epoch; default Date.now). */
  now?: () => number;
  /** Counts every statement the pool sends (statement-counter.ts). */
  statements?: StatementCounter;
  /** Requests that may wait for a database connection before new ones are shed (default: SHED_WAITING_PER_CONNECTION x poolMax). */
  poolWaitingLimit?: number;
  /** The uploads' admission control (default: from uploadMaxConcurrent and uploadQueueSeconds). */
  uploadAdmission?: UploadAdmission;
}

/**
 * Load shedding: requests waiting for a connection, per pool connection, beyond which tenant
 * requests answer 503 with Retry-After. An idle run holds a connection for a millisecond or two, so a
 * short queue drains fast; a long one only turns into connect timeouts (500s, before).
 */
const SHED_WAITING_PER_CONNECTION = 2;
/**
 * Uploads smaller than this load without waiting for a slot (upload-admission.ts): a run's few
 * changed rows, which the server parses without a staging table (small-batch.ts).
 */
const UPLOAD_QUEUE_MIN_BYTES = SMALL_BODY_BYTES + 1;
/** What a shed request's Retry-After says: agents come back a little later, spread by their jitter. */
const SHED_RETRY_AFTER_SECONDS = 2;

/**
 * pg-pool's connect timeout: its error has no code (pg-pool/index.js, 'timeout exceeded when trying
 * to connect'), so its text is the only mark; checked here, in the one place that owns the pool.
 */
function isPoolTimeout(err: unknown): boolean {
  return err instanceof Error && (err as { code?: unknown }).code === undefined && err.message === 'timeout exceeded when trying to connect';
}

/** Connects, migrates, refuses a role that bypasses row-level security (unless allowed), and listens. */
export async function startServer(config: Readonly<ServerConfig>, log: Logger, options: StartServerOptions = {}): Promise<RunningServer> {
  const pool = createPool({ connectionString: config.databaseUrl, max: config.poolMax, applicationName: 'tidemark-server' }, log);
  // A checked-out client whose session dies (restart, failover, pg_terminate_backend) emits 'error';
  // the pool listens only to idle ones. Its query fails too and the request answers 503.
  pool.on('connect', (client) => {
    options.statements?.attach(client);
    client.on('error', (err) => log.warn({ err: classifyPgError(err).sqlstate ?? err.message }, 'database connection lost'));
  });
  try {
    await migrate(pool);
    const { rows } = await pool.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
      /* sql */ `select rolsuper, rolbypassrls from pg_roles where rolname = current_user`,
    );
    if (rows[0]?.rolsuper || rows[0]?.rolbypassrls) {
      if (!config.allowSuperuser)
        throw new ConfigError(
          'the server connects as a superuser or BYPASSRLS role, for which row-level security (the second tenant wall) does not apply; connect as a plain role, or pass --allow-superuser (TIDEMARK_ALLOW_SUPERUSER=1) for tests and demos',
        );
      log.warn({}, 'the server connects as a superuser or BYPASSRLS role (allowed by allowSuperuser): row-level security is not enforced for it');
    }
    await upgradeTenantWalls(pool, (table, reason) =>
      log.warn({ table, reason }, 'the tenant wall of this replica table keeps its former (as tight, slower) form until a later start'),
    );
    const keyCache = new KeyCache(config.keyCacheSeconds * 1000, options.now);
    const store = new PgTenantStore(
      pool,
      { maxRows: config.manifestMaxRows, maxBuckets: config.manifestMaxBuckets },
      {
        admittedTypes: new Set(config.admittedTypes),
        maxTables: config.tenantMaxTables,
        maxColumns: config.tenantMaxColumns,
        admission: config.replicaAdmission,
        droppedColumns: config.replicaDroppedColumns,
      },
      options.now,
      keyCache,
    );
    const waitingLimit = options.poolWaitingLimit ?? SHED_WAITING_PER_CONNECTION * config.poolMax;
    const uploads =
      options.uploadAdmission ??
      new UploadAdmission({
        maxConcurrent: config.uploadMaxConcurrent ?? Math.max(1, Math.min(SERVER_DEFAULTS.uploadMaxConcurrent, config.poolMax - UPLOAD_POOL_HEADROOM)),
        maxWaitMs: config.uploadQueueSeconds * 1000,
        retryAfterSeconds: SHED_RETRY_AFTER_SECONDS,
        minBytes: UPLOAD_QUEUE_MIN_BYTES,
      });
    const fleet = { store: new PgFleetStore(pool, config.leaseSeconds), silentAfterSeconds: config.fleetSilentAfterSeconds, now: options.now ?? Date.now };
    const metrics = createServerMetrics({
      activeTenants: () => store.countTenants(),
      pool: () => store.poolStats(),
      fleet: { ...fleet, perDatabase: config.fleetMetricsPerDatabase, refreshSeconds: config.fleetMetricsRefreshSeconds },
    });
    const app = await buildApp({
      store,
      metrics,
      authThrottle: new AuthThrottle({ limit: config.authFailureLimit, windowSeconds: config.authFailureWindowSeconds, now: options.now ?? Date.now }),
      adminKey: config.adminKey,
      maxBodyBytes: config.maxBodyBytes,
      maxConcurrentRequests: config.tenantMaxConcurrentRequests,
      leaseSeconds: config.leaseSeconds,
      log,
      metricsHere: config.metricsListen === undefined,
      metricsBearerToken: config.metricsBearerToken,
      bundles: new PgBundleStore(pool),
      fleet,
      keys: new PgKeyStore(pool, keyCache),
      overloaded: () => (pool.waitingCount > waitingLimit ? SHED_RETRY_AFTER_SECONDS : null),
      poolTimedOut: isPoolTimeout,
      uploads,
      ready: async () => {
        await pool.query('select 1');
      },
    });
    const { host, port } = parseListen(config.listen);
    await app.listen({ host, port });
    const url = urlOf(app.server.address() as AddressInfo);
    let metricsUrl = `${url}/metrics`;
    let metricsApp: FastifyInstance | undefined;
    if (config.metricsListen !== undefined) {
      metricsApp = buildMetricsApp(metrics.registry, config.metricsBearerToken);
      const m = parseListen(config.metricsListen);
      await metricsApp.listen({ host: m.host, port: m.port });
      metricsUrl = `${urlOf(metricsApp.server.address() as AddressInfo)}/metrics`;
    }
    log.info({ url, metricsUrl }, 'server listening');
    return {
      url,
      metricsUrl,
      close: async () => {
        await metricsApp?.close();
        await app.close();
        await pool.end();
      },
    };
  } catch (e) {
    await pool.end();
    throw e;
  }
}
