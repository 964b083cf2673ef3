/**
 * What the server keeps of its agents' run reports (README, Operating a fleet), in the tables of the
 * fleet migration: `tidemark.agent_report` (the latest per database), `tidemark.table_report` (the
 * latest per database and table) and `tidemark.run_report` (the last RUN_HISTORY_LIMIT runs per
 * database). The fleet's facts (fleet-state.ts) join them with the tenants, their leases (the
 * server's own sign of life of an agent) and the tables' resync state.
 */
import type pg from 'pg';

import { withTransaction } from '../shared/pg.js';
import {
  formatTableName,
  parseTableName,
  type QuarantinedSample,
  type ResyncState,
  RUN_HISTORY_LIMIT,
  type RunReport,
  type SchemaState,
  type TableOutcome,
} from '../shared/protocol.js';
import type { FleetFacts } from './fleet-state.js';
import type { Tenant } from './tenant-scope.js';

/** One table's latest report joined with its server state. */
export interface FleetTableFacts {
  table: string;
  localCount: number | null;
  localMaxVersion: string | null;
  remoteCount: number | null;
  remoteMaxVersion: string | null;
  lastOutcome: TableOutcome | null;
  errorCode: string | null;
  errorMessage: string | null;
  quarantined: QuarantinedSample[];
  lagSeconds: number | null;
  schemaState: SchemaState | null;
  resync: ResyncState | null;
}

export interface FleetRunRecord {
  at: Date;
  durationSeconds: number;
  outcome: TableOutcome;
  tables: { table: string; outcome: TableOutcome; errorCode: string | null; rowsUploaded: number; rowsDeleted: number }[];
}

export interface FleetStore {
  /** Records one run report of a tenant's agent. */
  recordReport(tenant: Tenant, report: RunReport): Promise<void>;
  /** The facts of every database (of one client, or one database, when given). */
  facts(filter?: { clientId?: string | undefined; databaseId?: string | undefined }): Promise<FleetFacts[]>;
  tables(tenant: Tenant): Promise<FleetTableFacts[]>;
  /** The database's last runs, newest first. */
  runs(tenant: Tenant): Promise<FleetRunRecord[]>;
}

const OUTCOME_RANK: Record<TableOutcome, number> = { ok: 0, behind: 1, error: 2 };

/** The worst of some outcomes (ok when there are none). */
export function worstOutcome(outcomes: TableOutcome[]): TableOutcome {
  return outcomes.reduce<TableOutcome>((w, o) => (OUTCOME_RANK[o] > OUTCOME_RANK[w] ? o : w), 'ok');
}

const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

export class PgFleetStore implements FleetStore {
  constructor(
    private readonly pool: pg.Pool,
    /** The agents' lease (server config leaseSeconds): a lease expiring at T was renewed at T - leaseSeconds. */
    private readonly leaseSeconds: number,
  ) {}

