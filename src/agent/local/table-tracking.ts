/**
 * Tracking DDL on the user's tables: `track` adds the version column, the (version, key) index
 * and the trigger that stamps it, and records the table in `tidemark.tracked_table`; all or
 * nothing: a failure takes back what it added. A partitioned table is tracked as one table (its
 * partitions, present and future, get the column, index and trigger from it). `untrack` drops the
 * trigger and the record (the column and index stay, so re-tracking is cheap).
 */
import type pg from 'pg';

import { ErrorCode, TidemarkError, toError } from '../../shared/errors.js';
import { ident, identList, qualified, type SqlIdent, withTransaction, wrapPgError } from '../../shared/pg.js';
import { formatTableName, type TableName, VERSION_COLUMN } from '../../shared/protocol.js';
import { orderSql, type RowShape } from '../../shared/row-shape.js';
import { type LocalTable, PgLocalCatalog } from './local-catalog.js';
import { installStateSchema } from './state-schema.js';
import { type CreatedIndexes, ensureVersionIndex } from './version-index.js';

export interface TrackOptions {
  /** Key columns when the table has no primary key (they must be unique and not null). */
  keyColumns?: string[] | undefined;
  /** A timestamp column bumped on every write (e.g. updated_at); lag in seconds is measured from it. */
  modifiedColumn?: string | undefined;
}

/** Rows re-stamped per transaction by rebaseFutureVersions. */
const REBASE_BATCH = 5000;

export class PgTableTracking {
  private readonly catalog: PgLocalCatalog;

  constructor(private readonly pool: pg.Pool) {
    this.catalog = new PgLocalCatalog(pool);
  }

  /**
   * Installs tracking, idempotently: the version column (no rewrite: a constant default), the
   * (version, key) index (built concurrently, so writes go on), the trigger that stamps it (enabled
   * ALWAYS) and the table's row in tidemark.tracked_table. A failure leaves the table as it was.
   */
  async track(text: string, options: TrackOptions = {}): Promise<LocalTable> {
    await installStateSchema(this.pool);
    const { oid, name } = await this.catalog.resolveTable(text);
    const label = formatTableName(name);
    if (name.schema === 'tidemark') throw new TidemarkError(ErrorCode.SOURCE_TABLE_MISSING, `tables in schema tidemark cannot be tracked`);
    const pk = await this.catalog.primaryKey(oid);
    const keyColumns = options.keyColumns?.length ? options.keyColumns : pk;
    if (keyColumns.length === 0)
      throw new TidemarkError(
        ErrorCode.SOURCE_TABLE_NO_KEY,
        `table ${label} has no primary key; add one, or name unique not-null key columns with --key-columns`,
      );
    const columns = await this.catalog.columns(oid);
    for (const k of [...keyColumns, ...(options.modifiedColumn ? [options.modifiedColumn] : [])])
      if (!columns.some((c) => c.name === k)) throw new TidemarkError(ErrorCode.CONFIG_INVALID, `table ${label} has no column ${k}`);
    const t = qualified(name.schema, name.name);
    const collatable = await this.catalog.collatable(oid, keyColumns);
    const shape: RowShape = { table: t, columns: [], keyColumns, collatableKeys: collatable };
    const before = await this.trackingState(oid);
    const created: CreatedIndexes = { indexes: [] };
    try {
      // 1. The column (a constant default: no rewrite), committed before an index can be built on it.
      if (!before.column) await this.pool.query(/* sql */ `alter table ${t} add column if not exists ${ident(VERSION_COLUMN)} bigint not null default 0`);
      // 2. The index, online (partitions one by one: version-index.ts).
      await ensureVersionIndex(this.pool, oid, orderSql(shape), created);
      // 3. The trigger and the record, together: the table counts as tracked only when all is in place.
      await withTransaction(this.pool, async (c) => {
        // create or replace trigger: PostgreSQL 14+; on a partitioned table it is cloned to every partition, present and future.
        await c.query(
          /* sql */ `create or replace trigger tidemark_stamp_version before insert or update on ${t} for each row execute function tidemark.stamp_version()`,
        );
        // ALWAYS: also in sessions with session_replication_role = replica (logical replication, restore tools).
        await c.query(/* sql */ `alter table ${t} enable always trigger tidemark_stamp_version`);
        await c.query(
          /* sql */ `insert into tidemark.tracked_table (schema_name, table_name, key_columns, modified_column) values ($1::text, $2::text, $3::text[], $4::text)
           on conflict (schema_name, table_name) do update set key_columns = excluded.key_columns, modified_column = excluded.modified_column`,
          [name.schema, name.name, options.keyColumns?.length ? keyColumns : null, options.modifiedColumn ?? null],
        );
      });
    } catch (e) {
      await this.undo(t, before, created).catch((undoError: unknown) => {
        throw wrapPgError(undoError, `tracking ${label} failed (${toError(e).message}), and undoing it failed too; run tidemark untrack ${label}`);
      });
      throw wrapPgError(e, `tracking ${label} failed; the table is as it was`);
    }
    return this.catalog.describe(name);
  }

