/**
 * Per-table state of the agent in `tidemark.table_state`: the write counters last seen, the
 * horizon last settled and a whole-table verification owed, the rolling verification cursor, when
 * local and remote last matched, and where an interrupted upload resumes. A run reads it once (`read`) and writes back only the fields it changed.
 */
import type pg from 'pg';

import type { Bound, TableName } from '../../shared/protocol.js';

export interface TableStateRow {
  /** The statistics' delete counter (summed over partitions) at the last count comparison. */
  lastDeleteCount: string | null;
  lastStatsIdentity: string | null;
  /** The statistics' insert counter when the last run read it (change-detection.ts). */
  lastInsertCount: string | null;
  /**
   * The horizon this agent last settled on the server, as the local database remembers it. It goes
   * back with the database (a restored backup): a server that settled something else means the
   * local database is not where it was (restore-detection.ts).
   */
  lastSettledVersion: string | null;
  /**
   * The settled xmax that went with it (null in states saved before it was kept). The settled
   * version is the oldest transaction still running, which one long transaction anywhere in the
   * cluster can hold still across many settles; the xmax moves with every transaction id.
   */
  lastSettledXmax: string | null;
  /** A whole-table verification is owed (a restore or a move was detected) and not done yet. */
  fullVerifyPending: boolean;
  verifyCursor: Bound | null;
  verifyPassStartedAt: Date | null;
  verifyRowsDone: number;
  /** When local and remote last matched. */
  lastSuccessAt: Date | null;
  /** Why the table's last run failed (`message [CODE]`), until a run ends without error; shown by `status` for a table the server never accepted. */
  lastError: string | null;
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
      last_insert_count: string | null;
      last_settled_version: string | null;
      last_settled_xmax: string | null;
      full_verify_pending: boolean;
      verify_cursor: Bound | null;
      verify_pass_started_at: Date | null;
      verify_rows_done: string;
      last_success_at: Date | null;
      upload_resume: UploadResume | null;
      last_error: string | null;
    }>(
      /* sql */ `select last_delete_count::text, last_stats_identity, last_insert_count::text, last_settled_version::text, last_settled_xmax::text, full_verify_pending,
              verify_cursor, verify_pass_started_at, verify_rows_done::text, last_success_at, upload_resume, last_error
         from tidemark.table_state where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    const r = rows[0];
    return {
      lastDeleteCount: r?.last_delete_count ?? null,
      lastStatsIdentity: r?.last_stats_identity ?? null,
      lastInsertCount: r?.last_insert_count ?? null,
      lastSettledVersion: r?.last_settled_version ?? null,
      lastSettledXmax: r?.last_settled_xmax ?? null,
      fullVerifyPending: r?.full_verify_pending ?? false,
      verifyCursor: r?.verify_cursor ?? null,
      verifyPassStartedAt: r?.verify_pass_started_at ?? null,
      verifyRowsDone: Number(r?.verify_rows_done ?? 0),
      lastSuccessAt: r?.last_success_at ?? null,
      uploadResume: r?.upload_resume ?? null,
      lastError: r?.last_error ?? null,
    };
  }

  /** Writes the given fields (the others keep their values). */
  async save(table: TableName, s: Partial<Omit<TableStateRow, 'lastSuccessAt' | 'uploadResume'>>): Promise<void> {
    // Column names come from this fixed map, never from input; values are parameters.
    const fields: { column: string; cast: string; value: unknown }[] = [];
    const add = (column: string, cast: string, value: unknown): void => {
      if (value !== undefined) fields.push({ column, cast, value });
    };
    add('last_delete_count', 'bigint', s.lastDeleteCount);
    add('last_stats_identity', 'text', s.lastStatsIdentity);
    add('last_insert_count', 'bigint', s.lastInsertCount);
    add('last_settled_version', 'bigint', s.lastSettledVersion);
    add('last_settled_xmax', 'bigint', s.lastSettledXmax);
    add('full_verify_pending', 'boolean', s.fullVerifyPending);
    add('verify_cursor', 'jsonb', s.verifyCursor === undefined ? undefined : JSON.stringify(s.verifyCursor));
    add('verify_pass_started_at', 'timestamptz', s.verifyPassStartedAt);
    add('verify_rows_done', 'bigint', s.verifyRowsDone);
    add('last_error', 'text', s.lastError);
    if (fields.length === 0) return;
    const columns = fields.map((f) => f.column).join(', ');
    const values = fields.map((f, i) => `$${i + 3}::${f.cast}`).join(', ');
    const updates = fields.map((f) => `${f.column} = excluded.${f.column}`).join(', ');
    await this.pool.query(
      /* sql */ `insert into tidemark.table_state (schema_name, table_name, ${columns}) values ($1::text, $2::text, ${values})
       on conflict (schema_name, table_name) do update set ${updates}`,
      [table.schema, table.name, ...fields.map((f) => f.value)],
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
