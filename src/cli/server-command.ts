import type { Command } from 'commander';
import { loadServerConfig } from '../shared/config/server-config.js';
import { logger, untilSignal } from './common.js';

export function serverCommand(program: Command): void {
  program
    .command('server')
    .description('run the multi-tenant REST server over the cloud PostgreSQL database')
    .option('--config <file>', 'YAML config file (see config/server.example.yaml)')
    .option('--database <url>', 'cloud database URL (env TIDEMARK_DATABASE_URL)')
    .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:8080; env TIDEMARK_LISTEN)')
    .option('--admin-key <key>', 'admin API key, 16+ characters (env TIDEMARK_ADMIN_KEY)')
    .option('--max-body-bytes <n>', 'largest upload body accepted (default 64 MiB)')
    .option('--log-level <level>', 'debug, info, warn, error or silent')
    .option('--allow-superuser', 'start even as a superuser or BYPASSRLS role (row-level security then does not apply; env TIDEMARK_ALLOW_SUPERUSER=1)')
    .option('--metrics-listen <host:port>', 'serve /metrics on its own address instead of the API one (env TIDEMARK_SERVER_METRICS_LISTEN)')
    .action(
      async (flags: {
        config?: string;
        database?: string;
        listen?: string;
        adminKey?: string;
        maxBodyBytes?: string;
        logLevel?: string;
        allowSuperuser?: boolean;
        metricsListen?: string;
      }) => {
        const config = loadServerConfig({
          file: flags.config ?? process.env.TIDEMARK_CONFIG,
          env: process.env,
          flags: {
            databaseUrl: flags.database,
            listen: flags.listen,
            adminKey: flags.adminKey,
            maxBodyBytes: flags.maxBodyBytes,
            logLevel: flags.logLevel,
            allowSuperuser: flags.allowSuperuser,
            metricsListen: flags.metricsListen,
          },
        });
        const log = logger(config.logLevel, 'info', 1);
        // Loaded here, not at the top: the agent's commands need none of the server (start-up time).
        const { startServer } = await import('../server/start-server.js');
        const server = await startServer(config, log);
        const signal = await untilSignal();
        log.info({ signal }, 'shutting down');
        await server.close();
      },
    );
}
