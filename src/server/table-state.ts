/**
 * The per-(tenant, table) state rows of `tidemark.table_state`: the O(1) summary (row count, max
 * version, settled horizon), updated in the same transaction as the rows they describe, and the
 * state of a requested resync. Every statement addresses one state row by `STATE_KEY`, bound as
 * $1..$4 by `stateKey`.
 */
import type pg from 'pg';

import { ErrorCode, InvariantError, ProtocolError } from '../shared/errors.js';
import {
  formatTableName,
  type IdleSettle,
  type ResyncReport,
  type ResyncState,
  type SettleParams,
  type TableName,
  type TableSummary,
} from '../shared/protocol.js';
import type { Tenant } from './tenant-scope.js';

type Queryable = pg.Pool | pg.ClientBase;

/** The one state row of a tenant's table: parameters $1..$4 of every statement below. */
const STATE_KEY = /* sql */ `client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text`;

export function stateKey(tenant: Tenant, table: TableName): [string, string, string, string] {
  return [tenant.clientId, tenant.databaseId, table.schema, table.name];
}

/** The state row's max version, as a scalar subquery over the state key ($1..$4). */
export const stateMaxVersionSql = /* sql */ `select max_version from tidemark.table_state where ${STATE_KEY}`;

const STATE_COLUMNS = /* sql */ `
  row_count::text, max_version::text, settled_version::text, settled_xmax::text, settled_xip::text[] as settled_xip,
  max_modified, updated_at, resync_status, resync_requested_at, resync_started_at, resync_finished_at,
  resync_progress, resync_rows_repaired::text, resync_error`;

interface StateRow {
  row_count: string;
  max_version: string | null;
  settled_version: string;
  settled_xmax: string | null;
  settled_xip: string[];
  max_modified: Date | null;
  updated_at: Date | null;
  resync_status: string | null;
  resync_requested_at: Date | null;
  resync_started_at: Date | null;
  resync_finished_at: Date | null;
  resync_progress: number;
  resync_rows_repaired: string;
  resync_error: string | null;
}

function toSummary(table: TableName, r: StateRow): TableSummary {
  const resync: ResyncState | null =
    r.resync_status && r.resync_requested_at
      ? {
          status: r.resync_status as ResyncState['status'],
          requestedAt: r.resync_requested_at.toISOString(),
          startedAt: r.resync_started_at?.toISOString() ?? null,
          finishedAt: r.resync_finished_at?.toISOString() ?? null,
          progress: r.resync_progress,
          rowsRepaired: Number(r.resync_rows_repaired),
          error: r.resync_error,
        }
      : null;
  return {
    table: formatTableName(table),
    rowCount: Number(r.row_count),
    maxVersion: r.max_version,
    settledVersion: r.settled_version,
    settledXmax: r.settled_xmax,
    settledXip: r.settled_xip,
    maxModified: r.max_modified?.toISOString() ?? null,
    updatedAt: r.updated_at?.toISOString() ?? null,
    resync,
  };
}

function notDeclared(table: TableName): ProtocolError {
  return new ProtocolError(ErrorCode.REPLICA_TABLE_UNKNOWN, 404, `table ${formatTableName(table)} is not declared for this database`);
}

function single(table: TableName, rows: StateRow[]): TableSummary {
  const row = rows[0];
  if (!row) throw new InvariantError(`state row of ${formatTableName(table)} missing after it was written`);
  return toSummary(table, row);
}

/** What an upload changes in the state row. */
interface UploadChange {
  inserted: number;
  maxVersion: string | null;
  settle?: SettleParams | undefined;
  maxModified?: string | undefined;
}

/** A state row as the admin's tenant listing shows it. */
export interface ListedState {
  clientId: string;
  databaseId: string;
  summary: TableSummary;
  updatedAt: Date | null;
}

export class PgTableState {
  /** The summary of a declared table; 404 when the tenant never declared it. */
  async read(db: Queryable, tenant: Tenant, table: TableName): Promise<TableSummary> {
    const { rows } = await db.query<StateRow>(/* sql */ `select ${STATE_COLUMNS} from tidemark.table_state where ${STATE_KEY}`, stateKey(tenant, table));
    const row = rows[0];
    if (!row) throw notDeclared(table);
    return toSummary(table, row);
  }

  /**
   * The summary with one more scalar in the same indexed read (`extraSql`: a subquery over the state
   * key $1..$4, e.g. the table's schema state); null when the tenant never declared the table.
   */
  async readWith<T>(db: Queryable, tenant: Tenant, table: TableName, extraSql: string): Promise<{ summary: TableSummary; extra: T | null } | null> {
    const { rows } = await db.query<StateRow & { extra: T | null }>(
      /* sql */ `select ${STATE_COLUMNS}, (${extraSql}) as extra from tidemark.table_state where ${STATE_KEY}`,
      stateKey(tenant, table),
    );
    const row = rows[0];
    return row ? { summary: toSummary(table, row), extra: row.extra } : null;
  }

