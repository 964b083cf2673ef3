/**
 * Per-table state of the agent in `tidemark.table_state`: the delete counter last seen, the
 * rolling verification cursor, when local and remote last matched, and where an interrupted upload
 * resumes. A run reads it once (`read`) and writes back only the fields it changed.
 */
import type pg from 'pg';

import type { Bound, TableName } from '../../shared/protocol.js';

export interface TableStateRow {
  lastDeleteCount: string | null;
  lastStatsIdentity: string | null;
  verifyCursor: Bound | null;
  verifyPassStartedAt: Date | null;
  verifyRowsDone: number;
  /** When local and remote last matched. */
  lastSuccessAt: Date | null;
  /** Where an upload cut short by the run budget resumes. */
  uploadResume: UploadResume | null;
}

/**
 * A first sync (or a long catch-up) that outlasts the run budget goes on from here next run instead
 * of from the settled version: every row before `after` in (version, key) order is on the server,
 * except versions that were in progress (`xip`) when that was read. Valid while the server's
 * settled state is still `baseline` (nothing was settled since).
 */
export interface UploadResume {
  after: Bound;
  xip: string[];
  baseline: { settledVersion: string; settledXmax: string | null };
}

export class PgTableStateStore {
  constructor(private readonly pool: pg.Pool) {}

  async read(table: TableName): Promise<TableStateRow> {
    const { rows } = await this.pool.query<{
      last_delete_count: string | null;
      last_stats_identity: string | null;
      verify_cursor: Bound | null;
      verify_pass_started_at: Date | null;
      verify_rows_done: string;
      last_success_at: Date | null;
      upload_resume: UploadResume | null;
    }>(
      /* sql */ `select last_delete_count::text, last_stats_identity, verify_cursor, verify_pass_started_at, verify_rows_done::text, last_success_at, upload_resume
         from tidemark.table_state where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    const r = rows[0];
    return {
      lastDeleteCount: r?.last_delete_count ?? null,
      lastStatsIdentity: r?.last_stats_identity ?? null,
      verifyCursor: r?.verify_cursor ?? null,
      verifyPassStartedAt: r?.verify_pass_started_at ?? null,
      verifyRowsDone: Number(r?.verify_rows_done ?? 0),
      lastSuccessAt: r?.last_success_at ?? null,
      uploadResume: r?.upload_resume ?? null,
    };
  }

  async save(table: TableName, s: Partial<TableStateRow>): Promise<void> {
    await this.pool.query(
      /* sql */ `
      insert into tidemark.table_state as t (schema_name, table_name, last_delete_count, last_stats_identity, verify_cursor, verify_pass_started_at, verify_rows_done)
      values ($1::text, $2::text, $3::bigint, $4::text, $5::jsonb, $6::timestamptz, coalesce($7::bigint, 0))
      on conflict (schema_name, table_name) do update set
        last_delete_count = case when $8::boolean then excluded.last_delete_count else t.last_delete_count end,
        last_stats_identity = case when $8::boolean then excluded.last_stats_identity else t.last_stats_identity end,
        verify_cursor = case when $9::boolean then excluded.verify_cursor else t.verify_cursor end,
        verify_pass_started_at = case when $9::boolean then excluded.verify_pass_started_at else t.verify_pass_started_at end,
        verify_rows_done = case when $9::boolean then excluded.verify_rows_done else t.verify_rows_done end`,
      [
        table.schema,
        table.name,
        s.lastDeleteCount ?? null,
        s.lastStatsIdentity ?? null,
        s.verifyCursor === undefined ? null : JSON.stringify(s.verifyCursor),
        s.verifyPassStartedAt ?? null,
        s.verifyRowsDone ?? null,
        s.lastDeleteCount !== undefined,
        s.verifyCursor !== undefined,
      ],
    );
  }

  async saveUploadResume(table: TableName, resume: UploadResume | null): Promise<void> {
    await this.pool.query(
      /* sql */ `insert into tidemark.table_state (schema_name, table_name, upload_resume) values ($1::text, $2::text, $3::jsonb)
       on conflict (schema_name, table_name) do update set upload_resume = excluded.upload_resume`,
      [table.schema, table.name, resume === null ? null : JSON.stringify(resume)],
    );
  }

  async markSuccess(table: TableName, at: Date): Promise<void> {
    await this.pool.query(
      /* sql */ `insert into tidemark.table_state (schema_name, table_name, last_success_at) values ($1::text, $2::text, $3::timestamptz)
       on conflict (schema_name, table_name) do update set last_success_at = excluded.last_success_at`,
      [table.schema, table.name, at],
    );
  }
}
