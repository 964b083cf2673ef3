/**
 * The server's per-tenant shapes (`tidemark.tenant_table_shape`), the admin's catalog of admitted
 * tables (`tidemark.admitted_table`), and the DDL that makes a replica the union of its tenants'
 * shapes (docs/design.md, The shared replica catalog). Every function runs in the caller's
 * transaction; declarations of one table are serialised by the caller's advisory lock.
 */
import type pg from 'pg';

import { ErrorCode } from '../shared/errors.js';
import { ident, qualified, SqlState, sqlstateOf, sqlType } from '../shared/pg.js';
import { type ColumnSpec, formatTableName, type TableDeclaration, type TableName, type TableSchemaState } from '../shared/protocol.js';
import { RetryLaterError } from './http-errors.js';
import type { EvolutionPlan } from './schema-evolution.js';
import { enterTenant, type Tenant, tenantParams, tenantWhere } from './tenant-scope.js';

/** What the admin decides for tables no one admitted yet (server config `replicaAdmission`). */
export type AdmissionMode = 'auto' | 'manual';
/** What happens to a replica column no tenant declares any more (server config `replicaDroppedColumns`). */
export type DroppedColumnsPolicy = 'keep' | 'drop';

type Queryable = pg.Pool | pg.ClientBase;

const SHAPE_KEY = /* sql */ `client_id = $1::text and database_id = $2::uuid and schema_name = $3::text and table_name = $4::text`;

function shapeKey(tenant: Tenant, table: TableName): [string, string, string, string] {
  return [tenant.clientId, tenant.databaseId, table.schema, table.name];
}

export interface TenantShape {
  declaration: TableDeclaration;
  hash: string;
  state: 'in_sync' | 'blocked';
}

interface ShapeRow {
  columns: ColumnSpec[];
  key_columns: string[];
  declaration_hash: string;
  schema_state: 'in_sync' | 'blocked';
}

/** The shape a tenant last declared (and the server accepted) for a table, or null. */
export async function readTenantShape(db: Queryable, tenant: Tenant, table: TableName): Promise<TenantShape | null> {
  const { rows } = await db.query<ShapeRow>(
    /* sql */ `select columns, key_columns, declaration_hash, schema_state from tidemark.tenant_table_shape where ${SHAPE_KEY}`,
    shapeKey(tenant, table),
  );
  const r = rows[0];
  return r ? { declaration: { columns: r.columns, keyColumns: r.key_columns }, hash: r.declaration_hash, state: r.schema_state } : null;
}

/**
 * The tenant's shape with the replica's union in one indexed read (what every row request needs:
 * its own columns for COPY and hashes, the union's types for casts). Null when not declared.
 */
export async function readShapeAndUnion(db: Queryable, tenant: Tenant, table: TableName): Promise<{ own: TableDeclaration; union: ColumnSpec[] } | null> {
  const { rows } = await db.query<{ columns: ColumnSpec[]; key_columns: string[]; union_columns: ColumnSpec[] }>(
    /* sql */ `select s.columns, s.key_columns, r.columns as union_columns
       from tidemark.tenant_table_shape s join tidemark.replica_table r using (schema_name, table_name)
      where s.client_id = $1::text and s.database_id = $2::uuid and s.schema_name = $3::text and s.table_name = $4::text`,
    shapeKey(tenant, table),
  );
  const r = rows[0];
  return r ? { own: { columns: r.columns, keyColumns: r.key_columns }, union: r.union_columns } : null;
}

/** The SQL of a tenant table's schema state as JSON (a scalar subquery over $1..$4, the state key). */
export const schemaStateJsonSql = /* sql */ `
  select jsonb_build_object('state', schema_state, 'reason', schema_reason,
           'changedAt', to_char(changed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
           'appliedAt', to_char(applied_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
    from tidemark.tenant_table_shape where ${SHAPE_KEY}`;

