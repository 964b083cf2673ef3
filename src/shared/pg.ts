import pg from 'pg';

import { redactConnectionString, toConnectionUrl } from './connection-string.js';
import { ErrorCode, RetryableError, TidemarkError, toError } from './errors.js';
import type { Logger } from './logger.js';
import { typeNameProblem } from './protocol/column-type.js';

/** A SQL identifier, quoted. Only `ident` and `qualified` make one. */
export type SqlIdent = string & { readonly __brand: 'SqlIdent' };
/** A column type name checked against a whitelist and resolved by the database. Only `sqlType` makes one. */
export type SqlType = string & { readonly __brand: 'SqlType' };

export function ident(name: string): SqlIdent {
  return pg.escapeIdentifier(name) as SqlIdent;
}

export function qualified(schema: string, name: string): SqlIdent {
  return `${pg.escapeIdentifier(schema)}.${pg.escapeIdentifier(name)}` as SqlIdent;
}

export function identList(names: readonly string[]): SqlIdent {
  return names.map((n) => ident(n)).join(', ') as SqlIdent;
}

/**
 * Type names as `format_type()` prints them: `integer`, `character varying(20)`,
 * `timestamp(3) with time zone`, `numeric(10,2)[]`, optionally schema-qualified (`public.citext`).
 * Quoted names, clauses (`default`, `generated` …) and out-of-range type modifiers are refused
 * (`typeNameProblem`): nothing else can reach DDL, so a hostile agent cannot inject SQL.
 */
export function isSafeTypeName(name: string): boolean {
  return typeNameProblem(name) === null;
}

/** Brands a type name; callers must also have had the database resolve it (`to_regtype`). */
export function sqlType(name: string): SqlType {
  if (!isSafeTypeName(name)) throw new TidemarkError(ErrorCode.COLUMN_TYPE_UNSUPPORTED, `unsupported column type ${JSON.stringify(name)}`);
  return name as SqlType;
}

/**
 * Session settings under which both sides print rows identically (docs/design.md, Manifests).
 * Applied with `set local` at the start of every transaction that reads or writes row data.
 */
export const PINNED_SETTINGS_SQL = /* sql */ `
  select set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true),
         set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '3', true),
         set_config('bytea_output', 'hex', true)`;

export interface PoolOptions {
  connectionString: string;
  max?: number;
  applicationName: string;
}

export function createPool(options: PoolOptions, log: Logger): pg.Pool {
  const pool = new pg.Pool({
    // libpq's keyword/value form too; parts left out come from PG* variables (pg reads them).
    connectionString: toConnectionUrl(options.connectionString),
    max: options.max ?? 10,
    application_name: options.applicationName,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
  });
  // An idle client's connection can die (server restart); without this listener the process would crash.
  pool.on('error', (err) => log.warn({ err: classifyPgError(err).code }, 'idle database connection failed'));
  return pool;
}

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  options: { isolation?: IsolationLevel; readOnly?: boolean } = {},
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query(`begin isolation level ${options.isolation ?? 'read committed'}${options.readOnly ? ' read only' : ''}`);
    try {
      const result = await fn(client);
      await client.query('commit');
      return result;
    } catch (e) {
      try {
        await client.query('rollback');
      } catch {
        broken = true; // the connection is unusable; make the pool discard it
      }
      throw e;
    }
  } finally {
    client.release(broken);
  }
}

interface PgErrorLike {
  code?: unknown;
  message?: unknown;
}

/**
 * Runs one statement (DDL, typically) in its own transaction, waiting at most `lockTimeout` (a
 * PostgreSQL interval, e.g. '1s') for its locks: an upgrade at start must not queue readers behind
 * it. False when a lock was not granted in time (nothing changed: the caller tries again later).
 */
export async function tryUnderLockTimeout(pool: pg.Pool, lockTimeout: string, sql: string): Promise<boolean> {
  try {
    await withTransaction(pool, async (client) => {
      await client.query(/* sql */ `select set_config('lock_timeout', $1::text, true)`, [lockTimeout]);
      await client.query(sql);
    });
    return true;
  } catch (e) {
    if (sqlstateOf(e) === SqlState.LOCK_NOT_AVAILABLE) return false;
    throw e;
  }
}

/** SQLSTATEs that tidemark acts on by name (classified in PG_ERROR_CLASSES below). */
export const SqlState = {
  UNIQUE_VIOLATION: '23505',
  UNDEFINED_FUNCTION: '42883',
  UNDEFINED_TABLE: '42P01',
  SERIALIZATION_FAILURE: '40001',
  DEADLOCK_DETECTED: '40P01',
  INVALID_PASSWORD: '28P01',
  INVALID_AUTHORIZATION: '28000',
  CARDINALITY_VIOLATION: '21000',
  PROGRAM_LIMIT_EXCEEDED: '54000',
  ADMIN_SHUTDOWN: '57P01',
  CRASH_SHUTDOWN: '57P02',
  CANNOT_CONNECT_NOW: '57P03',
  LOCK_NOT_AVAILABLE: '55P03', // lock_timeout expired
  INSUFFICIENT_PRIVILEGE: '42501',
} as const;

