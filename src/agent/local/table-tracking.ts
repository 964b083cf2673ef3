/**
 * Tracking DDL on the user's tables: `track` adds the version column, the trigger that stamps it
 * and the (version, key) index, and records the table in `tidemark.tracked_table`; `untrack` drops
 * the trigger and the record (the column and index stay, so re-tracking is cheap).
 */
import type pg from 'pg';

import { ErrorCode, TidemarkError } from '../../shared/errors.js';
import { ident, qualified, withTransaction, wrapPgError } from '../../shared/pg.js';
import { formatTableName, type TableName, VERSION_COLUMN } from '../../shared/protocol.js';
import { orderSql, type RowShape } from '../../shared/row-shape.js';
import { type LocalTable, PgLocalCatalog } from './local-catalog.js';
import { installStateSchema } from './state-schema.js';

export interface TrackOptions {
  /** Key columns when the table has no primary key (they must be unique and not null). */
  keyColumns?: string[] | undefined;
  /** A timestamp column bumped on every write (e.g. updated_at); lag in seconds is measured from it. */
  modifiedColumn?: string | undefined;
}

export class PgTableTracking {
  private readonly catalog: PgLocalCatalog;

  constructor(private readonly pool: pg.Pool) {
    this.catalog = new PgLocalCatalog(pool);
  }

  /**
   * Installs tracking, idempotently: the version column (no rewrite: a constant default), the
   * trigger that stamps it, the (version, key) index (built concurrently, so writes go on), and the
   * table's row in tidemark.tracked_table.
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
    return this.catalog.describe(name);
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