  async exists(db: Queryable, tenant: Tenant, table: TableName): Promise<boolean> {
    return (await db.query(/* sql */ `select from tidemark.table_state where ${STATE_KEY}`, stateKey(tenant, table))).rowCount === 1;
  }

  /**
   * Tables the tenant has declared, counted under a lock on the tenant's row so that concurrent
   * declarations of new tables take turns and cannot pass a quota together.
   */
  async countDeclaredLocked(client: pg.ClientBase, tenant: Tenant): Promise<number> {
    await client.query(/* sql */ `select from tidemark.tenant_database where client_id = $1::text and database_id = $2::uuid for update`, [
      tenant.clientId,
      tenant.databaseId,
    ]);
    const { rows } = await client.query<{ n: string }>(
      /* sql */ `select count(*)::text as n from tidemark.table_state where client_id = $1::text and database_id = $2::uuid`,
      [tenant.clientId, tenant.databaseId],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * Deletes and recounts hold the state row for their whole transaction; uploads lock it only by
   * their final update, so they load in parallel and take turns with these only to add their counts.
   */
  async lock(client: pg.ClientBase, tenant: Tenant, table: TableName): Promise<void> {
    await client.query(/* sql */ `select from tidemark.table_state where ${STATE_KEY} for update`, stateKey(tenant, table));
  }

  /** Creates the state row of a newly declared table (or keeps the existing one) and returns it. */
  async ensure(client: pg.ClientBase, tenant: Tenant, table: TableName): Promise<TableSummary> {
    const { rows } = await client.query<StateRow>(
      /* sql */ `
      with ins as (
        insert into tidemark.table_state (client_id, database_id, schema_name, table_name)
        values ($1::text, $2::uuid, $3::text, $4::text)
        on conflict do nothing
        returning ${STATE_COLUMNS})
      select * from ins
      union all
      select ${STATE_COLUMNS} from tidemark.table_state where ${STATE_KEY}`,
      stateKey(tenant, table),
    );
    return single(table, rows);
  }

  /** Adds an upload's inserted rows and versions, and settles the table when asked. */
  async addUpload(client: pg.ClientBase, tenant: Tenant, table: TableName, change: UploadChange): Promise<TableSummary> {
    return single(table, await this.applyUpload(client, tenant, table, change));
  }

  /**
   * An upload without rows (a settle): the state row's update alone, one statement, no staging
   * table. 404 when the table is not declared.
   */
  async settleEmpty(db: Queryable, tenant: Tenant, table: TableName, change: Pick<UploadChange, 'settle' | 'maxModified'>): Promise<TableSummary> {
    const row = (await this.applyUpload(db, tenant, table, { inserted: 0, maxVersion: null, ...change }))[0];
    if (!row) throw notDeclared(table);
    return toSummary(table, row);
  }

  private async applyUpload(db: Queryable, tenant: Tenant, table: TableName, change: UploadChange): Promise<StateRow[]> {
    const { rows } = await db.query<StateRow>(
      /* sql */ `
      update tidemark.table_state
         set row_count = row_count + $5::bigint,
             max_version = case when $6::bigint is null then max_version else greatest(max_version, $6::bigint) end,
             settled_version = coalesce($7::bigint, settled_version),
             settled_xmax = case when $7::bigint is null then settled_xmax else $8::bigint end,
             settled_xip = case when $7::bigint is null then settled_xip else $9::bigint[] end,
             max_modified = greatest(max_modified, $10::timestamptz),
             updated_at = now()
       where ${STATE_KEY}
      returning ${STATE_COLUMNS}`,
      [
        ...stateKey(tenant, table),
        change.inserted,
        change.maxVersion,
        change.settle?.settledVersion ?? null,
        change.settle?.settledXmax ?? null,
        change.settle?.settledXip ?? [],
        change.maxModified ?? null,
      ],
    );
    return rows;
  }

  /**
   * An idle run's settle (protocol/idle-settle.ts): moves the horizon only while the state row is
   * the one the agent saw and holds no version above the agent's, in one statement. Null when it did
   * not apply (the state moved, or the table is not declared): the agent then settles the old way.
   */
  /**
   * `declarationHash`: the tenant's accepted shape must still be this one, in sync (schema-store.ts):
   * a settle never stands in for a declaration the catalog would now treat otherwise.
   */
  async settleIdle(db: Queryable, tenant: Tenant, table: TableName, idle: IdleSettle, declarationHash: string): Promise<TableSummary | null> {
    const { expected, settle } = idle;
    const { rows } = await db.query<StateRow>(
      /* sql */ `
      update tidemark.table_state
         set settled_version = $5::bigint, settled_xmax = $6::bigint, settled_xip = $7::bigint[], updated_at = now()
       where ${STATE_KEY}
         and settled_version = $8::bigint and settled_xmax is not distinct from $9::bigint and settled_xip = $10::bigint[]
         and (max_version is null or max_version <= $11::bigint)
         and exists (select from tidemark.tenant_table_shape s
                      where s.client_id = $1::text and s.database_id = $2::uuid and s.schema_name = $3::text and s.table_name = $4::text
                        and s.declaration_hash = $12::text and s.schema_state = 'in_sync')
      returning ${STATE_COLUMNS}`,
      [
        ...stateKey(tenant, table),
        settle.settledVersion,
        settle.settledXmax,
        settle.settledXip,
        expected.settledVersion,
        expected.settledXmax,
        expected.settledXip,
        // No local rows: the server must hold none either (-1 is below every version).
        idle.maxVersion ?? '-1',
        declarationHash,
      ],
    );
    const row = rows[0];
    return row ? toSummary(table, row) : null;
  }

  /**
   * Subtracts deleted rows; `maxVersionSql` recomputes the max version from the rows left (it may
   * use $1/$2, the tenant). A delete never raises the max version: a row someone placed behind
   * tidemark's back with a higher version must not become "newer than anything tidemark applied",
   * which is how uploads recognise such a row (replica-rows.ts, replaceForeignRows).
   */
  async subtractDeleted(client: pg.ClientBase, tenant: Tenant, table: TableName, deleted: number, maxVersionSql: string): Promise<void> {
    await client.query(
      /* sql */ `
      update tidemark.table_state
         set row_count = row_count - $5::bigint, max_version = case when r.v is null then null else least(max_version, r.v) end, updated_at = now()
        from (select (${maxVersionSql}) as v) r
       where ${STATE_KEY}`,
      [...stateKey(tenant, table), deleted],
    );
  }

  /** Replaces count and max version by figures computed from the rows (`countsSql` returns n, max_version; may use $1/$2). */
  async setCounts(client: pg.ClientBase, tenant: Tenant, table: TableName, countsSql: string): Promise<void> {
    await client.query(
      /* sql */ `
      update tidemark.table_state s set row_count = r.n, max_version = r.max_version, updated_at = now()
        from (${countsSql}) r
       where ${STATE_KEY}`, // r has only n and max_version: the key's columns are the state row's
      stateKey(tenant, table),
    );
  }

  /** Flags tables for a forced full resync; returns the flagged table names. */
  async requestResync(pool: pg.Pool, clientId: string, databaseId: string, tables: TableName[] | null): Promise<string[]> {
    const { rows } = await pool.query<{ schema_name: string; table_name: string }>(
      /* sql */ `
      update tidemark.table_state
         set resync_status = 'requested', resync_requested_at = now(), resync_started_at = null, resync_finished_at = null,
             resync_progress = 0, resync_rows_repaired = 0, resync_error = null
       where client_id = $1::text and database_id = $2::uuid
         and ($3::text[] is null or (schema_name, table_name) in (select s, t from unnest($3::text[], $4::text[]) as x(s, t)))
      returning schema_name, table_name`,
      [clientId, databaseId, tables ? tables.map((t) => t.schema) : null, tables ? tables.map((t) => t.name) : null],
    );
    return rows.map((r) => formatTableName({ schema: r.schema_name, name: r.table_name }));
  }

  async reportResync(pool: pg.Pool, tenant: Tenant, table: TableName, report: ResyncReport): Promise<TableSummary> {
    await pool.query(
      /* sql */ `
      update tidemark.table_state
         set resync_status = $5::text,
             resync_started_at = coalesce(resync_started_at, now()),
             resync_finished_at = case when $5::text in ('done', 'failed') then now() end,
             resync_progress = $6::double precision, resync_rows_repaired = $7::bigint, resync_error = $8::text
       where ${STATE_KEY} and resync_status is not null`,
      [...stateKey(tenant, table), report.status, report.progress, report.rowsRepaired, report.error ?? null],
    );
    return this.read(pool, tenant, table);
  }

  /** State rows of one client/database or all, for the admin listing. */
  async list(pool: pg.Pool, clientId?: string, databaseId?: string): Promise<ListedState[]> {
    const { rows } = await pool.query<StateRow & { client_id: string; database_id: string; schema_name: string; table_name: string }>(
      /* sql */ `
      select client_id, database_id::text, schema_name, table_name, ${STATE_COLUMNS} from tidemark.table_state
       where ($1::text is null or client_id = $1::text) and ($2::uuid is null or database_id = $2::uuid)
       order by schema_name, table_name`,
      [clientId ?? null, databaseId ?? null],
    );
    return rows.map((s) => ({
      clientId: s.client_id,
      databaseId: s.database_id,
      summary: toSummary({ schema: s.schema_name, name: s.table_name }, s),
      updatedAt: s.updated_at,
    }));
  }
}