/** The SQLSTATE (or Node socket error code) of an error, if it has one. */
export function sqlstateOf(e: unknown): string | undefined {
  const code = (e as PgErrorLike | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * How an error is handled:
 *  - `unavailable`: the database or the link is down or restarting; retry soon (short backoff);
 *  - `conflict`: a transient clash with another transaction; retry soon (short backoff);
 *  - `auth`: credentials refused; retrying soon only adds failed logins (and may lock the role):
 *    retry rarely (long backoff) until an operator fixes the password;
 *  - `missing_table`: a table is gone; not retried until the configuration or schema changes;
 *  - `data`: the data itself is refused (bad value, constraint): retrying the same data fails again;
 *  - `other`: anything else; not retried by itself.
 */
export type PgErrorClass = 'unavailable' | 'conflict' | 'auth' | 'missing_table' | 'data' | 'other';

/** When to try again: `short` (seconds, with jitter), `long` (minutes, with jitter), or `none`. */
export type Backoff = 'short' | 'long' | 'none';

interface PgErrorRule {
  /** SQLSTATEs: five characters exactly, or a two-character class (`08` = every 08xxx), or a Node socket error code. */
  match: readonly string[];
  class: PgErrorClass;
  code: ErrorCode;
  retryable: boolean;
  backoff: Backoff;
}

/**
 * The one table of SQLSTATE handling (https://www.postgresql.org/docs/current/errcodes-appendix.html).
 * First match wins; exact codes are listed before the classes that contain them. Special cases
 * that depend on context stay at their call site but name their SQLSTATE from `SqlState`:
 * 23505 on an insert-only upload means "re-send as upsert" (TM_UPLOAD_CONFLICT), and 42883 on
 * record hashing means "hash text instead".
 */
export const PG_ERROR_CLASSES: readonly PgErrorRule[] = [
  // Connection exceptions (08xxx), server shutting down or starting (57P01-57P03), socket errors.
  {
    match: [
      '08',
      SqlState.ADMIN_SHUTDOWN,
      SqlState.CRASH_SHUTDOWN,
      SqlState.CANNOT_CONNECT_NOW,
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'ENOTFOUND',
      'EPIPE',
      'EHOSTUNREACH',
      'EAI_AGAIN',
    ],
    class: 'unavailable',
    code: ErrorCode.DB_UNAVAILABLE,
    retryable: true,
    backoff: 'short',
  },
  // Serialization failure, deadlock: the transaction lost a race; the next attempt usually wins.
  { match: [SqlState.SERIALIZATION_FAILURE, SqlState.DEADLOCK_DETECTED], class: 'conflict', code: ErrorCode.DB_CONFLICT, retryable: true, backoff: 'short' },
  // Invalid password (28P01), invalid authorization (28000): the long backoff of STYLE.md.
  { match: ['28'], class: 'auth', code: ErrorCode.DB_AUTH_FAILED, retryable: true, backoff: 'long' },
  // Undefined table.
  { match: [SqlState.UNDEFINED_TABLE], class: 'missing_table', code: ErrorCode.SOURCE_TABLE_MISSING, retryable: false, backoff: 'none' },
  // Data exceptions (22xxx), integrity violations (23xxx), duplicate keys in one statement (21000),
  // program limit exceeded (54000, e.g. an index row too large): the rows are at fault.
  {
    match: ['22', '23', SqlState.CARDINALITY_VIOLATION, SqlState.PROGRAM_LIMIT_EXCEEDED],
    class: 'data',
    code: ErrorCode.DB_ERROR,
    retryable: false,
    backoff: 'none',
  },
];

function ruleMatches(rule: PgErrorRule, sqlstate: string): boolean {
  return rule.match.some((m) => (m.length === 2 ? sqlstate.length === 5 && sqlstate.startsWith(m) : m === sqlstate));
}

export interface PgErrorClassification {
  code: ErrorCode;
  /** Worth retrying later (unavailable, conflict, auth); see `backoff` for when. */
  retryable: boolean;
  sqlstate: string | undefined;
  class: PgErrorClass;
  backoff: Backoff;
}

/** Maps a driver or server error to an ErrorCode by SQLSTATE (never by message text), from PG_ERROR_CLASSES. */
export function classifyPgError(e: unknown): PgErrorClassification {
  const sqlstate = sqlstateOf(e);
  const rule = sqlstate === undefined ? undefined : PG_ERROR_CLASSES.find((r) => ruleMatches(r, sqlstate));
  if (!rule) return { code: ErrorCode.DB_ERROR, retryable: false, sqlstate, class: 'other', backoff: 'none' };
  return { code: rule.code, retryable: rule.retryable, sqlstate, class: rule.class, backoff: rule.backoff };
}

/** True when the rows themselves were refused (class `data`): an upload with them fails again as is. */
export function isDataRejection(sqlstate: string | undefined): boolean {
  return sqlstate !== undefined && classifyPgError({ code: sqlstate }).class === 'data';
}

/** Wraps a database error into a TidemarkError with context, keeping the original as cause. */
export function wrapPgError(e: unknown, context: string): TidemarkError {
  if (e instanceof TidemarkError) return e;
  const { code, retryable } = classifyPgError(e);
  const message = `${context}: ${toError(e).message}`;
  return retryable ? new RetryableError(code, message, { cause: e }) : new TidemarkError(code, message, { cause: e });
}

/** Redacts the password of a connection string (URL or keyword/value form) for logs and `config check`. */
export function redactUrl(url: string): string {
  return redactConnectionString(url);
}
