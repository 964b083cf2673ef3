/**
 * The admin's side of the shared catalog (issue 14 item 2; docs/security.md, The shared catalog):
 * the list of admitted tables, and admitting a table with its key. Admitting another key than the
 * replica has re-keys it: the rows of tenants on the former key leave the replica (their local
 * rows are untouched), those tenants are blocked with the reason, and once they declare the
 * admitted key they send their table again from the start.
 */
import type pg from 'pg';

import { ErrorCode, ProtocolError } from '../shared/errors.js';
import { ident, identList, qualified, sqlType, withTransaction } from '../shared/pg.js';
import { type ColumnSpec, formatTableName, type TableName, TENANT_CLIENT_COLUMN, TENANT_DATABASE_COLUMN, VERSION_COLUMN } from '../shared/protocol.js';
import { derivedName } from './replica-ddl.js';
import { keyColumnsOf } from './schema-evolution.js';
import { admit, alterReplica } from './schema-store.js';
import { enterTenant, tenantParams, tenantWhere } from './tenant-scope.js';

export interface AdmittedTable {
  table: string;
  keyColumns: ColumnSpec[];
  /** Admitted by a first declaration (replicaAdmission auto), not yet confirmed by the admin. */
  provisional: boolean;
  admittedAt: string;
  /** Databases that declared it, and those of them blocked. */
  tenants: number;
  blocked: number;
}

export async function listAdmitted(pool: pg.Pool): Promise<AdmittedTable[]> {
  const { rows } = await pool.query<{
    schema_name: string;
    table_name: string;
    key_columns: ColumnSpec[];
    provisional: boolean;
    admitted_at: Date;
    n: number;
    b: number;
  }>(
    /* sql */ `select a.schema_name, a.table_name, a.key_columns, a.provisional, a.admitted_at,
            (select count(*)::int from tidemark.tenant_table_shape s where s.schema_name = a.schema_name and s.table_name = a.table_name) as n,
            (select count(*)::int from tidemark.tenant_table_shape s where s.schema_name = a.schema_name and s.table_name = a.table_name and s.schema_state = 'blocked') as b
       from tidemark.admitted_table a order by a.schema_name, a.table_name`,
  );
  return rows.map((r) => ({
    table: formatTableName({ schema: r.schema_name, name: r.table_name }),
    keyColumns: r.key_columns,
    provisional: r.provisional,
    admittedAt: r.admitted_at.toISOString(),
    tenants: r.n,
    blocked: r.b,
  }));
}

const sameKey = (a: readonly ColumnSpec[], b: readonly ColumnSpec[]): boolean =>
  a.length === b.length && a.every((c, i) => c.name === b[i]?.name && c.type === b[i]?.type && (c.collation?.name ?? null) === (b[i]?.collation?.name ?? null));

/**
 * Admits `table` with `key` (confirmed, no longer provisional). `checkTypes` resolves the key's
 * types against the allow-list. Returns how many databases' rows left the replica (a re-key).
 */
export async function admitTable(
  pool: pg.Pool,
  table: TableName,
  key: ColumnSpec[],
  checkTypes: (client: pg.ClientBase, columns: ColumnSpec[]) => Promise<void>,
): Promise<{ rekeyed: number }> {
  if (key.length === 0 || key.some((c) => c.name === VERSION_COLUMN || c.name === TENANT_CLIENT_COLUMN || c.name === TENANT_DATABASE_COLUMN))
    throw new ProtocolError(ErrorCode.REQUEST_INVALID, 400, 'keyColumns must list 1 to 32 columns, none of them a tidemark column');
  const normal = key.map((c) => ({ name: c.name, type: c.type, notNull: true, ...(c.collation ? { collation: c.collation } : {}) }));
  return withTransaction(pool, async (client) => {
    await checkTypes(client, normal);
    await client.query(/* sql */ `select pg_advisory_xact_lock(hashtext('tidemark.declare'), hashtext($1::text))`, [formatTableName(table)]);
    const { rows } = await client.query<{ columns: ColumnSpec[]; key_columns: string[] }>(
      /* sql */ `select columns, key_columns from tidemark.replica_table where schema_name = $1::text and table_name = $2::text`,
      [table.schema, table.name],
    );
    const replica = rows[0];
    if (!replica || sameKey(keyColumnsOf({ columns: replica.columns, keyColumns: replica.key_columns }), normal)) {
      await admit(client, table, normal, false);
      return { rekeyed: 0 };
    }
    const rekeyed = await rekey(client, table, replica.columns, replica.key_columns, normal);
    await admit(client, table, normal, false);
    return { rekeyed };
  });
}