/** Schema states of every table of the listed tenants (the admin's listing), keyed `client/database/schema.table`. */
export async function listSchemaStates(db: Queryable, clientId?: string, databaseId?: string): Promise<Map<string, TableSchemaState>> {
  const { rows } = await db.query<{ client_id: string; database_id: string; schema_name: string; table_name: string; s: TableSchemaState }>(
    /* sql */ `select client_id, database_id::text, schema_name, table_name,
              jsonb_build_object('state', schema_state, 'reason', schema_reason,
                'changedAt', to_char(changed_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                'appliedAt', to_char(applied_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')) as s
         from tidemark.tenant_table_shape
        where ($1::text is null or client_id = $1::text) and ($2::uuid is null or database_id = $2::uuid)`,
    [clientId ?? null, databaseId ?? null],
  );
  return new Map(rows.map((r) => [`${r.client_id}/${r.database_id}/${formatTableName({ schema: r.schema_name, name: r.table_name })}`, r.s]));
}

/** Stores a tenant's accepted shape (in sync); `changed` when it replaced another one. */
export async function saveTenantShape(
  client: pg.ClientBase,
  tenant: Tenant,
  table: TableName,
  d: TableDeclaration,
  hash: string,
  changed: boolean,
): Promise<void> {
  await client.query(
    /* sql */ `
    insert into tidemark.tenant_table_shape (client_id, database_id, schema_name, table_name, columns, key_columns, declaration_hash)
    values ($1::text, $2::uuid, $3::text, $4::text, $5::jsonb, $6::text[], $7::text)
    on conflict (client_id, database_id, schema_name, table_name) do update
       set columns = excluded.columns, key_columns = excluded.key_columns, declaration_hash = excluded.declaration_hash,
           schema_state = 'in_sync', schema_reason = null, applied_at = now(),
           changed_at = case when $8::boolean then now() else tidemark.tenant_table_shape.changed_at end`,
    [...shapeKey(tenant, table), JSON.stringify(d.columns), d.keyColumns, hash, changed],
  );
}

/** Marks a tenant's table blocked (its last accepted shape stays); outside the refused declaration's transaction. */
export async function markBlocked(db: Queryable, tenant: Tenant, table: TableName, reason: string): Promise<void> {
  await db.query(
    /* sql */ `update tidemark.tenant_table_shape set schema_state = 'blocked', schema_reason = $5::text where ${SHAPE_KEY}
       and (schema_state, coalesce(schema_reason, '')) is distinct from ('blocked', $5::text)`,
    [...shapeKey(tenant, table), reason],
  );
}

/** The admitted key of a table, or null when no one admitted it. */
export async function readAdmission(db: Queryable, table: TableName): Promise<{ key: ColumnSpec[]; provisional: boolean } | null> {
  const { rows } = await db.query<{ key_columns: ColumnSpec[]; provisional: boolean }>(
    /* sql */ `select key_columns, provisional from tidemark.admitted_table where schema_name = $1::text and table_name = $2::text`,
    [table.schema, table.name],
  );
  const r = rows[0];
  return r ? { key: r.key_columns, provisional: r.provisional } : null;
}

/** Admits a table with its key (provisional: by a first declaration in auto mode; else by the admin). */
export async function admit(db: Queryable, table: TableName, key: readonly ColumnSpec[], provisional: boolean): Promise<void> {
  await db.query(
    /* sql */ `
    insert into tidemark.admitted_table (schema_name, table_name, key_columns, provisional) values ($1::text, $2::text, $3::jsonb, $4::boolean)
    on conflict (schema_name, table_name) do update set key_columns = excluded.key_columns, provisional = excluded.provisional, admitted_at = now()`,
    [table.schema, table.name, JSON.stringify(key), provisional],
  );
}

/** How long one attempt waits for the replica's lock: readers queue behind a waiting ALTER for at most this. */
const DDL_LOCK_TIMEOUT_MS = 200;
const DDL_ATTEMPTS = 10;

/**
 * Runs one ALTER TABLE on a replica under a short lock_timeout, retried a few times (each attempt
 * in a savepoint), so that readers never queue behind it for longer than the timeout. Adding a
 * nullable column without a default and dropping NOT NULL are catalog changes; a type change may
 * rewrite the table (int to bigint does) and holds the lock for the rewrite.
 */
