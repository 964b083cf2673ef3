import type { AddressInfo } from 'node:net';
import { parseListen } from '../shared/config/load-config.js';
import type { ServerConfig } from '../shared/config/server-config.js';
import type { Logger } from '../shared/logger.js';
import { classifyPgError, createPool } from '../shared/pg.js';
import { buildApp } from './app.js';
import { AuthThrottle } from './auth-throttle.js';
import { migrate } from './migrations.js';
import { PgTenantStore } from './pg-tenant-store.js';
import { createServerMetrics } from './server-metrics.js';

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  close(): Promise<void>;
}

/** Connects, migrates, and listens. */
/** Seams for tests: the clock of the failed-authentication throttle (ms since the epoch; default Date.now). */
export interface StartServerOptions {
  now?: () => number;
}

export async function startServer(config: Readonly<ServerConfig>, log: Logger, options: StartServerOptions = {}): Promise<RunningServer> {
  const pool = createPool({ connectionString: config.databaseUrl, max: config.poolMax, applicationName: 'tidemark-server' }, log);
  // A checked-out client whose session dies (restart, failover, pg_terminate_backend) emits 'error';
  // the pool listens only to idle ones. Its query fails too and the request answers 503.
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ err: classifyPgError(err).sqlstate ?? err.message }, 'database connection lost'));
  });
  try {
    await migrate(pool);
    const { rows } = await pool.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
      /* sql */ `select rolsuper, rolbypassrls from pg_roles where rolname = current_user`,
    );
    if (rows[0]?.rolsuper || rows[0]?.rolbypassrls)
      log.warn({}, 'the server connects as a superuser or BYPASSRLS role: row-level security is not enforced for it; use a plain role in production');
    const store = new PgTenantStore(
      pool,
      { maxRows: config.manifestMaxRows, maxBuckets: config.manifestMaxBuckets },
      { admittedTypes: new Set(config.admittedTypes), maxTables: config.tenantMaxTables, maxColumns: config.tenantMaxColumns },
    );
    const metrics = createServerMetrics({ activeTenants: () => store.countTenants(), pool: () => store.poolStats() });
    const app = await buildApp({
      store,
      metrics,
      authThrottle: new AuthThrottle({ limit: config.authFailureLimit, windowSeconds: config.authFailureWindowSeconds, now: options.now ?? Date.now }),
      adminKey: config.adminKey,
      maxBodyBytes: config.maxBodyBytes,
      maxConcurrentRequests: config.tenantMaxConcurrentRequests,
      leaseSeconds: config.leaseSeconds,
      log,
      ready: async () => {
        await pool.query('select 1');
      },
    });
    const { host, port } = parseListen(config.listen);
    await app.listen({ host, port });
    const addr = app.server.address() as AddressInfo;
    const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const url = `http://${shownHost}:${addr.port}`;
    log.info({ url }, 'server listening');
    return {
      url,
      close: async () => {
        await app.close();
        await pool.end();
      },
    };
  } catch (e) {
    await pool.end();
    throw e;
  }
}