/** Moves a replica to a new key: every database on the former key leaves it (blocked, state reset). */
async function rekey(client: pg.ClientBase, table: TableName, union: ColumnSpec[], oldKey: string[], key: ColumnSpec[]): Promise<number> {
  const label = formatTableName(table);
  const t = qualified(table.schema, table.name);
  const reason = `the admin admitted a new primary key for ${label}, (${key.map((c) => `${c.name} ${c.type}`).join(', ')}); this database's rows left the replica and are sent again once it declares that key (change the local primary key to it)`;
  const { rows: tenants } = await client.query<{ client_id: string; database_id: string }>(
    /* sql */ `update tidemark.tenant_table_shape set schema_state = 'blocked', schema_reason = $3::text
      where schema_name = $1::text and table_name = $2::text and key_columns is distinct from $4::text[]
      returning client_id, database_id::text`,
    [table.schema, table.name, reason, key.map((c) => c.name)],
  );
  for (const r of tenants) {
    const tenant = { clientId: r.client_id, databaseId: r.database_id };
    await enterTenant(client, tenant);
    await client.query(/* sql */ `delete from ${t} where ${tenantWhere()}`, tenantParams(tenant));
    await client.query(
      /* sql */ `update tidemark.table_state set row_count = 0, max_version = null, settled_version = 0, settled_xmax = null, settled_xip = '{}', updated_at = now()
        where client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text`,
      [r.client_id, r.database_id, table.schema, table.name],
    );
  }
  // Every accepted database declared the former key (the admitted one), so the replica is empty
  // now (unless only the key's types changed): its key, version index and columns change at once.
  const keyNames = new Set(key.map((c) => c.name));
  const existing = new Map(union.map((c) => [c.name, c]));
  const clauses = [
    `drop constraint ${ident(derivedName(table, 'tm_pkey'))}`,
    ...key.filter((c) => !existing.has(c.name)).map((c) => `add column ${ident(c.name)} ${sqlType(c.type)}`),
    ...key.filter((c) => existing.has(c.name) && existing.get(c.name)?.type !== c.type).map((c) => `alter column ${ident(c.name)} type ${sqlType(c.type)}`),
    ...oldKey.filter((k) => !keyNames.has(k)).map((k) => `alter column ${ident(k)} drop not null`),
    ...key.map((c) => `alter column ${ident(c.name)} set not null`),
  ];
  await alterReplica(client, table, clauses);
  await client.query(/* sql */ `drop index if exists ${qualified(table.schema, derivedName(table, 'tm_version_idx'))}`);
  const tenantKey = `${ident(TENANT_CLIENT_COLUMN)}, ${ident(TENANT_DATABASE_COLUMN)}`;
  await client.query(
    /* sql */ `alter table ${t} add constraint ${ident(derivedName(table, 'tm_pkey'))} primary key (${tenantKey}, ${identList(key.map((c) => c.name))})`,
  );
  const { rows: coll } = await client.query<{ attname: string }>(
    /* sql */ `select attname from pg_attribute where attrelid = $1::regclass and attname = any($2::text[]) and attcollation <> 0`,
    [t, key.map((c) => c.name)],
  );
  const collatable = new Set(coll.map((r) => r.attname));
  const order = [ident(VERSION_COLUMN), ...key.map((c) => (collatable.has(c.name) ? `${ident(c.name)} collate "C"` : ident(c.name)))];
  await client.query(/* sql */ `create index ${ident(derivedName(table, 'tm_version_idx'))} on ${t} (${tenantKey}, ${order.join(', ')})`);
  const version = union.find((c) => c.name === VERSION_COLUMN) as ColumnSpec;
  const others = union.filter((c) => c.name !== VERSION_COLUMN && !keyNames.has(c.name)).map((c) => ({ ...c, notNull: false }));
  await client.query(
    /* sql */ `update tidemark.replica_table set columns = $3::jsonb, key_columns = $4::text[] where schema_name = $1::text and table_name = $2::text`,
    [table.schema, table.name, JSON.stringify([version, ...key, ...others]), key.map((c) => c.name)],
  );
  return tenants.length;
}
