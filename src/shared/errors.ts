/**
 * Every error tidemark raises carries one of these codes. The JSDoc of each says what an operator
 * should do; the README lists them too.
 */
export const ErrorCode = {
  /** Configuration is missing or invalid. Fix the listed keys (file, TIDEMARK_* env or flags). */
  CONFIG_INVALID: 'TM_CONFIG_INVALID',
  /** The local table does not exist. Check the name (schema.table) and the search_path. */
  SOURCE_TABLE_MISSING: 'TM_SOURCE_TABLE_MISSING',
  /** The local table has no primary key and no key columns were given. Add a primary key, or name unique not-null columns with `tidemark track TABLE --key-columns a,b`. */
  SOURCE_TABLE_NO_KEY: 'TM_SOURCE_TABLE_NO_KEY',
  /** The table is not tracked yet. Run `tidemark track TABLE` against the local database. */
  SOURCE_TABLE_NOT_TRACKED: 'TM_SOURCE_TABLE_NOT_TRACKED',
  /** A table name could not be parsed. Use schema.table, quoting parts that need it ("My Schema"."a.b"). */
  TABLE_NAME_INVALID: 'TM_TABLE_NAME_INVALID',
  /** A column type cannot be replicated (only plain type names are accepted). Exclude the table or change the type. */
  COLUMN_TYPE_UNSUPPORTED: 'TM_COLUMN_TYPE_UNSUPPORTED',
  /** Authentication failed: a missing or unknown API key (or admin key on admin routes). Use the key printed by `tidemark register`, or the server's admin key. */
  AUTH_UNAUTHENTICATED: 'TM_AUTH_UNAUTHENTICATED',
  /** The key is valid but bound to another client or database. Check --client and --database-id. */
  AUTH_FORBIDDEN: 'TM_AUTH_FORBIDDEN',
  /** The table is not declared for this database on the server. The agent declares it on its next run. */
  REPLICA_TABLE_UNKNOWN: 'TM_REPLICA_TABLE_UNKNOWN',
  /**
   * This database's declaration of a table cannot join the shared replica (a narrowed or incompatible
   * column type, a changed key): that table stops for this database only. The message names the
   * columns and what to do (restore the former type or key locally, or ask the server's admin).
   */
  REPLICA_SCHEMA_MISMATCH: 'TM_REPLICA_SCHEMA_MISMATCH',
  /** Another agent holds this database's lease. Stop the other agent, or wait for the lease to expire. */
  LEASE_HELD: 'TM_LEASE_HELD',
  /** The server rejected the rows (bad COPY data or a constraint). The rows are quarantined; see `tidemark status`. */
  UPLOAD_REJECTED: 'TM_UPLOAD_REJECTED',
  /** An insert-only batch met rows that already exist (a re-sent batch). The agent re-sends it as an upsert by itself. */
  UPLOAD_CONFLICT: 'TM_UPLOAD_CONFLICT',
  /** The request body is larger than the server accepts. The agent shrinks its batches by itself. */
  PAYLOAD_TOO_LARGE: 'TM_PAYLOAD_TOO_LARGE',
  /** The request is malformed or beyond a protocol limit; the message names the field and the limit. From a tidemark agent this is a bug; report it. */
  REQUEST_INVALID: 'TM_REQUEST_INVALID',
  /** Something was not found (client, database, route). Check the identifiers. */
  NOT_FOUND: 'TM_NOT_FOUND',
  /** The server could not be reached or answered 5xx. The run is retried on the next tick. */
  SERVER_UNAVAILABLE: 'TM_SERVER_UNAVAILABLE',
  /** A request timed out. Retried with a smaller batch; check the link if it persists. */
  TIMEOUT: 'TM_TIMEOUT',
  /** The database refused the credentials. Fix the connection string or password; retried after a long backoff (minutes), so failed logins do not pile up. */
  DB_AUTH_FAILED: 'TM_DB_AUTH_FAILED',
  /** The database is unreachable or restarting. Retried after a short backoff (seconds). */
  DB_UNAVAILABLE: 'TM_DB_UNAVAILABLE',
  /** A transient database conflict (serialization failure, deadlock). Retried after a short backoff (seconds). */
  DB_CONFLICT: 'TM_DB_CONFLICT',
  /** An unexpected database error. Read the message; report it if it is not about your data. */
  DB_ERROR: 'TM_DB_ERROR',
  /** The table did not converge within the run's time budget. It continues on the next run. */
  RUN_INCOMPLETE: 'TM_RUN_INCOMPLETE',
  /** An internal invariant was broken: a bug. Report it with the log line. */
  INTERNAL: 'TM_INTERNAL',
  /**
   * The table may not be replicated on this server (not admitted by the admin's catalog, or its
   * name is taken on the server). Ask the server's admin to admit it (tidemark admit-table).
   */
  REPLICA_NOT_ADMITTED: 'TM_REPLICA_NOT_ADMITTED',
  /** The server is over capacity (its database connections are all busy and enough requests wait for one) and answered 503 with Retry-After. The agent waits that long and tries again, without cutting its batches; if it persists, add server processes or database connections (docs/scaling.md). */
  SERVER_OVERLOADED: 'TM_SERVER_OVERLOADED',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class TidemarkError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Invalid configuration: the process exits 78 (EX_CONFIG). */
export class ConfigError extends TidemarkError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.CONFIG_INVALID, message, options);
  }
}

/** A request the peer must not repeat as is (4xx). `status` is the HTTP status. */
export class ProtocolError extends TidemarkError {
  constructor(
    code: ErrorCode,
    readonly status: number,
    message: string,
    options?: ErrorOptions,
  ) {
    super(code, message, options);
  }
}

/** Worth retrying later: network, 5xx, transient database conditions. */
export class RetryableError extends TidemarkError {}

/** A broken invariant: a bug in tidemark. */
export class InvariantError extends TidemarkError {
  constructor(message: string, options?: ErrorOptions) {
    super(ErrorCode.INTERNAL, message, options);
  }
}

export function toError(e: unknown): Error {
  if (e instanceof Error) return e;
  return new Error(typeof e === 'string' ? e : JSON.stringify(e));
}