export async function alterReplica(client: pg.ClientBase, table: TableName, clauses: readonly string[]): Promise<void> {
  if (clauses.length === 0) return;
  const sql = /* sql */ `alter table ${qualified(table.schema, table.name)} ${clauses.join(', ')}`;
  await client.query(/* sql */ `select set_config('lock_timeout', $1::text, true)`, [`${DDL_LOCK_TIMEOUT_MS}ms`]);
  try {
    for (let attempt = 1; ; attempt++) {
      await client.query('savepoint tidemark_ddl');
      try {
        await client.query(sql);
        await client.query('release savepoint tidemark_ddl');
        return;
      } catch (e) {
        await client.query('rollback to savepoint tidemark_ddl');
        if (sqlstateOf(e) !== SqlState.LOCK_NOT_AVAILABLE) throw e;
        if (attempt >= DDL_ATTEMPTS)
          throw new RetryLaterError(
            ErrorCode.DB_CONFLICT,
            503,
            'the replica table is busy (its schema change waits for long-running readers); retried on the next run',
            30,
          );
        await client.query(/* sql */ `select pg_sleep($1::double precision)`, [(DDL_LOCK_TIMEOUT_MS * attempt) / 1000]);
      }
    }
  } finally {
    await client.query(/* sql */ `select set_config('lock_timeout', '0', true)`);
  }
}

/** The ALTER TABLE clauses of a plan (types passed the allow-list; collations exist: checked by the caller). */
export function planClauses(plan: EvolutionPlan, drops: readonly string[]): string[] {
  const collate = (c: ColumnSpec): string => (c.collation ? ` collate ${qualified(c.collation.schema, c.collation.name)}` : '');
  return [
    ...plan.addColumns.map((c) => `add column ${ident(c.name)} ${sqlType(c.type)}${collate(c)}`),
    ...plan.alterTypes.map((a) => `alter column ${ident(a.name)} type ${sqlType(a.type)}`),
    ...plan.dropNotNull.map((n) => `alter column ${ident(n)} drop not null`),
    ...drops.map((n) => `drop column ${ident(n)}`),
  ];
}

/** Columns among `names` that no tenant other than `tenant` declares (with policy drop, the replica drops them). */
export async function undeclaredElsewhere(client: pg.ClientBase, tenant: Tenant, table: TableName, names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const name of names) {
    const { rows } = await client.query<{ used: boolean }>(
      /* sql */ `select exists (select from tidemark.tenant_table_shape
         where schema_name = $3::text and table_name = $4::text and not (client_id = $1::text and database_id = $2::uuid)
           and columns @> $5::jsonb) as used`,
      [...shapeKey(tenant, table), JSON.stringify([{ name }])],
    );
    if (!rows[0]?.used) out.push(name);
  }
  return out;
}

/**
 * The row changes of a plan for this tenant: its dropped columns set to NULL (unless the replica
 * drops them), its columns added with a constant default set to that value. Under the tenant's
 * settings (row-level security) and the pinned output settings (the value is canonical text).
 */
export async function applyRowChanges(
  client: pg.ClientBase,
  tenant: Tenant,
  table: TableName,
  plan: EvolutionPlan,
  dropped: ReadonlySet<string>,
): Promise<void> {
  const nulls = plan.nullColumns.filter((n) => !dropped.has(n));
  if (nulls.length === 0 && plan.setDefaults.length === 0) return;
  await enterTenant(client, tenant);
  const params: unknown[] = tenantParams(tenant);
  const sets = [
    ...nulls.map((n) => `${ident(n)} = null`),
    ...plan.setDefaults.map((d) => {
      params.push(d.value);
      return `${ident(d.name)} = $${params.length}::${sqlType(d.type)}`;
    }),
  ];
  await client.query(/* sql */ `update ${qualified(table.schema, table.name)} set ${sets.join(', ')} where ${tenantWhere()}`, params);
}

/** Saves the replica's union of columns. */
export async function saveUnion(client: pg.ClientBase, table: TableName, columns: readonly ColumnSpec[]): Promise<void> {
  await client.query(/* sql */ `update tidemark.replica_table set columns = $3::jsonb where schema_name = $1::text and table_name = $2::text`, [
    table.schema,
    table.name,
    JSON.stringify(columns),
  ]);
}
