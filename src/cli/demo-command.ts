/**
 * `tidemark demo` (what `npm start` runs): everything on one machine with nothing but Node. Boots an
 * embedded PostgreSQL, makes a local database with sample tables and rows, starts the server on a
 * cloud database, registers the local database, tracks its tables, and runs the agent on its
 * schedule while a small writer keeps changing rows. Ctrl-C stops everything.
 */
import { randomBytes } from 'node:crypto';

import type { Command } from 'commander';
import pg from 'pg';

import { Agent } from '../agent/agent.js';
import { createAgentMetrics } from '../agent/agent-metrics.js';
import { PgTableTracking } from '../agent/local/table-tracking.js';
import { loadAgentConfig } from '../shared/config/agent-config.js';
import { loadServerConfig } from '../shared/config/server-config.js';
import { serveMetrics } from '../shared/metrics/metrics-endpoint.js';
import type { RegisterResult } from '../shared/protocol.js';
import { adminRequest } from './admin-client.js';
import { runAgent } from './agent-commands.js';
import { type AgentFlags, addAgentOptions, localPool, logger, remoteFor, untilSignal } from './common.js';
import { freePort } from './free-port.js';

const SAMPLE_SCHEMA = /* sql */ `
  create table customers (
    id bigint primary key,
    name text not null,
    email text,
    country char(2),
    balance numeric(12,2) not null default 0,
    updated_at timestamptz not null default now()
  );
  create table orders (
    id bigserial primary key,
    customer_id bigint not null references customers,
    status text not null,
    items jsonb not null,
    placed_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
  );
  create schema inventory;
  create table inventory.stock (
    warehouse text not null,
    sku text not null,
    quantity int not null,
    tags text[],
    updated_at timestamptz not null default now(),
    primary key (warehouse, sku)
  );
  insert into customers (id, name, email, country, balance)
    select i, 'Customer ' || i, 'c' || i || '@example.com', (array['FR','DE','US','JP'])[1 + i % 4], (i * 7919 % 100000) / 100.0
      from generate_series(1, 1000) i;
  insert into orders (customer_id, status, items)
    select 1 + i % 1000, (array['new','paid','shipped'])[1 + i % 3], jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (i % 50), 'qty', 1 + i % 5))
      from generate_series(1, 5000) i;
  insert into inventory.stock (warehouse, sku, quantity, tags)
    select w, 'SKU-' || s, (s * 31) % 200, array['demo']
      from unnest(array['north','south']) w, generate_series(0, 249) s;`;

/** A few random writes: what an application does between two runs. */
const ACTIVITY = /* sql */ `
  update customers set balance = balance + 1, updated_at = now() where id = 1 + floor(random() * 1000)::int;
  insert into orders (customer_id, status, items) values (1 + floor(random() * 1000)::int, 'new', '[{"sku":"SKU-1","qty":1}]');
  update orders set status = 'paid', updated_at = now() where id = (select min(id) from orders where status = 'new');
  delete from orders where id = (select min(id) from orders where status = 'shipped');
  update inventory.stock set quantity = quantity - 1, updated_at = now() where warehouse = 'north' and sku = 'SKU-' || floor(random() * 250)::int;`;

async function preferredPort(port: number, freePort: () => Promise<number>): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(freePort()));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(port)));
  });
}

interface DemoFlags {
  schedule: string;
  activity: boolean;
  logLevel: string;
}

export function demoCommand(program: Command): void {
  program
    .command('demo')
    .description('run everything on an embedded PostgreSQL with sample data')
    .option('--schedule <cron>', 'agent schedule', '* * * * *')
    .option('--no-activity', 'do not keep changing sample rows')
    .option('--log-level <level>', 'debug, info, warn, error or silent', 'warn')
    .action(runDemo);

  addAgentOptions(
    program
      .command('start')
      .description('what npm start runs: the agent when configured (flags, --config or TIDEMARK_* env), else the embedded demo')
      .option('--schedule <cron>', 'agent schedule')
      .option('--metrics-listen <host:port>', 'agent /metrics address'),
  ).action(async (flags: AgentFlags) => {
    const configured = [flags.config, flags.database, process.env.TIDEMARK_CONFIG, process.env.TIDEMARK_DATABASE_URL].some((v) => v !== undefined && v !== '');
    if (configured) return runAgent(flags);
    return runDemo({ schedule: flags.schedule ?? '* * * * *', activity: true, logLevel: flags.logLevel ?? 'warn' });
  });
}

