import type { AddressInfo } from 'node:net';
import { parseListen } from '../shared/config/load-config.js';
import type { ServerConfig } from '../shared/config/server-config.js';
import type { Logger } from '../shared/logger.js';
import { createPool } from '../shared/pg.js';
import { buildApp } from './app.js';
import { PgBundleStore } from './bundle-store.js';
import { migrate } from './migrations.js';
import { PgTenantStore } from './pg-tenant-store.js';
import { createServerMetrics } from './server-metrics.js';

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  close(): Promise<void>;
}

/** Connects, migrates, and listens. */
export async function startServer(config: Readonly<ServerConfig>, log: Logger): Promise<RunningServer> {
  const pool = createPool({ connectionString: config.databaseUrl, max: config.poolMax, applicationName: 'tidemark-server' }, log);
  try {
    await migrate(pool);
    const { rows } = await pool.query<{ rolsuper: boolean; rolbypassrls: boolean }>(
      /* sql */ `select rolsuper, rolbypassrls from pg_roles where rolname = current_user`,
    );
    if (rows[0]?.rolsuper || rows[0]?.rolbypassrls)
      log.warn({}, 'the server connects as a superuser or BYPASSRLS role: row-level security is not enforced for it; use a plain role in production');
    const store = new PgTenantStore(pool);
    const metrics = createServerMetrics({ activeTenants: () => store.countTenants(), pool: () => store.poolStats() });
    const app = await buildApp({
      store,
      metrics,
      adminKey: config.adminKey,
      maxBodyBytes: config.maxBodyBytes,
      leaseSeconds: config.leaseSeconds,
      log,
      bundles: new PgBundleStore(pool),
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
