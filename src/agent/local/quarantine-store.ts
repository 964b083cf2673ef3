/**
 * Rows the server could not take, in `tidemark.quarantine`: key, version, the server's error, and
 * when to retry (exponential backoff). A quarantined row never holds back its neighbours; the run
 * retries it when due or as soon as it changes locally, and releases it once the server has it.
 */
import type pg from 'pg';

import type { TableName } from '../../shared/protocol.js';
import { stateTableExists } from './state-schema.js';

export interface QuarantinedRow {
  key: string[];
  version: string;
  error: string;
  attempts: number;
  nextRetryAt: Date;
}

export interface QuarantineRetry {
  /** First wait before a retry, in seconds; doubles with each attempt. */
  retryBaseSeconds: number;
  /** Longest wait, in seconds. */
  retryMaxSeconds: number;
}

/** What the uploader and the run need of the quarantine. */
export interface QuarantineStore {
  /** Quarantines rows (or counts one more attempt for rows already there). */
  add(table: TableName, rows: { key: string[]; version: string }[], error: string, retry: QuarantineRetry): Promise<void>;
  /** Quarantined rows of a table, oldest first; `onlyDue` keeps those whose backoff is over. */
  list(table: TableName, onlyDue: boolean): Promise<QuarantinedRow[]>;
  count(table: TableName): Promise<number>;
  /** Takes rows out of quarantine (they reached the server, or no longer exist). */
  release(table: TableName, keys: string[][]): Promise<void>;
}

export class PgQuarantineStore implements QuarantineStore {
  constructor(private readonly pool: pg.Pool) {}

  async add(table: TableName, rows: { key: string[]; version: string }[], error: string, retry: QuarantineRetry): Promise<void> {
    if (rows.length === 0) return;
    await this.pool.query(
      /* sql */ `
      insert into tidemark.quarantine as q (schema_name, table_name, key_text, version, error, next_retry_at)
      select $1::text, $2::text, array(select jsonb_array_elements_text(k)), v, $5::text, now() + make_interval(secs => $6::double precision)
        from unnest($3::jsonb[], $4::bigint[]) as r(k, v)
      on conflict (schema_name, table_name, key_text) do update set
        version = excluded.version, error = excluded.error, attempts = q.attempts + 1,
        next_retry_at = now() + make_interval(secs => least($7::double precision, $6::double precision * power(2, q.attempts)))`,
      [
        table.schema,
        table.name,
        rows.map((r) => JSON.stringify(r.key)),
        rows.map((r) => r.version),
        error.slice(0, 2000),
        retry.retryBaseSeconds,
        retry.retryMaxSeconds,
      ],
    );
  }

  async list(table: TableName, onlyDue: boolean): Promise<QuarantinedRow[]> {
    const { rows } = await this.pool.query<{ key_text: string[]; version: string; error: string; attempts: number; next_retry_at: Date }>(
      /* sql */ `select key_text, version::text, error, attempts, next_retry_at from tidemark.quarantine
        where schema_name = $1::text and table_name = $2::text and (not $3::boolean or next_retry_at <= now()) order by first_failed_at, key_text limit 10000`,
      [table.schema, table.name, onlyDue],
    );
    return rows.map((r) => ({ key: r.key_text, version: r.version, error: r.error, attempts: r.attempts, nextRetryAt: r.next_retry_at }));
  }

  async count(table: TableName): Promise<number> {
    if (!(await stateTableExists(this.pool, 'quarantine'))) return 0;
    const { rows } = await this.pool.query<{ n: string }>(
      /* sql */ `select count(*)::text as n from tidemark.quarantine where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    return Number(rows[0]?.n ?? 0);
  }

  async release(table: TableName, keys: string[][]): Promise<void> {
    if (keys.length === 0) return;
    await this.pool.query(
      /* sql */ `delete from tidemark.quarantine q using unnest($3::jsonb[]) as r(k)
        where q.schema_name = $1::text and q.table_name = $2::text and q.key_text = array(select jsonb_array_elements_text(r.k))`,
      [table.schema, table.name, keys.map((k) => JSON.stringify(k))],
    );
  }
}
