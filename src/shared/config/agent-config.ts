import { z } from 'zod';

import { CLIENT_ID_PATTERN, UUID_PATTERN } from '../protocol.js';
import { type ConfigSources, type EnvMap, loadConfig } from './load-config.js';

const MiB = 1024 * 1024;

/** Defaults, named. Units are in the names. */
export const AGENT_DEFAULTS = {
  schedule: '* * * * *',
  concurrency: 4,
  runBudgetSeconds: 50,
  targetBatchSeconds: 2,
  minBatchRows: 1,
  maxBatchRows: 200_000,
  minBatchBytes: 16 * 1024,
  maxBatchBytes: 8 * MiB,
  initialBatchBytes: 4 * MiB,
  batchTimeoutSeconds: 60,
  verificationPeriodHours: 24,
  quarantineRetryBaseSeconds: 60,
  quarantineRetryMaxSeconds: 3600,
  metricsListen: '127.0.0.1:9465',
} as const;

const intFrom = (min: number) => z.coerce.number().int().min(min);

export const agentConfigSchema = z
  .object({
    /** Local database connection string (the source of truth). */
    databaseUrl: z.string().min(1),
    /** Base URL of the tidemark server, e.g. https://sync.example.com. */
    serverUrl: z.url(),
    /** Client (tenant) id given at registration. */
    clientId: z.string().regex(CLIENT_ID_PATTERN, 'lower-case letters, digits, - and _'),
    /** Database id given at registration. */
    databaseId: z.string().regex(UUID_PATTERN, 'a UUID'),
    /** API key given at registration (write `{ env: TIDEMARK_API_KEY }` in files). */
    apiKey: z.string().min(1),
    /** Tables to sync (schema.table); default: every tracked table. */
    tables: z.array(z.string().min(1)).optional(),
    /** Cron expression of runs; default every minute. */
    schedule: z.string().default(AGENT_DEFAULTS.schedule),
    /** Tables synced at once. */
    concurrency: intFrom(1).default(AGENT_DEFAULTS.concurrency),
    /** Seconds a table's run may take before it yields to the next tick. */
    runBudgetSeconds: z.coerce.number().positive().default(AGENT_DEFAULTS.runBudgetSeconds),
    /** HOST:PORT of the agent's /metrics (served by `tidemark agent`), or empty for none. */
    metricsListen: z.string().default(AGENT_DEFAULTS.metricsListen),
    /** Compress uploads with gzip (worth it on slow links, not on fast ones). */
    gzip: z.coerce.boolean().default(false),
    logLevel: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
    batch: z
      .object({
        /** Duration one upload request should take, in seconds. */
        targetSeconds: z.coerce.number().positive().default(AGENT_DEFAULTS.targetBatchSeconds),
        minRows: intFrom(1).default(AGENT_DEFAULTS.minBatchRows),
        maxRows: intFrom(1).default(AGENT_DEFAULTS.maxBatchRows),
        minBytes: intFrom(1024).default(AGENT_DEFAULTS.minBatchBytes),
        maxBytes: intFrom(1024).default(AGENT_DEFAULTS.maxBatchBytes),
        /** Size of the first batch when there is no history. */
        initialBytes: intFrom(1024).default(AGENT_DEFAULTS.initialBatchBytes),
        /** A request slower than this counts as failed (and shrinks the batch). */
        timeoutSeconds: z.coerce.number().positive().default(AGENT_DEFAULTS.batchTimeoutSeconds),
      })
      .prefault({}),
    verification: z
      .object({
        /** A rolling verification covers the whole table once per this many hours. 0 disables it. */
        periodHours: z.coerce.number().min(0).default(AGENT_DEFAULTS.verificationPeriodHours),
      })
      .prefault({}),
    quarantine: z
      .object({
        retryBaseSeconds: z.coerce.number().positive().default(AGENT_DEFAULTS.quarantineRetryBaseSeconds),
        retryMaxSeconds: z.coerce.number().positive().default(AGENT_DEFAULTS.quarantineRetryMaxSeconds),
      })
      .prefault({}),
  })
  .refine((c) => c.batch.minRows <= c.batch.maxRows && c.batch.minBytes <= c.batch.maxBytes, {
    message: 'batch min must not exceed max',
    path: ['batch'],
  });

export type AgentConfig = z.output<typeof agentConfigSchema>;
export type AgentConfigInput = z.input<typeof agentConfigSchema>;

export const AGENT_ENV: EnvMap = {
  TIDEMARK_DATABASE_URL: ['databaseUrl'],
  TIDEMARK_SERVER_URL: ['serverUrl'],
  TIDEMARK_CLIENT_ID: ['clientId'],
  TIDEMARK_DATABASE_ID: ['databaseId'],
  TIDEMARK_API_KEY: ['apiKey'],
  TIDEMARK_SCHEDULE: ['schedule'],
  TIDEMARK_CONCURRENCY: ['concurrency'],
  TIDEMARK_METRICS_LISTEN: ['metricsListen'],
  TIDEMARK_LOG_LEVEL: ['logLevel'],
};

const AGENT_HINTS = {
  databaseUrl: '--database or TIDEMARK_DATABASE_URL',
  serverUrl: '--server or TIDEMARK_SERVER_URL',
  clientId: '--client or TIDEMARK_CLIENT_ID',
  databaseId: '--database-id or TIDEMARK_DATABASE_ID',
  apiKey: '--api-key or TIDEMARK_API_KEY',
};

export function loadAgentConfig(sources: ConfigSources): Readonly<AgentConfig> {
  return loadConfig(agentConfigSchema, AGENT_ENV, sources, AGENT_HINTS);
}
