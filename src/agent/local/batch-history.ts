/**
 * The history of upload requests per table in `tidemark.batch_history` (size, duration, outcome):
 * the batch tuner starts each process from it, and operators read it to see what a link allows.
 */
import type pg from 'pg';

import type { TableName } from '../../shared/protocol.js';
import type { BatchRecord } from '../batch-tuner.js';

/** What the uploader needs of the history. */
export interface BatchHistory {
  record(table: TableName, b: BatchRecord): Promise<void>;
  /** The most recent batches of a table, newest first. */
  recent(table: TableName, limit: number): Promise<BatchRecord[]>;
  /** Keeps the newest rows of a table only. */
  prune(table: TableName): Promise<void>;
}

/** History rows kept per table; older ones are pruned. */
const HISTORY_KEEP = 500;

export class PgBatchHistory implements BatchHistory {
  constructor(private readonly pool: pg.Pool) {}

  async record(table: TableName, b: BatchRecord): Promise<void> {
    await this.pool.query(
      /* sql */ `insert into tidemark.batch_history (schema_name, table_name, rows, bytes, duration_seconds, outcome, error_class)
       values ($1::text, $2::text, $3::int, $4::bigint, $5::double precision, $6::text, $7::text)`,
      [table.schema, table.name, b.rows, b.bytes, b.durationSeconds, b.outcome, b.errorClass],
    );
  }

  async recent(table: TableName, limit: number): Promise<BatchRecord[]> {
    const { rows } = await this.pool.query<{
      rows: number;
      bytes: string;
      duration_seconds: number;
      outcome: BatchRecord['outcome'];
      error_class: string | null;
    }>(
      /* sql */ `select rows, bytes::text, duration_seconds, outcome, error_class from tidemark.batch_history
        where schema_name = $1::text and table_name = $2::text order by id desc limit $3::int`,
      [table.schema, table.name, limit],
    );
    return rows.map((r) => ({ rows: r.rows, bytes: Number(r.bytes), durationSeconds: r.duration_seconds, outcome: r.outcome, errorClass: r.error_class }));
  }

  async prune(table: TableName): Promise<void> {
    await this.pool.query(
      /* sql */ `delete from tidemark.batch_history where schema_name = $1::text and table_name = $2::text
          and id < (select min(id) from (select id from tidemark.batch_history where schema_name = $1::text and table_name = $2::text order by id desc limit $3::int) k)`,
      [table.schema, table.name, HISTORY_KEEP],
    );
  }
}