async function runDemo(flags: DemoFlags): Promise<void> {
  const log = logger(flags.logLevel, 'warn', 1);
  process.stdout.write('starting embedded PostgreSQL...\n');
  // Loaded here: the other commands need neither the server nor the embedded PostgreSQL (start-up time).
  const [{ startServer }, { startEmbeddedCluster }] = await Promise.all([import('../server/start-server.js'), import('./embedded-cluster.js')]);
  const cluster = await startEmbeddedCluster();
  const cleanups: (() => Promise<void>)[] = [() => cluster.stop()];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await c().catch(() => {});
  };
  try {
    await cluster.createDatabase('tidemark_local');
    await cluster.createDatabase('tidemark_cloud');
    const localUrl = cluster.url('tidemark_local');
    const seed = new pg.Client({ connectionString: localUrl });
    await seed.connect();
    await seed.query(SAMPLE_SCHEMA);
    await seed.end();
    // The server runs as a plain role, as in production, so row-level security applies to it.
    const cloud = new pg.Client({ connectionString: cluster.url('tidemark_cloud') });
    await cloud.connect();
    await cloud.query(`create role tidemark_server login password 'tidemark'`);
    await cloud.query(`grant create, connect on database tidemark_cloud to tidemark_server`);
    await cloud.query(`grant usage, create on schema public to tidemark_server`);
    await cloud.end();
    const serverDatabaseUrl = new URL(cluster.url('tidemark_cloud'));
    serverDatabaseUrl.username = 'tidemark_server';

    const adminKey = randomBytes(18).toString('base64url');
    const apiPort = await preferredPort(8080, freePort);
    const server = await startServer(
      loadServerConfig({
        env: {},
        flags: { databaseUrl: serverDatabaseUrl.toString(), listen: `127.0.0.1:${apiPort}`, adminKey, logLevel: flags.logLevel, allowSuperuser: true },
      }),
      log,
    );
    cleanups.push(() => server.close());
    const reg = await adminRequest<RegisterResult>(server.url, adminKey, 'POST', '/v1/admin/customers/acme/databases', { name: 'demo site' });

    const pool = localPool(localUrl, log, 'tidemark-agent', 4);
    cleanups.push(() => pool.end());
    const local = new PgTableTracking(pool);
    for (const t of ['public.customers', 'public.orders', 'inventory.stock']) await local.track(t, { modifiedColumn: 'updated_at' });

    const config = loadAgentConfig({
      env: {},
      flags: {
        databaseUrl: localUrl,
        serverUrl: server.url,
        clientId: reg.clientId,
        databaseId: reg.databaseId,
        apiKey: reg.apiKey,
        schedule: flags.schedule,
        logLevel: flags.logLevel,
      },
    });
    const metrics = createAgentMetrics(['public.customers', 'public.orders', 'inventory.stock']);
    const metricsPort = await preferredPort(9465, freePort);
    const metricsServer = await serveMetrics(metrics.registry, '127.0.0.1', metricsPort);
    cleanups.push(() => metricsServer.close());
    const agent = await Agent.create(config, pool, metrics, log, remoteFor(config));
    cleanups.push(() => agent.stop());

    let writer: NodeJS.Timeout | null = null;
    if (flags.activity) {
      const writerClient = new pg.Client({ connectionString: localUrl });
      writerClient.on('error', () => {}); // the cluster stops under it on Ctrl-C
      await writerClient.connect();
      writer = setInterval(() => void writerClient.query(ACTIVITY).catch(() => {}), 5000);
      cleanups.push(async () => {
        if (writer) clearInterval(writer);
        await writerClient.end();
      });
    }

    const first = await agent.tickOnce();
    // Listen before saying "Press Ctrl-C": a signal that arrives right after the text must stop the
    // demo in order, not kill it.
    const stopped = untilSignal();
    process.stdout.write(
      [
        '',
        'tidemark demo is running',
        `  server API        ${server.url}  (admin key ${adminKey})`,
        `  server metrics    ${server.url}/metrics`,
        `  agent metrics     ${metricsServer.url}`,
        `  local database    ${localUrl}`,
        `  cloud database    ${cluster.url('tidemark_cloud')}`,
        `  client acme, database ${reg.databaseId}`,
        `  first sync        ${first?.tables.map((t) => `${t.table} ${t.rowsUploaded} rows${t.converged ? '' : ' (not converged)'}`).join(', ')}`,
        `  agent schedule    ${flags.schedule}${flags.activity ? '; sample rows change every 5 s' : ''}`,
        '',
        'Try:',
        `  curl -s -H 'authorization: Bearer ${adminKey}' ${server.url}/v1/admin/tenants`,
        `  node dist/cli/main.js status --database '${localUrl}' --server ${server.url} --client acme --database-id ${reg.databaseId} --api-key ${reg.apiKey}`,
        '',
        'Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    );
    agent.start();
    await stopped;
    process.stdout.write('stopping...\n');
  } finally {
    await cleanup();
  }
}
