/**
 * Test fixtures: databases cloned per test, an in-process server on 127.0.0.1:0, registered tenants
 * and agents. Each implements Symbol.asyncDispose: `await using db = await createDatabase('local')`.
 */
import { randomBytes } from 'node:crypto';

import pg from 'pg';
import { inject } from 'vitest';

import { Agent } from '../../src/agent/agent.js';
import { type AgentMetrics, createAgentMetrics } from '../../src/agent/agent-metrics.js';
import { httpRemoteFactory } from '../../src/agent/http-remote.js';
import type { LocalStores } from '../../src/agent/local/local-stores.js';
import type { Remote } from '../../src/agent/remote.js';
import { type RunBudgetFactory, UNLIMITED } from '../../src/agent/run-budget.js';
import { adminRequest } from '../../src/cli/admin-client.js';
import { type StartServerOptions, startServer } from '../../src/server/start-server.js';
import { type AgentConfigInput, loadAgentConfig } from '../../src/shared/config/agent-config.js';
import { loadServerConfig, type ServerConfig } from '../../src/shared/config/server-config.js';
import { silentLogger } from '../../src/shared/logger.js';
import type { RegisterResult } from '../../src/shared/protocol.js';
import { RecordingRemote } from './recording-remote.js';

const SERVER_TEMPLATE = 'tidemark_server_template';

export interface TestDatabase extends AsyncDisposable {
  name: string;
  url: string;
  pool: pg.Pool;
  /** Runs SQL and returns rows. */
  query<R extends pg.QueryResultRow = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<R[]>;
}

function baseUrl(): string {
  return inject('pgBaseUrl');
}

/** `encoding`: a local database in another encoding than the cluster's UTF-8 (e.g. 'LATIN1', locale C). */
export async function createDatabase(kind: 'local' | 'server', options: { encoding?: 'LATIN1' } = {}): Promise<TestDatabase> {
  const name = `tm_${kind}_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: `${baseUrl()}postgres` });
  await admin.connect();
  const create =
    kind === 'server'
      ? `create database ${name} template ${SERVER_TEMPLATE}`
      : options.encoding
        ? `create database ${name} encoding '${options.encoding}' locale 'C' template template0`
        : `create database ${name}`;
  await admin.query(create);
  await admin.end();
  const url = `${baseUrl()}${name}`;
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  pool.on('error', () => {});
  return {
    name,
    url,
    pool,
    query: async <R extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await pool.query<R>(sql, params)).rows,
    async [Symbol.asyncDispose]() {
      await pool.end();
      const a = new pg.Client({ connectionString: `${baseUrl()}postgres` });
      await a.connect();
      await a.query(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

export interface TestServer extends AsyncDisposable {
  url: string;
  adminKey: string;
  db: TestDatabase;
  register(clientId: string, name?: string): Promise<RegisterResult>;
}

export async function startTestServer(overrides: Partial<ServerConfig> = {}, options: StartServerOptions = {}): Promise<TestServer> {
  const db = await createDatabase('server');
  const adminKey = `admin-${randomBytes(12).toString('hex')}`;
  const config = loadServerConfig({
    env: {},
    flags: { databaseUrl: db.url, listen: '127.0.0.1:0', adminKey, logLevel: 'silent', allowSuperuser: true, ...overrides },
  });
  const server = await startServer(config, silentLogger, options);
  return {
    url: server.url,
    adminKey,
    db,
    register: (clientId, name = 'test') => adminRequest<RegisterResult>(server.url, adminKey, 'POST', `/v1/admin/customers/${clientId}/databases`, { name }),
    async [Symbol.asyncDispose]() {
      await server.close();
      await db[Symbol.asyncDispose]();
    },
  };
}

/** application_name of the test agents' connections (to find their backends in pg_stat_activity). */
export const TEST_AGENT_APPLICATION = 'tidemark-test-agent';

/**
 * Terminates the backends of the test agents of `db` (pg_terminate_backend: what the agent sees
 * when its database restarts) and returns how many there were.
 */
export async function terminateAgentBackends(db: TestDatabase): Promise<number> {
  const rows = await db.query<{ n: number }>(
    `select count(pg_terminate_backend(pid))::int as n from pg_stat_activity where datname = current_database() and application_name = $1::text`,
    [TEST_AGENT_APPLICATION],
  );
  return rows[0]?.n ?? 0;
}

export interface TestAgent extends AsyncDisposable {
  agent: Agent;
  metrics: AgentMetrics;
  local: LocalStores;
  pool: pg.Pool;
}

export async function startTestAgent(
  local: TestDatabase,
  server: { url: string },
  reg: RegisterResult,
  overrides: Partial<AgentConfigInput> = {},
  options: { wrapRemote?: (remote: Remote) => Remote; runBudget?: RunBudgetFactory; now?: () => number } = {},
): Promise<TestAgent> {
  const config = loadAgentConfig({
    env: {},
    flags: {
      databaseUrl: local.url,
      serverUrl: server.url,
      clientId: reg.clientId,
      databaseId: reg.databaseId,
      apiKey: reg.apiKey,
      logLevel: 'silent',
      verification: { periodHours: 0 },
      ...overrides,
    },
  });
  const pool = new pg.Pool({ connectionString: local.url, max: 2 * config.concurrency + 2, application_name: TEST_AGENT_APPLICATION });
  pool.on('error', () => {});
  const metrics = createAgentMetrics();
  const http = httpRemoteFactory(config);
  const wrap = options.wrapRemote ?? ((r: Remote) => r);
  const agent = await Agent.create(config, pool, metrics, silentLogger, (agentId) => wrap(http(agentId)), {
    // Never the production default (runBudgetSeconds of wall-clock time): on a busy machine a run
    // would stop early and the test's outcome would depend on its speed. A test wanting a budget
    // gives one in requests (requestBudget).
    budget: options.runBudget ?? (() => UNLIMITED),
    ...(options.now ? { now: options.now } : {}),
  });
  return {
    agent,
    metrics,
    local: agent.local,
    pool,
    async [Symbol.asyncDispose]() {
      await agent.stop();
      await pool.end();
    },
  };
}

/** A test agent whose remote records every call and can fail chosen ones (recording-remote.ts). */
export async function startRecordingAgent(
  local: TestDatabase,
  server: { url: string },
  reg: RegisterResult,
  overrides: Partial<AgentConfigInput> = {},
): Promise<TestAgent & { recording: RecordingRemote }> {
  let recording: RecordingRemote | undefined;
  const agent = await startTestAgent(local, server, reg, overrides, { wrapRemote: (r) => (recording = new RecordingRemote(r)) });
  if (!recording) throw new Error('the agent did not build its remote');
  return Object.assign(agent, { recording });
}

/** Rows of a table as sorted JSON lines (for exact comparisons across databases). */
export async function dumpRows(db: TestDatabase, table: string, options: { where?: string; exclude?: string[] } = {}): Promise<string[]> {
  const exclude = new Set(['tidemark_client_id', 'tidemark_database_id', ...(options.exclude ?? [])]);
  const cols = await db.query<{ attname: string }>(
    `select attname from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped order by attname`,
    [table],
  );
  const list = cols.map((c) => c.attname).filter((c) => !exclude.has(c));
  const select = list.map((c) => `${pg.escapeIdentifier(c)}::text as ${pg.escapeIdentifier(c)}`).join(', ');
  const rows = await db.query(`select ${select} from ${table} ${options.where ? `where ${options.where}` : ''}`);
  return rows.map((r) => JSON.stringify(r)).sort();
}
