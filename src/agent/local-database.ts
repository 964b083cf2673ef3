/**
 * The agent's only access to the local (source) database: the catalog, tracking installation, read
 * snapshots that stream rows as COPY text, manifests, and tidemark's own state in schema `tidemark`
 * (agent id, per-table state, batch history, quarantine).
 */
import { randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';

import type pg from 'pg';
import copyStreams from 'pg-copy-streams';

import { ErrorCode, TidemarkError } from '../shared/errors.js';
import { ident, PINNED_SETTINGS_SQL, qualified, type SqlType, withTransaction, wrapPgError } from '../shared/pg.js';
import {
  type Bound,
  type ColumnSpec,
  formatTableName,
  type KeyRange,
  type ManifestRequest,
  type ManifestResponse,
  type TableDeclaration,
  type TableName,
  VERSION_COLUMN,
} from '../shared/protocol.js';
import {
  columnListSql,
  keyColumnSql,
  keyTextSql,
  manifestQuery,
  manifestResponse,
  orderSql,
  positionalBinder,
  type RowShape,
  rangeSql,
} from '../shared/row-shape.js';

export interface TrackOptions {
  /** Key columns when the table has no primary key (they must be unique and not null). */
  keyColumns?: string[] | undefined;
  /** A timestamp column bumped on every write (e.g. updated_at); lag in seconds is measured from it. */
  modifiedColumn?: string | undefined;
}

/** A tracked table, resolved from the catalog. */
export interface LocalTable {
  name: TableName;
  shape: RowShape;
  declaration: TableDeclaration;
  modifiedColumn: string | null;
}

export interface Snapshot {
  /** Every version below xmin is settled (committed or aborted). */
  xmin: string;
  xmax: string;
  xip: string[];
}

export interface BatchRecord {
  rows: number;
  bytes: number;
  durationSeconds: number;
  outcome: 'ok' | 'failed' | 'rejected';
  errorClass: string | null;
}

export interface QuarantinedRow {
  key: string[];
  version: string;
  error: string;
  attempts: number;
  nextRetryAt: Date;
}

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

const STATE_SCHEMA_SQL = /* sql */ `
  create schema if not exists tidemark;
  create or replace function tidemark.stamp_version() returns trigger language plpgsql as $fn$
  begin
    -- The writing transaction's 64-bit id: versions order by transaction start (DESIGN.md, Row versions).
    new.tidemark_version := pg_current_xact_id()::text::bigint;
    return new;
  end
  $fn$;
  create table if not exists tidemark.tracked_table (
    schema_name text not null,
    table_name text not null,
    key_columns text[],
    modified_column text,
    tracked_at timestamptz not null default now(),
    primary key (schema_name, table_name)
  );
  create table if not exists tidemark.agent (
    singleton boolean primary key default true check (singleton),
    agent_id uuid not null
  );
  create table if not exists tidemark.table_state (
    schema_name text not null,
    table_name text not null,
    last_delete_count bigint,
    last_stats_identity text,
    verify_cursor jsonb,
    verify_pass_started_at timestamptz,
    verify_rows_done bigint not null default 0,
    last_success_at timestamptz,
    primary key (schema_name, table_name)
  );
  alter table tidemark.table_state add column if not exists last_success_at timestamptz;
  alter table tidemark.table_state add column if not exists upload_resume jsonb;
  create table if not exists tidemark.batch_history (
    id bigint generated always as identity primary key,
    schema_name text not null,
    table_name text not null,
    finished_at timestamptz not null default now(),
    rows int not null,
    bytes bigint not null,
    duration_seconds double precision not null,
    outcome text not null,
    error_class text
  );
  create index if not exists batch_history_table on tidemark.batch_history (schema_name, table_name, id);
  create table if not exists tidemark.quarantine (
    schema_name text not null,
    table_name text not null,
    key_text text[] not null,
    version bigint not null,
    error text not null,
    attempts int not null default 1,
    first_failed_at timestamptz not null default now(),
    next_retry_at timestamptz not null,
    primary key (schema_name, table_name, key_text)
  );`;

/** History rows kept per table; older ones are pruned. */
const HISTORY_KEEP = 500;

export class PgLocalDatabase {
  constructor(private readonly pool: pg.Pool) {}

  async installStateSchema(): Promise<void> {
    await withTransaction(this.pool, async (c) => {
      await c.query(/* sql */ `select pg_advisory_xact_lock(hashtext('tidemark.install'))`);
      await c.query(STATE_SCHEMA_SQL);
    });
  }

  /** Resolves `schema.table` (or `table` on the search_path) in the catalog. */
  async resolveTable(text: string): Promise<{ oid: number; name: TableName }> {
    const { rows } = await this.pool.query<{ oid: number; nspname: string; relname: string; relkind: string }>(
      /* sql */ `select c.oid::int as oid, n.nspname, c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass($1::text)`,
      [text],
    );
    const row = rows[0];
    if (!row || !['r', 'p'].includes(row.relkind))
      throw new TidemarkError(ErrorCode.SOURCE_TABLE_MISSING, `table ${text} does not exist in the local database`);
    return { oid: row.oid, name: { schema: row.nspname, name: row.relname } };
  }

  private async primaryKey(oid: number): Promise<string[]> {
    const { rows } = await this.pool.query<{ attname: string }>(
      /* sql */ `
      select a.attname from pg_index i
        join lateral unnest(i.indkey) with ordinality as k(attnum, ord) on true
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
       where i.indrelid = $1::oid and i.indisprimary order by k.ord`,
      [oid],
    );
    return rows.map((r) => r.attname);
  }

  /**
   * Installs tracking, idempotently: the version column (no rewrite: a constant default), the
   * trigger that stamps it, the (version, key) index (built concurrently, so writes go on), and the
   * table's row in tidemark.tracked_table.
   */
  async track(text: string, options: TrackOptions = {}): Promise<LocalTable> {
    await this.installStateSchema();
    const { oid, name } = await this.resolveTable(text);
    const label = formatTableName(name);
    if (name.schema === 'tidemark') throw new TidemarkError(ErrorCode.SOURCE_TABLE_MISSING, `tables in schema tidemark cannot be tracked`);
    const pk = await this.primaryKey(oid);
    const keyColumns = options.keyColumns?.length ? options.keyColumns : pk;
    if (keyColumns.length === 0)
      throw new TidemarkError(
        ErrorCode.SOURCE_TABLE_NO_KEY,
        `table ${label} has no primary key; add one, or name unique not-null key columns with --key-columns`,
      );
    const columns = await this.columns(oid);
    for (const k of [...keyColumns, ...(options.modifiedColumn ? [options.modifiedColumn] : [])])
      if (!columns.some((c) => c.name === k)) throw new TidemarkError(ErrorCode.CONFIG_INVALID, `table ${label} has no column ${k}`);
    const t = qualified(name.schema, name.name);
    const collatable = await this.collatable(oid, keyColumns);
    const shape: RowShape = { table: t, columns: [], keyColumns, collatableKeys: collatable };
    try {
      await withTransaction(this.pool, async (c) => {
        await c.query(/* sql */ `alter table ${t} add column if not exists ${ident(VERSION_COLUMN)} bigint not null default 0`);
        // create or replace trigger: PostgreSQL 14+
        await c.query(
          /* sql */ `create or replace trigger tidemark_stamp_version before insert or update on ${t} for each row execute function tidemark.stamp_version()`,
        );
        await c.query(
          /* sql */ `insert into tidemark.tracked_table (schema_name, table_name, key_columns, modified_column) values ($1::text, $2::text, $3::text[], $4::text)
           on conflict (schema_name, table_name) do update set key_columns = excluded.key_columns, modified_column = excluded.modified_column`,
          [name.schema, name.name, options.keyColumns?.length ? keyColumns : null, options.modifiedColumn ?? null],
        );
      });
      const indexName = `${name.name.slice(0, 40)}_tidemark_version_idx`;
      const existing = await this.pool.query<{ valid: boolean }>(
        /* sql */ `select i.indisvalid as valid from pg_index i join pg_class c on c.oid = i.indexrelid where i.indrelid = $1::oid and c.relname = $2::text`,
        [oid, indexName],
      );
      if (existing.rows[0] && !existing.rows[0].valid) await this.pool.query(/* sql */ `drop index concurrently ${qualified(name.schema, indexName)}`); // left by an interrupted build
      if (!existing.rows[0]?.valid) await this.pool.query(/* sql */ `create index concurrently if not exists ${ident(indexName)} on ${t} (${orderSql(shape)})`);
    } catch (e) {
      throw wrapPgError(e, `tracking ${label} failed`);
    }
    return this.describe(name);
  }

  async untrack(text: string): Promise<TableName> {
    const { name } = await this.resolveTable(text);
    const t = qualified(name.schema, name.name);
    await withTransaction(this.pool, async (c) => {
      await c.query(/* sql */ `drop trigger if exists tidemark_stamp_version on ${t}`);
      await c.query(/* sql */ `delete from tidemark.tracked_table where schema_name = $1::text and table_name = $2::text`, [name.schema, name.name]);
    });
    return name;
  }

  private async columns(oid: number): Promise<ColumnSpec[]> {
    const { rows } = await this.pool.query<{ name: string; type: string; not_null: boolean }>(
      /* sql */ `select attname as name, format_type(atttypid, atttypmod) as type, attnotnull as not_null from pg_attribute
        where attrelid = $1::oid and attnum > 0 and not attisdropped order by attnum`,
      [oid],
    );
    return rows.map((r) => ({ name: r.name, type: r.type, notNull: r.not_null }));
  }

  private async collatable(oid: number, keyColumns: readonly string[]): Promise<Set<string>> {
    const { rows } = await this.pool.query<{ attname: string }>(
      /* sql */ `select attname from pg_attribute where attrelid = $1::oid and attname = any($2::text[]) and attcollation <> 0`,
      [oid, keyColumns],
    );
    return new Set(rows.map((r) => r.attname));
  }

  /** The tracked tables, in name order. */
  async listTracked(): Promise<TableName[]> {
    const exists = await this.pool.query(/* sql */ `select to_regclass('tidemark.tracked_table') is not null as ok`);
    if (!(exists.rows[0] as { ok: boolean }).ok) return [];
    const { rows } = await this.pool.query<{ schema_name: string; table_name: string }>(
      /* sql */ `select schema_name, table_name from tidemark.tracked_table order by schema_name, table_name`,
    );
    return rows.map((r) => ({ schema: r.schema_name, name: r.table_name }));
  }

  /** Reads a tracked table's shape from the catalog: wire column order is version, key, others. */
  async describe(name: TableName): Promise<LocalTable> {
    const label = formatTableName(name);
    const { rows } = await this.pool.query<{ key_columns: string[] | null; modified_column: string | null }>(
      /* sql */ `select key_columns, modified_column from tidemark.tracked_table where schema_name = $1::text and table_name = $2::text`,
      [name.schema, name.name],
    );
    const tracked = rows[0];
    if (!tracked) throw new TidemarkError(ErrorCode.SOURCE_TABLE_NOT_TRACKED, `table ${label} is not tracked; run tidemark track ${label}`);
    const { oid } = await this.resolveTable(qualified(name.schema, name.name));
    const keyColumns = tracked.key_columns ?? (await this.primaryKey(oid));
    if (keyColumns.length === 0) throw new TidemarkError(ErrorCode.SOURCE_TABLE_NO_KEY, `table ${label} has no primary key any more`);
    const all = await this.columns(oid);
    const version = all.find((c) => c.name === VERSION_COLUMN);
    if (!version) throw new TidemarkError(ErrorCode.SOURCE_TABLE_NOT_TRACKED, `table ${label} lost its ${VERSION_COLUMN} column; run tidemark track again`);
    const byName = new Map(all.map((c) => [c.name, c]));
    const keys = keyColumns.map((k) => {
      const c = byName.get(k);
      if (!c) throw new TidemarkError(ErrorCode.SOURCE_TABLE_NO_KEY, `key column ${k} of ${label} does not exist`);
      return { ...c, notNull: true };
    });
    const columns = [version, ...keys, ...all.filter((c) => c.name !== VERSION_COLUMN && !keyColumns.includes(c.name))];
    const shape: RowShape = {
      table: qualified(name.schema, name.name),
      columns,
      keyColumns,
      collatableKeys: await this.collatable(oid, keyColumns),
    };
    return { name, shape, declaration: { columns, keyColumns }, modifiedColumn: tracked.modified_column };
  }

  /** A persistent id for this database's agent, so a restarted agent keeps its server lease. */
  async agentId(): Promise<string> {
    const { rows } = await this.pool.query<{ agent_id: string }>(
      /* sql */ `with ins as (insert into tidemark.agent (agent_id) values ($1::uuid) on conflict do nothing returning agent_id::text)
       select agent_id from ins union all select agent_id::text from tidemark.agent limit 1`,
      [randomUUID()],
    );
    return (rows[0] as { agent_id: string }).agent_id;
  }

  /**
   * Holds a session advisory lock for as long as the returned client lives: one agent per local
   * database. Returns null if another agent holds it.
   */
  async lockAgent(): Promise<{ release: () => Promise<void> } | null> {
    const client = await this.pool.connect();
    const { rows } = await client.query<{ ok: boolean }>(/* sql */ `select pg_try_advisory_lock(hashtext('tidemark.agent')) as ok`);
    if (!rows[0]?.ok) {
      client.release();
      return null;
    }
    return {
      release: async () => {
        try {
          await client.query(/* sql */ `select pg_advisory_unlock(hashtext('tidemark.agent'))`);
        } finally {
          client.release();
        }
      },
    };
  }

  /** Opens a REPEATABLE READ, READ ONLY snapshot of the database for one table's run. */
  async openSnapshot(table: LocalTable): Promise<LocalSnapshot> {
    const client = await this.pool.connect();
    try {
      await client.query('begin isolation level repeatable read read only');
      const { rows } = await client.query<{ xmin: string; xmax: string; xip: string[] }>(
        /* sql */ `select pg_snapshot_xmin(s)::text as xmin, pg_snapshot_xmax(s)::text as xmax,
                coalesce(array(select x::text from pg_snapshot_xip(s) as x order by x::text::bigint), '{}') as xip
           from pg_current_snapshot() as s`,
      );
      await client.query(PINNED_SETTINGS_SQL);
      return new LocalSnapshot(client, table, rows[0] as Snapshot);
    } catch (e) {
      client.release(true);
      throw wrapPgError(e, `opening a snapshot of ${formatTableName(table.name)} failed`);
    }
  }

  /** Delete counter and the identity of the statistics (reset time, relfilenode): a change triggers a count check. */
  async deleteCounter(table: TableName): Promise<{ deletes: string; identity: string }> {
    const { rows } = await this.pool.query<{ deletes: string; identity: string }>(
      /* sql */ `select coalesce(s.n_tup_del, 0)::text as deletes,
              concat_ws('/', pg_relation_filenode(c.oid), (select stats_reset::text from pg_stat_database where datname = current_database())) as identity
         from pg_class c left join pg_stat_user_tables s on s.relid = c.oid where c.oid = to_regclass($1::text)`,
      [qualified(table.schema, table.name)],
    );
    return rows[0] ?? { deletes: '0', identity: '' };
  }

  // --- tidemark state ------------------------------------------------------------------------

  async tableState(table: TableName): Promise<TableStateRow> {
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

  async saveTableState(table: TableName, s: Partial<TableStateRow>): Promise<void> {
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

  async recordBatch(table: TableName, b: BatchRecord): Promise<void> {
    await this.pool.query(
      /* sql */ `insert into tidemark.batch_history (schema_name, table_name, rows, bytes, duration_seconds, outcome, error_class)
       values ($1::text, $2::text, $3::int, $4::bigint, $5::double precision, $6::text, $7::text)`,
      [table.schema, table.name, b.rows, b.bytes, b.durationSeconds, b.outcome, b.errorClass],
    );
  }

  /** The most recent batches of a table, newest first. */
  async recentBatches(table: TableName, limit: number): Promise<BatchRecord[]> {
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

  async pruneHistory(table: TableName): Promise<void> {
    await this.pool.query(
      /* sql */ `delete from tidemark.batch_history where schema_name = $1::text and table_name = $2::text
          and id < (select min(id) from (select id from tidemark.batch_history where schema_name = $1::text and table_name = $2::text order by id desc limit $3::int) k)`,
      [table.schema, table.name, HISTORY_KEEP],
    );
  }

  async quarantine(
    table: TableName,
    rows: { key: string[]; version: string }[],
    error: string,
    retryBaseSeconds: number,
    retryMaxSeconds: number,
  ): Promise<void> {
    if (rows.length === 0) return;
    await this.pool.query(
      /* sql */ `
      insert into tidemark.quarantine as q (schema_name, table_name, key_text, version, error, next_retry_at)
      select $1::text, $2::text, array(select jsonb_array_elements_text(k)), v, $5::text, now() + make_interval(secs => $6::double precision)
        from unnest($3::jsonb[], $4::bigint[]) as r(k, v)
      on conflict (schema_name, table_name, key_text) do update set
        version = excluded.version, error = excluded.error, attempts = q.attempts + 1,
        next_retry_at = now() + make_interval(secs => least($7::double precision, $6::double precision * power(2, q.attempts)))`,
      [table.schema, table.name, rows.map((r) => JSON.stringify(r.key)), rows.map((r) => r.version), error.slice(0, 2000), retryBaseSeconds, retryMaxSeconds],
    );
  }

  async quarantined(table: TableName, onlyDue: boolean): Promise<QuarantinedRow[]> {
    const { rows } = await this.pool.query<{ key_text: string[]; version: string; error: string; attempts: number; next_retry_at: Date }>(
      /* sql */ `select key_text, version::text, error, attempts, next_retry_at from tidemark.quarantine
        where schema_name = $1::text and table_name = $2::text and (not $3::boolean or next_retry_at <= now()) order by first_failed_at, key_text limit 10000`,
      [table.schema, table.name, onlyDue],
    );
    return rows.map((r) => ({ key: r.key_text, version: r.version, error: r.error, attempts: r.attempts, nextRetryAt: r.next_retry_at }));
  }

  async quarantineCount(table: TableName): Promise<number> {
    const exists = await this.pool.query(/* sql */ `select to_regclass('tidemark.quarantine') is not null as ok`);
    if (!(exists.rows[0] as { ok: boolean }).ok) return 0;
    const { rows } = await this.pool.query<{ n: string }>(
      /* sql */ `select count(*)::text as n from tidemark.quarantine where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    return Number(rows[0]?.n ?? 0);
  }

  async releaseQuarantine(table: TableName, keys: string[][]): Promise<void> {
    if (keys.length === 0) return;
    await this.pool.query(
      /* sql */ `delete from tidemark.quarantine q using unnest($3::jsonb[]) as r(k)
        where q.schema_name = $1::text and q.table_name = $2::text and q.key_text = array(select jsonb_array_elements_text(r.k))`,
      [table.schema, table.name, keys.map((k) => JSON.stringify(k))],
    );
  }
}

/**
 * One table's read snapshot (REPEATABLE READ, READ ONLY) on a dedicated connection. Everything a
 * run reads comes from it, so the run compares one consistent local state with the remote.
 */
export class LocalSnapshot {
  private closed = false;
  constructor(
    private readonly client: pg.PoolClient,
    readonly table: LocalTable,
    readonly snapshot: Snapshot,
  ) {}

  async stats(): Promise<{ maxVersion: string | null; maxModifiedSince: (since: string) => Promise<string | null> }> {
    const { shape } = this.table;
    const { rows } = await this.client.query<{ v: string | null }>(/* sql */ `select max(${ident(VERSION_COLUMN)})::text as v from ${shape.table}`);
    return {
      maxVersion: rows[0]?.v ?? null,
      maxModifiedSince: async (since: string) => {
        if (!this.table.modifiedColumn) return null;
        const r = await this.client.query<{ m: Date | null }>(
          /* sql */ `select max(${ident(this.table.modifiedColumn)})::timestamptz as m from ${shape.table} where ${ident(VERSION_COLUMN)} >= $1::bigint`,
          [since],
        );
        return r.rows[0]?.m?.toISOString() ?? null;
      },
    };
  }

  async count(range: KeyRange = { lower: null, upper: null }): Promise<number> {
    const values: unknown[] = [];
    const cond = rangeSql(this.table.shape, range, positionalBinder(values));
    const { rows } = await this.client.query<{ n: string }>(/* sql */ `select count(*)::text as n from ${this.table.shape.table} where ${cond}`, values);
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * Streams the rows of the given ranges as COPY text, in (version, key) order, columns in wire order.
   * COPY takes no bind parameters: values are staged with set_config and read back with current_setting.
   */
  async copyOut(range: KeyRange): Promise<Readable> {
    const staged: [string, string][] = [];
    const cond = rangeSql(this.table.shape, range, (value, type: SqlType) => {
      const name = `tidemark.p${staged.length}`;
      staged.push([name, value]);
      return `current_setting('${name}')::${type}`;
    });
    for (const [name, value] of staged) await this.client.query(/* sql */ `select set_config($1::text, $2::text, true)`, [name, value]);
    const { shape } = this.table;
    return this.client.query(
      copyStreams.to(/* sql */ `copy (select ${columnListSql(shape)} from ${shape.table} where ${cond} order by ${orderSql(shape)}) to stdout`),
    );
  }

  /**
   * Join driven by the key list (primary-key lookups), never a scan of the table:
   * `from jsonb_array_elements(keys) join table on key = ...`.
   */
  private keyJoinSql(keysSql: string): string {
    const { shape } = this.table;
    const matches = shape.keyColumns
      .map((k, i) => {
        const type = shape.columns.find((c) => c.name === k)?.type as SqlType; // from pg_catalog format_type
        return `t.${ident(k)} = (tidemark_keys.tidemark_key->>${i})::${type}`;
      })
      .join(' and ');
    return `(select distinct tidemark_key from jsonb_array_elements(${keysSql}) as e(tidemark_key)) as tidemark_keys join ${shape.table} t on ${matches}`;
  }

  /** Streams the rows with the given keys (text forms) as COPY text, in (version, key) order. */
  async copyOutKeys(keys: string[][]): Promise<Readable> {
    const { shape } = this.table;
    await this.client.query(/* sql */ `select set_config('tidemark.keys', $1::text, true)`, [JSON.stringify(keys)]);
    const order = [ident(VERSION_COLUMN), ...shape.keyColumns.map((k) => keyColumnSql(shape, k))].map((c) => `t.${c}`).join(', ');
    return this.client.query(
      copyStreams.to(
        /* sql */ `copy (select ${shape.columns.map((c) => `t.${ident(c.name)}`).join(', ')}
          from ${this.keyJoinSql(`current_setting('tidemark.keys')::jsonb`)} order by ${order}) to stdout`,
      ),
    );
  }

  /** The current version of each of these keys that exists in the snapshot, by JSON of the key. */
  async versionsByKeys(keys: string[][]): Promise<Map<string, string>> {
    if (keys.length === 0) return new Map();
    const { shape } = this.table;
    const keyText = `array[${shape.keyColumns.map((k) => `t.${ident(k)}::text`).join(', ')}]`;
    const { rows } = await this.client.query<{ k: string[]; v: string }>(
      /* sql */ `select ${keyText} as k, t.${ident(VERSION_COLUMN)}::text as v from ${this.keyJoinSql('$1::jsonb')}`,
      [JSON.stringify(keys)],
    );
    return new Map(rows.map((r) => [JSON.stringify(r.k), r.v]));
  }

  /** The (version, key) of the row `n` rows into `range` (0-based), or null when the range has no more rows. */
  async nthBound(range: KeyRange, n: number): Promise<Bound | null> {
    const { shape } = this.table;
    const values: unknown[] = [];
    const cond = rangeSql(shape, range, positionalBinder(values));
    values.push(n + 1);
    // An index-only scan that stops after n + 1 rows; the last of them is the bound.
    const { rows } = await this.client.query<{ v: string; k: string[]; position: string }>(
      /* sql */ `select v, k, rn::text as position from (
         select ${ident(VERSION_COLUMN)}::text as v, ${keyTextSql(shape)} as k, row_number() over () as rn
           from (select * from ${shape.table} where ${cond} order by ${orderSql(shape)} limit $${values.length}::bigint) t) s
        order by s.rn desc limit 1`,
      values,
    );
    const row = rows[0];
    return row && Number(row.position) === n + 1 ? { version: row.v, key: row.k } : null;
  }

  /** The planner's estimate of the table's rows (pg_class.reltuples), for sizing verification slices. */
  async estimatedRows(): Promise<number> {
    const { rows } = await this.client.query<{ n: number }>(
      /* sql */ `select greatest(reltuples, 0)::float8 as n from pg_class where oid = to_regclass($1::text)`,
      [this.table.shape.table],
    );
    return rows[0]?.n ?? 0;
  }

  /**
   * Whether rows can be hashed with `hash_record_extended` here: PostgreSQL 14+ and an extended hash
   * function for every column type (probed on a row of typed NULLs; types come from pg_catalog).
   */
  async recordHashing(): Promise<boolean> {
    const { rows } = await this.client.query<{ v: number }>(/* sql */ `select current_setting('server_version_num')::int as v`);
    if ((rows[0]?.v ?? 0) < 140000) return false;
    const nulls = this.table.shape.columns.map((c) => `null::${c.type}`).join(', ');
    await this.client.query('savepoint tidemark_probe');
    try {
      await this.client.query(/* sql */ `select hash_record_extended(row(${nulls}), 0)`);
      await this.client.query('release savepoint tidemark_probe');
      return true;
    } catch {
      await this.client.query('rollback to savepoint tidemark_probe');
      return false;
    }
  }

  /** Answers a manifest request from the snapshot, with the very SQL the server runs. */
  async manifest(request: ManifestRequest): Promise<ManifestResponse> {
    const { rows } = await this.client.query<Record<string, unknown>>(manifestQuery(this.table.shape, request, [], 'true'));
    return manifestResponse(request, rows);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.query('rollback');
      this.client.release();
    } catch {
      this.client.release(true);
    }
  }
}