  async recordReport(tenant: Tenant, report: RunReport): Promise<void> {
    // One row per table: a name given twice (in two spellings, say) keeps its last entry, as an
    // upsert cannot touch one row twice in a statement.
    const byName = new Map(report.tables.map((t) => [formatTableName(parseTableName(t.table)), t]));
    const tables = [...byName.values()].map((t) => {
      const name = parseTableName(t.table);
      return {
        schema_name: name.schema,
        table_name: name.name,
        outcome: t.outcome,
        error_code: t.errorCode,
        error_message: t.errorMessage,
        rows_behind: t.rowsBehind,
        quarantined_rows: t.quarantinedRows,
        quarantined: t.quarantined,
        lag_seconds: t.lagSeconds,
        local_count: t.localCount,
        local_max_version: t.localMaxVersion,
        remote_count: t.remoteCount,
        remote_max_version: t.remoteMaxVersion,
        schema_state: t.schemaState,
      };
    });
    const outcome = worstOutcome(report.tables.map((t) => t.outcome));
    const mismatched = report.tables.some((t) => t.rowsMismatched > 0);
    const history = report.tables.map((t) => ({
      table: formatTableName(parseTableName(t.table)),
      outcome: t.outcome,
      errorCode: t.errorCode,
      rowsUploaded: t.rowsUploaded,
      rowsDeleted: t.rowsDeleted,
    }));
    const key = [tenant.clientId, tenant.databaseId];
    const tablesJson = JSON.stringify(tables);
    await withTransaction(this.pool, async (client) => {
      await client.query(
        /* sql */ `
        insert into tidemark.agent_report as a (client_id, database_id, reported_at, agent_version, last_success_at, horizon_age_seconds, mismatch_runs)
        values ($1::text, $2::uuid, now(), $3::text, case when $4::boolean then now() end, $5::double precision, $6::int)
        on conflict (client_id, database_id) do update
          set reported_at = now(), agent_version = excluded.agent_version,
              last_success_at = case when $4::boolean then now() else a.last_success_at end,
              horizon_age_seconds = excluded.horizon_age_seconds, mismatch_runs = a.mismatch_runs + $6::int`,
        [...key, report.agentVersion, report.tables.length > 0 && outcome === 'ok', report.horizonAgeSeconds, mismatched ? 1 : 0],
      );
      if (tables.length > 0)
        await client.query(
          /* sql */ `
          insert into tidemark.table_report (client_id, database_id, schema_name, table_name, reported_at, outcome, error_code, error_message,
                 rows_behind, quarantined_rows, quarantined, lag_seconds, local_count, local_max_version, remote_count, remote_max_version, schema_state)
          select $1::text, $2::uuid, r.schema_name, r.table_name, now(), r.outcome, r.error_code, r.error_message,
                 r.rows_behind, r.quarantined_rows, r.quarantined, r.lag_seconds, r.local_count, r.local_max_version, r.remote_count,
                 r.remote_max_version, r.schema_state
            from jsonb_to_recordset($3::jsonb) as r(schema_name text, table_name text, outcome text, error_code text, error_message text,
                 rows_behind bigint, quarantined_rows bigint, quarantined jsonb, lag_seconds double precision, local_count bigint,
                 local_max_version text, remote_count bigint, remote_max_version text, schema_state jsonb)
          on conflict (client_id, database_id, schema_name, table_name) do update
            set reported_at = now(), outcome = excluded.outcome, error_code = excluded.error_code, error_message = excluded.error_message,
                rows_behind = excluded.rows_behind, quarantined_rows = excluded.quarantined_rows, quarantined = excluded.quarantined,
                lag_seconds = excluded.lag_seconds, local_count = excluded.local_count, local_max_version = excluded.local_max_version,
                remote_count = excluded.remote_count, remote_max_version = excluded.remote_max_version, schema_state = excluded.schema_state`,
          [...key, tablesJson],
        );
      // A complete report names every table the agent syncs: the others' last reports (an untracked
      // table that was failing, say) would otherwise count for the database for ever.
      if (report.complete)
        await client.query(
          /* sql */ `
          delete from tidemark.table_report
           where client_id = $1::text and database_id = $2::uuid
             and (schema_name, table_name) not in (select r.schema_name, r.table_name from jsonb_to_recordset($3::jsonb) as r(schema_name text, table_name text))`,
          [...key, tablesJson],
        );
      await client.query(
        /* sql */ `insert into tidemark.run_report (client_id, database_id, started_at, duration_seconds, outcome, tables)
                   values ($1::text, $2::uuid, $3::timestamptz, $4::double precision, $5::text, $6::jsonb)`,
        [...key, report.startedAt, report.durationSeconds, outcome, JSON.stringify(history)],
      );
      // Bounded history: the primary key's index finds the database's newest runs.
      await client.query(
        /* sql */ `
        delete from tidemark.run_report
         where client_id = $1::text and database_id = $2::uuid
           and seq <= (select seq from tidemark.run_report where client_id = $1::text and database_id = $2::uuid
                        order by seq desc offset $3::int limit 1)`,
        [...key, RUN_HISTORY_LIMIT],
      );
    });
  }

  async facts(filter: { clientId?: string | undefined; databaseId?: string | undefined } = {}): Promise<FleetFacts[]> {
    const { rows } = await this.pool.query<{
      client_id: string;
      database_id: string;
      name: string;
      agent_version: string | null;
      reported_at: Date | null;
      last_success_at: Date | null;
      last_seen_at: Date | null;
      horizon_age_seconds: number | null;
      mismatch_runs: string | null;
      tables: number;
      failing: number;
      behind: number;
      lag_seconds: number | null;
      rows_behind: string | null;
      quarantined: string;
      error_code: string | null;
      schema_blocked: number;
      resync_since: Date | null;
    }>(
      /* sql */ `
      select t.client_id, t.database_id::text as database_id, t.name,
             a.agent_version, a.reported_at, a.last_success_at, a.horizon_age_seconds, a.mismatch_runs::text as mismatch_runs,
             greatest(a.reported_at, t.lease_expires_at - make_interval(secs => $3::double precision)) as last_seen_at,
             greatest(coalesce(r.tables, 0), coalesce(s.declared, 0))::int as tables,
             coalesce(r.failing, 0)::int as failing, coalesce(r.behind, 0)::int as behind, r.lag_seconds,
             r.rows_behind::text as rows_behind, coalesce(r.quarantined, 0)::text as quarantined, r.error_code,
             coalesce(r.schema_blocked, 0)::int as schema_blocked, s.resync_since
        from tidemark.tenant_database t
        left join tidemark.agent_report a on a.client_id = t.client_id and a.database_id = t.database_id
        left join lateral (
          select count(*) as tables,
                 count(*) filter (where x.outcome = 'error') as failing,
                 count(*) filter (where x.outcome = 'behind') as behind,
                 max(x.lag_seconds) as lag_seconds,
                 sum(x.rows_behind) as rows_behind,
                 sum(x.quarantined_rows) as quarantined,
                 (array_agg(x.error_code order by x.schema_name, x.table_name) filter (where x.outcome = 'error'))[1] as error_code,
                 count(*) filter (where x.error_code in ('TM_REPLICA_SCHEMA_MISMATCH', 'TM_REPLICA_NOT_ADMITTED') or x.schema_state->>'state' = 'blocked') as schema_blocked
            from tidemark.table_report x
           where x.client_id = t.client_id and x.database_id = t.database_id) r on true
        left join lateral (
          select count(*) as declared,
                 min(y.resync_requested_at) filter (where y.resync_status in ('requested', 'running')) as resync_since
            from tidemark.table_state y
           where y.client_id = t.client_id and y.database_id = t.database_id) s on true
       where ($1::text is null or t.client_id = $1::text) and ($2::uuid is null or t.database_id = $2::uuid)`,
      [filter.clientId ?? null, filter.databaseId ?? null, this.leaseSeconds],
    );
    return rows.map((r) => ({
      clientId: r.client_id,
      databaseId: r.database_id,
      name: r.name,
      agentVersion: r.agent_version,
      reportedAt: r.reported_at,
      lastSuccessAt: r.last_success_at,
      lastSeenAt: r.last_seen_at,
      tables: r.tables,
      failing: r.failing,
      behind: r.behind,
      lagSeconds: r.lag_seconds,
      rowsBehind: num(r.rows_behind),
      quarantinedRows: Number(r.quarantined),
      errorCode: r.error_code,
      schemaBlocked: r.schema_blocked,
      resyncSince: r.resync_since,
      horizonAgeSeconds: r.horizon_age_seconds,
      mismatchRuns: Number(r.mismatch_runs ?? 0),
    }));
  }