  /** What of the tracking a table has before `track` touches it. */
  private async trackingState(oid: number): Promise<{ column: boolean; trigger: boolean }> {
    const { rows } = await this.pool.query<{ column: boolean; trigger: boolean }>(
      /* sql */ `select exists (select from pg_attribute where attrelid = $1::oid and attname = $2::text and not attisdropped) as column,
              exists (select from pg_trigger where tgrelid = $1::oid and tgname = 'tidemark_stamp_version') as trigger`,
      [oid, VERSION_COLUMN],
    );
    return rows[0] ?? { column: false, trigger: false };
  }

  /** Takes back what a failed `track` added: the indexes it built, and the column if it added it. */
  private async undo(t: SqlIdent, before: { column: boolean; trigger: boolean }, created: CreatedIndexes): Promise<void> {
    // Step 3 is one transaction: the trigger and the record are there whole or not at all.
    for (const index of created.indexes) await this.pool.query(/* sql */ `drop index if exists ${index}`);
    if (!before.column) await this.pool.query(/* sql */ `alter table ${t} drop column if exists ${ident(VERSION_COLUMN)}`);
  }

  /**
   * After a logical move to another cluster (pg_dump/pg_restore into a new initdb), rows carry
   * versions from the old cluster's transaction ids, above every id of this one: every run would
   * send them again, forever. Re-stamps those rows with the current transaction id, in batches of
   * REBASE_BATCH rows (each its own short transaction, so writers wait little); returns how many.
   * The check is one index probe: an idle run pays nothing more.
   */
  async rebaseFutureVersions(table: LocalTable): Promise<number> {
    const { shape } = table;
    const v = ident(VERSION_COLUMN);
    // pg_current_snapshot's xmax assigns no transaction id (pg_current_xact_id would, every run).
    const future = /* sql */ `${v} >= pg_snapshot_xmax(pg_current_snapshot())::text::bigint`;
    const probe = await this.pool.query(/* sql */ `select 1 from ${shape.table} where ${future} limit 1`);
    if (probe.rowCount === 0) return 0;
    const keys = identList(shape.keyColumns);
    let total = 0;
    for (;;) {
      const r = await this.pool.query(
        /* sql */ `update ${shape.table} set ${v} = pg_current_xact_id()::text::bigint
          where (${keys}) in (select ${keys} from ${shape.table} where ${future} limit ${REBASE_BATCH})`,
      );
      total += r.rowCount ?? 0;
      if ((r.rowCount ?? 0) < REBASE_BATCH) return total;
    }
  }

  async untrack(text: string): Promise<TableName> {
    const { name } = await this.catalog.resolveTable(text);
    const t = qualified(name.schema, name.name);
    await withTransaction(this.pool, async (c) => {
      await c.query(/* sql */ `drop trigger if exists tidemark_stamp_version on ${t}`);
      await c.query(/* sql */ `delete from tidemark.tracked_table where schema_name = $1::text and table_name = $2::text`, [name.schema, name.name]);
    });
    return name;
  }
}
