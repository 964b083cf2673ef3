import pg from 'pg';

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
 * Session settings under which both sides print rows identically (DESIGN.md, Manifests).
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
    connectionString: options.connectionString,
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

/** SQLSTATEs that tidemark acts on by name (classification below; special cases at their call sites). */
export const SqlState = {
  UNIQUE_VIOLATION: '23505',
  UNDEFINED_FUNCTION: '42883',
  UNDEFINED_TABLE: '42P01',
  SERIALIZATION_FAILURE: '40001',
  DEADLOCK_DETECTED: '40P01',
  INVALID_PASSWORD: '28P01',
  INVALID_AUTHORIZATION: '28000',
} as const;

/** The SQLSTATE (or Node socket error code) of an error, if it has one. */
export function sqlstateOf(e: unknown): string | undefined {
  const code = (e as PgErrorLike | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * Maps a driver or server error to an ErrorCode by SQLSTATE (never by message text).
 *   08xxx connection exceptions, 57P01 admin shutdown, 57P03 cannot connect now, ECONNREFUSED/ECONNRESET: unavailable
 *   40001 serialization failure, 40P01 deadlock: conflict (retry)
 *   28P01 invalid password, 28000 invalid authorization: auth (long backoff)
 *   42P01 undefined table: table missing
 */
export function classifyPgError(e: unknown): { code: ErrorCode; retryable: boolean; sqlstate: string | undefined } {
  const err = e as PgErrorLike;
  const sqlstate = typeof err?.code === 'string' ? err.code : undefined;
  if (sqlstate === undefined) return { code: ErrorCode.DB_ERROR, retryable: false, sqlstate };
  if (sqlstate.startsWith('08') || sqlstate === '57P01' || sqlstate === '57P02' || sqlstate === '57P03')
    return { code: ErrorCode.DB_UNAVAILABLE, retryable: true, sqlstate };
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EPIPE'].includes(sqlstate))
    return { code: ErrorCode.DB_UNAVAILABLE, retryable: true, sqlstate };
  if (sqlstate === '40001' || sqlstate === '40P01') return { code: ErrorCode.DB_CONFLICT, retryable: true, sqlstate };
  if (sqlstate === '28P01' || sqlstate === '28000') return { code: ErrorCode.DB_AUTH_FAILED, retryable: true, sqlstate };
  if (sqlstate === '42P01') return { code: ErrorCode.SOURCE_TABLE_MISSING, retryable: false, sqlstate };
  return { code: ErrorCode.DB_ERROR, retryable: false, sqlstate };
}

/** Wraps a database error into a TidemarkError with context, keeping the original as cause. */
export function wrapPgError(e: unknown, context: string): TidemarkError {
  if (e instanceof TidemarkError) return e;
  const { code, retryable } = classifyPgError(e);
  const message = `${context}: ${toError(e).message}`;
  return retryable ? new RetryableError(code, message, { cause: e }) : new TidemarkError(code, message, { cause: e });
}

/** Redacts the password of a connection string for logs and `config check`. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparsable url>';
  }
}