  async tables(tenant: Tenant): Promise<FleetTableFacts[]> {
    const { rows } = await this.pool.query<{
      schema_name: string;
      table_name: string;
      row_count: string | null;
      max_version: string | null;
      resync_status: ResyncState['status'] | null;
      resync_requested_at: Date | null;
      resync_started_at: Date | null;
      resync_finished_at: Date | null;
      resync_progress: number | null;
      resync_rows_repaired: string | null;
      resync_error: string | null;
      outcome: TableOutcome | null;
      error_code: string | null;
      error_message: string | null;
      quarantined: QuarantinedSample[] | null;
      lag_seconds: number | null;
      local_count: string | null;
      local_max_version: string | null;
      remote_count: string | null;
      remote_max_version: string | null;
      schema_state: SchemaState | null;
    }>(
      /* sql */ `
      select schema_name, table_name, s.row_count::text as row_count, s.max_version::text as max_version,
             s.resync_status, s.resync_requested_at, s.resync_started_at, s.resync_finished_at, s.resync_progress,
             s.resync_rows_repaired::text as resync_rows_repaired, s.resync_error,
             r.outcome, r.error_code, r.error_message, r.quarantined, r.lag_seconds, r.local_count::text as local_count,
             r.local_max_version, r.remote_count::text as remote_count, r.remote_max_version, r.schema_state
        from (select * from tidemark.table_state where client_id = $1::text and database_id = $2::uuid) s
        full join (select * from tidemark.table_report where client_id = $1::text and database_id = $2::uuid) r using (schema_name, table_name)
       order by schema_name, table_name`,
      [tenant.clientId, tenant.databaseId],
    );
    return rows.map((r) => ({
      table: formatTableName({ schema: r.schema_name, name: r.table_name }),
      localCount: num(r.local_count),
      localMaxVersion: r.local_max_version,
      // The server's live figures when it holds the table, else what the agent last saw.
      remoteCount: num(r.row_count ?? r.remote_count),
      remoteMaxVersion: r.row_count !== null ? r.max_version : r.remote_max_version,
      lastOutcome: r.outcome,
      errorCode: r.error_code,
      errorMessage: r.error_message,
      quarantined: r.quarantined ?? [],
      lagSeconds: r.lag_seconds,
      schemaState: r.schema_state,
      resync:
        r.resync_status && r.resync_requested_at
          ? {
              status: r.resync_status,
              requestedAt: r.resync_requested_at.toISOString(),
              startedAt: r.resync_started_at?.toISOString() ?? null,
              finishedAt: r.resync_finished_at?.toISOString() ?? null,
              progress: r.resync_progress ?? 0,
              rowsRepaired: Number(r.resync_rows_repaired ?? 0),
              error: r.resync_error,
            }
          : null,
    }));
  }

  async runs(tenant: Tenant): Promise<FleetRunRecord[]> {
    const { rows } = await this.pool.query<{ started_at: Date; duration_seconds: number; outcome: TableOutcome; tables: FleetRunRecord['tables'] }>(
      /* sql */ `select started_at, duration_seconds, outcome, tables from tidemark.run_report
                  where client_id = $1::text and database_id = $2::uuid order by seq desc limit $3::int`,
      [tenant.clientId, tenant.databaseId, RUN_HISTORY_LIMIT],
    );
    return rows.map((r) => ({ at: r.started_at, durationSeconds: r.duration_seconds, outcome: r.outcome, tables: r.tables }));
  }
}
