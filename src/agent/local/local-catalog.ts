/**
 * The local catalog: resolves table names in pg_catalog, reads a tracked table's shape (key, wire
 * column order) from pg_catalog and `tidemark.tracked_table`, lists the tracked tables, and reads
 * the write counters that tell a run to compare counts. Reads only.
 */
import type pg from 'pg';

import { ErrorCode, TidemarkError } from '../../shared/errors.js';
import { PINNED_SETTINGS_SQL, qualified, withTransaction } from '../../shared/pg.js';
import { type ColumnSpec, formatTableName, type TableDeclaration, type TableName, VERSION_COLUMN } from '../../shared/protocol.js';
import type { RowShape } from '../../shared/row-shape.js';
import { stateTableExists } from './state-schema.js';

/**
 * The relations that hold a table's rows (`$1`: its qualified name): the table itself, or the leaf
 * partitions of a partitioned one (pg_partition_tree lists nothing for a plain table).
 */
export const LEAVES_SQL = /* sql */ `
  select p.relid::oid as oid from pg_partition_tree(to_regclass($1::text)) p where p.isleaf
  union select c.oid from pg_class c where c.oid = to_regclass($1::text) and c.relkind = 'r'`;

/** Write counters of a table from the statistics, as decimal strings (bigints). */
export interface ChangeCounters {
  inserts: string;
  deletes: string;
  identity: string;
}

/** A tracked table, resolved from the catalog. */
export interface LocalTable {
  name: TableName;
  shape: RowShape;
  declaration: TableDeclaration;
  modifiedColumn: string | null;
}

export class PgLocalCatalog {
  constructor(private readonly pool: pg.Pool) {}

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

  async primaryKey(oid: number): Promise<string[]> {
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
   * The columns in attnum order: `format_type()` (which drops the collation) and, where it is not
   * the type's default, the column's collation, which the replica column gets too.
   */
  async columns(oid: number): Promise<ColumnSpec[]> {
    const { rows } = await this.pool.query<{ name: string; type: string; not_null: boolean; coll_schema: string | null; coll_name: string | null }>(
      /* sql */ `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as not_null,
              cn.nspname as coll_schema, co.collname as coll_name
         from pg_attribute a join pg_type t on t.oid = a.atttypid
         left join pg_collation co on co.oid = a.attcollation and a.attcollation <> t.typcollation
         left join pg_namespace cn on cn.oid = co.collnamespace
        where a.attrelid = $1::oid and a.attnum > 0 and not a.attisdropped order by a.attnum`,
      [oid],
    );
    return rows.map((r) => ({
      name: r.name,
      type: r.type,
      notNull: r.not_null,
      ...(r.coll_schema !== null && r.coll_name !== null ? { collation: { schema: r.coll_schema, name: r.coll_name } } : {}),
    }));
  }

  async collatable(oid: number, keyColumns: readonly string[]): Promise<Set<string>> {
    const { rows } = await this.pool.query<{ attname: string }>(
      /* sql */ `select attname from pg_attribute where attrelid = $1::oid and attname = any($2::text[]) and attcollation <> 0`,
      [oid, keyColumns],
    );
    return new Set(rows.map((r) => r.attname));
  }

  /**
   * How columns came to hold their values, for columns just added (schema-change.ts): whether the
   * column has a default, and the value its stored rows hold without a rewrite (`atthasmissing`,
   * a constant default), as canonical text under the pinned output settings. Reads only.
   */
  async addedColumns(table: TableName, names: readonly string[]): Promise<Map<string, { hasDefault: boolean; missing: string | null }>> {
    return withTransaction(this.pool, async (client) => {
      await client.query(PINNED_SETTINGS_SQL);
      const { rows } = await client.query<{ name: string; has_default: boolean; missing: string | null }>(
        /* sql */ `select a.attname as name, a.atthasdef as has_default,
                case when a.atthasmissing and a.attndims = 0 then (a.attmissingval::text::text[])[1] end as missing
           from pg_attribute a
          where a.attrelid = to_regclass($1::text) and a.attname = any($2::text[]) and a.attnum > 0 and not a.attisdropped`,
        [qualified(table.schema, table.name), names],
      );
      return new Map(rows.map((r) => [r.name, { hasDefault: r.has_default, missing: r.missing }]));
    });
  }

  /** The tracked tables, in name order. */
  async listTracked(): Promise<TableName[]> {
    if (!(await stateTableExists(this.pool, 'tracked_table'))) return [];
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

  /**
   * The table's write counters from the statistics (summed over its partitions, for a partitioned
   * table): inserts and deletes, and the identity of those statistics (the partitions and their
   * files, the database's stats reset time). A change of deletes or identity, or fewer inserts than
   * the server took, makes a run compare counts. O(partitions), never a scan.
   */
  async changeCounters(table: TableName): Promise<ChangeCounters> {
    const { rows } = await this.pool.query<ChangeCounters>(
      /* sql */ `with leaves as (${LEAVES_SQL})
       select coalesce(sum(s.n_tup_ins), 0)::text as inserts, coalesce(sum(s.n_tup_del), 0)::text as deletes,
              concat_ws('/', md5(string_agg(l.oid::text || ':' || coalesce(pg_relation_filenode(l.oid)::text, ''), ',' order by l.oid)),
                        (select stats_reset::text from pg_stat_database where datname = current_database())) as identity
         from leaves l left join pg_stat_user_tables s on s.relid = l.oid`,
      [qualified(table.schema, table.name)],
    );
    return rows[0] ?? { inserts: '0', deletes: '0', identity: '' };
  }
}
