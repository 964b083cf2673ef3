import cron from 'node-cron';
import { z } from 'zod';

import { connectionFromPgEnv } from '../connection-string.js';
import { CLIENT_ID_PATTERN, formatTableName, parseTableName, UUID_PATTERN } from '../protocol.js';
import { type ConfigSources, type EnvMap, loadConfig, parseListen } from './load-config.js';
import { connectionString, secretString } from './redact.js';
import { serverConfigSchema } from './server-config.js';

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
  firstSyncInFlight: 2,
  verificationPeriodHours: 24,
  quarantineRetryBaseSeconds: 60,
  quarantineRetryMaxSeconds: 3600,
  metricsListen: '127.0.0.1:9465',
} as const;

const intFrom = (min: number) => z.coerce.number().int().min(min);

function problemOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** A cron expression node-cron accepts (5 fields, or 6 with seconds): what the agent schedules. */
export const cronSchema = z.string().refine((s) => cron.validate(s), {
  error: (issue) => `${JSON.stringify(issue.input)} is not a cron expression (5 fields, or 6 with seconds first), e.g. "*/5 * * * *"`,
});

/** A client id, lower-cased (ids are case-insensitive to people, lower case on the wire). */
export const clientIdConfigSchema = z.string().trim().toLowerCase().regex(CLIENT_ID_PATTERN, 'lower-case letters, digits, - and _');

/** A database id: a UUID in any case, kept in its canonical lower-case form. */
export const databaseIdConfigSchema = z.string().trim().toLowerCase().regex(UUID_PATTERN, 'a UUID');

/** A table name (`schema.table`, quoted where needed), kept in its canonical text form. */
export const tableNameConfigSchema = z.string().transform((text, ctx) => {
  try {
    return formatTableName(parseTableName(text));
  } catch (e) {
    ctx.addIssue({ code: 'custom', message: (e as Error).message });
    return z.NEVER;
  }
});

/** HOST:PORT, or empty for none. */
export const listenConfigSchema = z.string().superRefine((s, ctx) => {
  const problem = s === '' ? null : problemOf(() => parseListen(s));
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** TLS towards the server (README, Networks). */
export const tlsConfigSchema = z
  .object({
    /** PEM file of the CA(s) the server's certificate is checked against (a private CA); default: the system's CAs. */
    caFile: z.string().min(1).optional(),
    /** PEM file of the agent's client certificate, for a server (or proxy) that asks for one (mutual TLS); with keyFile. */
    certFile: z.string().min(1).optional(),
    /** PEM file of the client certificate's private key; with certFile. */
    keyFile: z.string().min(1).optional(),
  })
  .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), { message: 'certFile and keyFile go together', path: ['certFile'] })
  .prefault({});

export const agentConfigSchema = z
  .object({
    /**
     * Local database (the source of truth): a postgresql:// URL or a keyword/value string
     * (`host=localhost dbname=erp`); parts left out come from PG* variables, as for psql.
     * Default: the database the PG* variables name, if any.
     */
    databaseUrl: connectionString(),
    /** Base URL of the tidemark server, e.g. https://sync.example.com. */
    serverUrl: z.url(),
    /** Client (tenant) id given at registration. */
    clientId: clientIdConfigSchema,
    /** Database id given at registration (a UUID; kept in lower case). */
    databaseId: databaseIdConfigSchema,
    /** API key given at registration (write `{ env: TIDEMARK_API_KEY }` in files). A secret: never printed. */
    apiKey: secretString(),
    /** Tables to sync (schema.table); default: every tracked table. */
    tables: z.array(tableNameConfigSchema).optional(),
    /** Cron expression of runs (node-cron: 5 fields, or 6 with seconds); default every minute. */
    schedule: cronSchema.default(AGENT_DEFAULTS.schedule),
    /** Tables synced at once. */
    concurrency: intFrom(1).default(AGENT_DEFAULTS.concurrency),
    /** Seconds a table's run may take before it yields to the next tick. */
    runBudgetSeconds: z.coerce.number().positive().default(AGENT_DEFAULTS.runBudgetSeconds),
    /** HOST:PORT of the agent's /metrics (served by `tidemark agent`), or empty for none. */
    metricsListen: listenConfigSchema.default(AGENT_DEFAULTS.metricsListen),
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
        /** Upload requests in flight at once during a first sync (into an empty replica); loaded in parallel by the server. */
        firstSyncInFlight: intFrom(1).max(8).default(AGENT_DEFAULTS.firstSyncInFlight),
      })
      .prefault({}),
    verification: z
      .object({
        /** A rolling verification covers the whole table once per this many hours. 0 disables it. */
        periodHours: z.coerce.number().min(0).default(AGENT_DEFAULTS.verificationPeriodHours),
      })
      .prefault({}),
    tls: tlsConfigSchema,
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

/** Defaults taken from the environment: the database the PG* variables name, as psql would use it. */
export function pgEnvDefaults(env: ConfigSources['env']): Record<string, unknown> {
  const databaseUrl = connectionFromPgEnv(env);
  return databaseUrl === undefined ? {} : { databaseUrl };
}

export function loadAgentConfig(sources: ConfigSources): Readonly<AgentConfig> {
  // serverConfigSchema: one file may also hold the server's keys (adminKey for `register`).
  return loadConfig(agentConfigSchema, AGENT_ENV, sources, AGENT_HINTS, { alsoInFiles: [serverConfigSchema], defaults: pgEnvDefaults(sources.env) });
}
